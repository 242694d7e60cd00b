"""``ObjectFuture``: the result of a remote call, kept in the object cache until it is read."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

from flame_agents import cache
from flame_agents.cache import ObjectRef
from flame_agents.errors import InvalidArgumentError, InvocationTimeoutError

__all__ = ["ObjectFuture", "as_completed"]


class ObjectFuture:
    """The pending or finished result of one remote call of a runner service.

    The service stores each result in the object cache and answers with its
    :class:`~flame_agents.cache.ObjectRef`: :meth:`ref` waits for that reference, :meth:`get`
    also downloads the object. Pass a future (or a ref) as an argument of another call, and
    that call receives the result itself, read from the cache by the instance: the data never
    travels through the client, and the client does not wait for it (the second call is sent
    when the first one has finished).

    A failed call raises its error from :meth:`get`, :meth:`ref` and :meth:`wait`:
    :class:`~flame_agents.TaskFailedError` when the remote code raised, with the remote class
    in ``remote_type`` and the remote frames in ``remote_traceback``.
    """

    def __init__(self, future: concurrent.futures.Future[ObjectRef], *, call: str) -> None:
        """Wrap ``future``; made by runner services, not by users."""
        self._future = future
        self._call = call

    def done(self) -> bool:
        """True once the call has finished (successfully or not)."""
        return self._future.done()

    def ref(self, *, timeout: float | None = None) -> ObjectRef:
        """Wait for the call and return the reference of its result in the object cache.

        Raises InvocationTimeoutError after ``timeout`` seconds (the call keeps running), or
        the call's error.
        """
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            self._timed_out(timeout)

    def get(self, *, timeout: float | None = None) -> Any:
        """Wait for the call and return its result (downloaded from the object cache)."""
        return cache.get_object(self.ref(timeout=timeout))

    def wait(self, *, timeout: float | None = None) -> None:
        """Wait for the call to finish without downloading its result; raises its error."""
        self.ref(timeout=timeout)

    def _timed_out(self, timeout: float | None) -> NoReturn:
        raise InvocationTimeoutError(
            f"{self._call}: no result within {timeout} s; the call keeps running, so wait "
            "again, or close the runner to stop it",
            call=self._call,
            timeout=timeout,
        )

    def __reduce__(self) -> NoReturn:
        # Reached when a future is nested inside an argument (a list, a dict...): only
        # top-level arguments are replaced by their results.
        raise InvalidArgumentError(
            f"an ObjectFuture ({self._call}) can only be passed as an argument by itself, not "
            "inside a list, dict or other object; pass future.get() (the value), future.ref() "
            "(a reference) or make it a separate argument",
            call=self._call,
        )

    def __repr__(self) -> str:
        if not self._future.done():
            state = "pending"
        elif self._future.exception() is not None:
            state = "failed"
        else:
            state = "done"
        return f"<ObjectFuture of {self._call} ({state})>"


def as_completed(futures: Iterable[ObjectFuture]) -> Iterator[ObjectFuture]:
    """Yield ``futures`` as their calls finish (successfully or not), first finished first."""
    by_inner = {f._future: f for f in futures}
    for inner in concurrent.futures.as_completed(by_inner):
        yield by_inner[inner]
