"""``FlameInstance``: the service side of the seed's API (one typed entrypoint, a session context).

Behaviour follows flamepy 0.6's ``flamepy.service.FlameInstance`` so services and clients of
either package interoperate (flame-wire §4.5, §8.5): task input and output are cloudpickle
bytes; the session's ``common_data`` is a BSON ``ObjectRef`` to an object holding
``cloudpickle.dumps(context)``; :meth:`FlameInstance.update_context` replaces that object.

Cancellation (our runtime's, see ``_wire.cancel``): an ``async`` entrypoint gets
``asyncio.CancelledError`` at its current ``await``; a synchronous one cannot be stopped safely
at an arbitrary point, so it runs on, its next :meth:`FlameInstance.context` or
:meth:`FlameInstance.update_context` raises ``Cancelled``, and whatever it returns is discarded:
either way the task ends Cancelled (it may check :meth:`FlameInstance.cancelled` to stop
early). One that runs past the runtime's grace period has its instance stopped (the task ends
Cancelled too). A context update that landed before the cancel stays.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flame_agents._logging import follow_env_level, get_logger
from flame_agents.errors import Cancelled, InvalidArgumentError
from flame_agents.service._entrypoint import (
    CancelScope,
    Entrypoint,
    EventLoopThread,
    check_entrypoint,
)
from flame_agents.service._instance_server import instance_endpoint, serve

__all__ = ["FlameInstance"]

F = TypeVar("F", bound=Callable[..., Any])

MAX_CONTEXT_ATTEMPTS = 50
"""Runs of one task whose context update lost a race before it fails with CommitConflictError."""

DEBUG_PORT_ENV = "FLAME_AGENTS_DEBUG_PORT"
"""Overrides the debug-mode HTTP port (default 5050, as flamepy's debug mode)."""

_log = get_logger(__name__)


class FlameInstance:
    """A Flame service process with one entrypoint.

    Example::

        ins = FlameInstance()

        @ins.entrypoint
        def echo(req: EchoRequest) -> EchoResponse:
            history = ins.context() or []
            history.append(req.text)
            ins.update_context(history)
            return EchoResponse(text=req.text.upper(), count=len(history))

        if __name__ == "__main__":
            ins.run()

    It also implements the instance-handler protocol (``on_session_enter``,
    ``on_task_invoke``, ``on_session_leave``) that the Flame launcher drives.
    """

    def __init__(self) -> None:
        """Create an instance with no entrypoint yet; decorate one with :meth:`entrypoint`."""
        self._entry: Entrypoint | None = None
        self._loop = EventLoopThread()
        self._session_id: str | None = None
        self._app: str | None = None
        # flame_agents.cache.ObjectRef of the context, once known. The cache module (and
        # pyarrow) is imported only when a context is used, so context-less services start
        # faster; Flame starts one process per session binding.
        self._ref: Any = None
        # The ref at the version this task's context() read: update_context commits against it.
        self._read_ref: Any = None
        # Debug mode has no session and no cache: the context lives in this process.
        self._local_context: Any = None
        # The running task and how to cancel it, set and read under _cancel_lock (on_task_cancel
        # comes from another thread); a cancel that comes just before its task is remembered.
        self._cancel_lock = threading.Lock()
        self._task_id: str | None = None
        self._scope: CancelScope | None = None
        self._cancel_early: str | None = None

    # -- user API ------------------------------------------------------------------------------

    def entrypoint(self, func: F) -> F:
        """Register ``func`` as the service's entrypoint and return it unchanged.

        ``func`` takes zero parameters or one positional-or-keyword parameter (the request) and
        may be ``async``. Anything else, or a second entrypoint, raises ``TypeError`` here.
        """
        entry = check_entrypoint(func)
        if self._entry is not None:
            raise TypeError(
                f"cannot register entrypoint {entry.name!r}: this FlameInstance already has "
                f"entrypoint {self._entry.name!r}, and a service has exactly one "
                "(dispatch on the request type inside it, or run two services)"
            )
        self._entry = entry
        return func

    def context(self) -> Any:
        """The session's current context, or ``None`` if the session has none yet.

        The version read is remembered for this task: a later :meth:`update_context` in the
        same task commits only if nobody changed the context since (see :meth:`update_context`).
        In a task that was cancelled it raises ``Cancelled`` instead.
        """
        self._raise_if_cancelled()
        if self._ref is not None:
            from flame_agents.cache import get_object_versioned

            stored, self._read_ref = get_object_versioned(self._ref)
            import cloudpickle

            # flamepy stores cloudpickle bytes; tolerate a plain object put by other tools.
            return cloudpickle.loads(stored) if isinstance(stored, bytes) else stored
        if self._session_id is None:
            return self._local_context
        return None

    def update_context(self, data: Any) -> None:
        """Replace the session's context with ``data`` (visible to later tasks and clients).

        A task that read the context (:meth:`context`) and then updates it commits only if no
        other task of the session changed it in between. If one did, the entrypoint runs again
        from the start on the new context, like a database transaction that lost a race, so a
        read-modify-write is never lost when several instances serve one session. Keep other
        side effects of such an entrypoint idempotent, or do them after the update. An update
        without a read in the same task simply replaces the context.

        When the session was created without ``ctx=``, the first update stores a new object
        under ``<app>/<session_id>`` that this instance keeps using for the rest of the session;
        as the session's ``common_data`` cannot change, clients (``Session.context()``) and
        other instances of the session do not see it. Create the session with ``ctx=`` (even
        ``ctx={}``) to share the context.

        In a task that was cancelled it raises ``Cancelled`` and changes nothing.
        """
        self._raise_if_cancelled()
        import cloudpickle

        payload = cloudpickle.dumps(data)
        if self._ref is not None:
            from flame_agents.cache import update_object

            read = self._read_ref
            if read is None:
                self._ref = update_object(self._ref, payload)
                return
            from flame_agents.errors import CommitConflictError

            try:
                self._ref = update_object(self._ref, payload, expected_version=read.version)
            except CommitConflictError as exc:
                raise _ContextMoved from exc
            self._read_ref = self._ref  # a second update in this task builds on this one
        elif self._session_id is not None:
            from flame_agents.cache import put_object

            self._ref = put_object(f"{self._app}/{self._session_id}", payload)
        else:
            self._local_context = data

    def cancelled(self) -> bool:
        """Whether the running task was cancelled (a client's ``Session.cancel()``, a timeout
        with ``cancel_on_timeout``, Ctrl-C).

        A synchronous entrypoint cannot be interrupted: one that runs long may check this and
        stop early (return or raise; either way the task ends Cancelled). Its next
        :meth:`context` or :meth:`update_context` raises ``Cancelled`` anyway.
        """
        scope = self._scope
        return scope is not None and scope.cancelled

    def run(self, *, debug_port: int | None = None) -> None:
        """Serve the entrypoint until SIGTERM or SIGINT.

        Launched by Flame (``FLAME_INSTANCE_ENDPOINT`` set): serves the ``flame.v1.Instance``
        shim on that Unix socket. Otherwise debug mode: serves ``POST /<entrypoint>`` on
        127.0.0.1 (port ``debug_port``, ``$FLAME_AGENTS_DEBUG_PORT`` or 5050) and prints how
        to call it. Must be called from the main thread (it handles the signals). Logs go to
        stderr at ``$FLAME_LOG_LEVEL`` (default info), or to your handlers once you configure
        Python logging (see the ``flame_agents`` logger).
        """
        if self._entry is None:
            raise TypeError(
                "FlameInstance.run(): no entrypoint registered; decorate a function with "
                "@ins.entrypoint before calling run()"
            )
        # The service process's entry point: its log level is the application's setting.
        follow_env_level()
        try:
            if instance_endpoint() is not None:
                serve(self)
            else:
                from flame_agents.service._debug_server import serve_debug

                if debug_port is None:
                    debug_port = int(os.environ.get(DEBUG_PORT_ENV) or 5050)
                serve_debug(self._entry, self._call, port=debug_port, out=sys.stdout)
        finally:
            self._loop.close()

    # -- instance-handler protocol (driven by the launcher through the Instance shim) ----------

    def on_session_enter(
        self, session_id: str, application_name: str, common_data: bytes | None
    ) -> None:
        """Bind to a session: remember it and decode its context reference, if any."""
        self._session_id, self._app, self._ref = session_id, application_name, None
        if common_data:
            from flame_agents.cache import ObjectRef

            try:
                self._ref = ObjectRef.decode(common_data)
            except Exception as exc:
                raise InvalidArgumentError(
                    f"session {session_id!r}: common_data is not a BSON ObjectRef, so it is not "
                    "a FlameInstance context; create the session with "
                    "flame_agents.service.Session(name, ctx=...)",
                    session_id=session_id,
                ) from exc

    def on_task_invoke(self, task_id: str, session_id: str, input: bytes | None) -> bytes | None:
        """Run the entrypoint on one cloudpickled request; return the cloudpickled reply.

        Raises ``Cancelled`` when the task was cancelled meanwhile (:meth:`on_task_cancel`).
        """
        import cloudpickle  # on first use: imported once, then a dict lookup

        scope = CancelScope()
        with self._cancel_lock:
            self._task_id, self._scope = task_id, scope
            if self._cancel_early == task_id:
                scope.cancel()
            self._cancel_early = None
        try:
            value = cloudpickle.loads(input) if input is not None else None
            result = self._call_until_committed(value)
            self._raise_if_cancelled()  # a synchronous entrypoint ran on: its result is void
        finally:
            with self._cancel_lock:
                self._task_id = self._scope = None
        return None if result is None else bytes(cloudpickle.dumps(result))

    def on_task_cancel(self, task_id: str) -> None:
        """Cancel the running task ``task_id`` (called from another thread; returns at once).

        An async entrypoint gets ``asyncio.CancelledError`` at its current ``await``; a
        synchronous one runs on until its next context call or its return (see the module
        docstring). The task then ends Cancelled.
        """
        with self._cancel_lock:
            if self._task_id == task_id and self._scope is not None:
                self._scope.cancel()
            elif self._task_id is None:
                self._cancel_early = task_id  # its on_task_invoke is about to begin
        _log.info("task cancel requested", task_id=task_id)

    def on_session_leave(self) -> None:
        """Unbind from the session and forget its context reference."""
        self._session_id = self._app = self._ref = None

    # -- internals -----------------------------------------------------------------------------

    def _call_until_committed(self, value: Any) -> Any:
        """Run the entrypoint; again on the fresh context while its update lost a race."""
        for attempt in range(1, MAX_CONTEXT_ATTEMPTS + 1):
            self._read_ref = None
            try:
                return self._call(value)
            except _ContextMoved as moved:
                if attempt == MAX_CONTEXT_ATTEMPTS:
                    from flame_agents.errors import CommitConflictError

                    raise CommitConflictError(
                        f"session {self._session_id}: the context changed under this task "
                        f"{attempt} times in a row; too many tasks of this session update "
                        "its context at once (serve it with max_instances=1, or retry)",
                        session_id=self._session_id,
                    ) from moved
                _log.debug(
                    "context changed since read; running the entrypoint again", attempt=attempt
                )
                # Jittered backoff, so racing instances do not collide again in lockstep.
                time.sleep(random.uniform(0, min(0.05, 0.002 * 2**attempt)))
            finally:
                self._read_ref = None
        raise AssertionError("unreachable")

    def _call(self, value: Any) -> Any:
        entry = self._entry
        if entry is None:
            raise TypeError("no entrypoint registered: decorate a function with @ins.entrypoint")
        self._raise_if_cancelled()
        args = (value,) if entry.takes_input else ()
        result = entry.func(*args)
        if entry.is_async or _is_awaitable(result):
            scope = self._scope
            try:
                result = self._loop.run(result, scope=scope)
            except asyncio.CancelledError as exc:
                if scope is not None and scope.cancelled:
                    raise self._cancelled() from exc
                raise
        return result

    def _raise_if_cancelled(self) -> None:
        if self.cancelled():
            raise self._cancelled()

    def _cancelled(self) -> Cancelled:
        return Cancelled(
            "the entrypoint was cancelled", session_id=self._session_id, task_id=self._task_id
        )


class _ContextMoved(BaseException):
    """update_context lost a race: another task changed the context after this one read it.

    A BaseException, like asyncio's CancelledError, so that an entrypoint's ``except
    Exception`` cannot swallow it and return as if its update had landed.
    """


def _is_awaitable(value: Any) -> bool:
    # A sync callable (e.g. functools.partial of a coroutine function) may return an awaitable.
    return inspect.isawaitable(value)
