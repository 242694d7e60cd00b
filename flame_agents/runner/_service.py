"""``RunnerService``: a function, class or object of the client, callable on remote instances.

Each service is one session of the runner's application. Calls become tasks of that session
(see :mod:`flame_agents.runner._protocol` for what they carry) and return
:class:`ObjectFuture` at once; a call whose arguments include unfinished futures is sent by a
callback when they finish, so chains of calls never block the client.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import secrets
import string
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import cloudpickle

from flame_agents import cache, core
from flame_agents._logging import get_logger
from flame_agents.cache import ObjectRef
from flame_agents.errors import (
    FlameAgentsError,
    InternalError,
    InvalidArgumentError,
    InvalidStateError,
)
from flame_agents.runner._future import ObjectFuture
from flame_agents.runner._protocol import Call, Kind, Slot, Target, kind_of, public_methods
from flame_agents.types import ResourceRequirement

__all__ = ["RunnerService"]

_ALNUM = string.ascii_letters + string.digits
_log = get_logger(__name__)


class _NoSuchMethod(InvalidArgumentError, AttributeError):
    """A name that is not a public method of the service (an AttributeError too, so that
    ``hasattr`` and ``getattr(svc, name, default)`` keep working)."""


def _describe(obj: Any, kind: Kind) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if kind is Kind.INSTANCE or name is None:
        return f"{type(obj).__qualname__} object"
    return str(name)


def instance_bounds(kind: Kind, autoscale: bool | None, warmup: int) -> tuple[int, int | None]:
    """The session's (min_instances, max_instances) for a service of ``kind``.

    Functions and classes autoscale by default: no instance until there is work (``warmup``
    kept warm), as many as the runtime grants under load. ``autoscale=False`` fixes the count
    at ``warmup`` (at least 1). An object is one instance, always: its state lives there.
    """
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise InvalidArgumentError(
            f"warmup must be a non-negative int (instances started ahead of the first call), "
            f"got {warmup!r}",
            warmup=warmup,
        )
    if autoscale is not None and not isinstance(autoscale, bool):
        raise InvalidArgumentError(f"autoscale must be True, False or None, got {autoscale!r}")
    if kind is Kind.INSTANCE:
        if autoscale:
            raise InvalidArgumentError(
                "an object is served by exactly one instance (its state lives there), so it "
                "cannot autoscale: omit autoscale=, or expose its class to get one object per "
                "instance",
                autoscale=autoscale,
            )
        if warmup > 1:
            raise InvalidArgumentError(
                f"an object is served by exactly one instance, so warmup must be 0 or 1, "
                f"got {warmup}",
                warmup=warmup,
            )
        return 1, 1
    if autoscale is False:
        count = max(warmup, 1)
        return count, count
    return warmup, None


class _RemoteMethod:
    """A public method of the exposed class or object; calling it returns an ObjectFuture."""

    def __init__(self, service: RunnerService, name: str, doc: str | None) -> None:
        self._service = service
        self.__name__ = name
        self.__doc__ = doc

    def __call__(self, *args: Any, **kwargs: Any) -> ObjectFuture:
        return self._service._submit(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self._service._label}.{self.__name__}>"


class RunnerService:
    """Remote calls of one function, class or object (made by :meth:`Runner.service`).

    * A function: call the service itself, ``svc(x)``.
    * A class: each instance of the service makes its own object with ``cls()``; call its
      public methods, ``svc.method(x)``. Instances are interchangeable, so do not rely on
      state kept between calls.
    * An object: one instance holds it, and its state is saved to the object cache after each
      call, so it survives the instance being released while idle.

    Every call returns an :class:`ObjectFuture` at once. A public method whose name is also
    an attribute of this class (``close``, ``call``, ``methods``, ``session_id``) is reached
    with :meth:`call`. Closing the service closes its session; its results stay in the cache
    until the runner closes.
    """

    def __init__(
        self,
        app: str,
        obj: Any,
        *,
        autoscale: bool | None = None,
        warmup: int = 0,
        resreq: ResourceRequirement | Mapping[str, Any] | str | None = None,
    ) -> None:
        """Open a session of application ``app`` serving ``obj``; use Runner.service()."""
        self._kind = kind_of(obj)
        self._label = _describe(obj, self._kind)
        if self._kind is Kind.FUNCTION:
            methods: tuple[str, ...] = ()
        else:
            methods = public_methods(obj)
            if not methods and not (self._kind is Kind.INSTANCE and callable(obj)):
                raise InvalidArgumentError(
                    f"{self._label} has no public method to call remotely (public: a name "
                    "not starting with '_'); pass a function, or a class or object with "
                    "methods",
                    target=self._label,
                )
        self._methods = methods
        self._callable = self._kind is Kind.FUNCTION or (
            self._kind is Kind.INSTANCE and callable(obj)
        )
        min_instances, max_instances = instance_bounds(self._kind, autoscale, warmup)
        self._closed = False
        self._lock = threading.Lock()
        self._app = app
        self._session = self._open_session(app, obj, min_instances, max_instances, resreq)
        for name in methods:
            if not hasattr(type(self), name):
                doc = getattr(getattr(obj, name, None), "__doc__", None)
                setattr(self, name, _RemoteMethod(self, name, doc))

    def _open_session(
        self,
        app: str,
        obj: Any,
        min_instances: int,
        max_instances: int | None,
        resreq: ResourceRequirement | Mapping[str, Any] | str | None,
    ) -> core.Session:
        try:
            payload = cloudpickle.dumps(Target(self._kind, obj))
        except Exception as exc:
            raise InvalidArgumentError(
                f"{self._label} cannot be sent to the runner's instances, as it cannot be "
                f"pickled ({type(exc).__name__}: {exc}); expose a class or function that "
                "builds such state on the instance instead",
                target=self._label,
            ) from exc
        sid = f"{app}-{''.join(secrets.choice(_ALNUM) for _ in range(6))}"
        prefix = f"{app}/{sid}"
        ref = cache.put_object(prefix, payload)
        try:
            return core.create_session(
                app,
                common_data=ref.encode(),
                session_id=sid,
                min_instances=min_instances,
                max_instances=max_instances,
                resreq=resreq,
            )
        except BaseException:
            with contextlib.suppress(FlameAgentsError):
                cache.delete_objects(prefix)
            raise

    # -- public API ------------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        """The id of the service's session."""
        return str(self._session.id)

    @property
    def methods(self) -> tuple[str, ...]:
        """The public methods callable remotely (empty for a function)."""
        return self._methods

    def __call__(self, *args: Any, **kwargs: Any) -> ObjectFuture:
        """Call the exposed function (or callable object) with these arguments."""
        if not self._callable:
            raise InvalidArgumentError(
                f"{self._label} is a {self._kind.value}, not a function, so the service "
                f"cannot be called; call one of its methods: {', '.join(self._methods)}",
                target=self._label,
            )
        return self._submit(None, args, kwargs)

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> ObjectFuture:
        """Call the public method ``method`` with these arguments (any method, including one
        whose name this class uses itself, such as ``close``)."""
        if method not in self._methods:
            raise self._no_method(method)
        return self._submit(method, args, kwargs)

    def close(self) -> None:
        """Close the service's session (idempotent): later calls raise InvalidStateError.

        Calls already sent finish first; results stay readable until the runner closes.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._session.close()

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not attributes: public methods were set in __init__.
        if name.startswith("__") or "_methods" not in self.__dict__:
            raise AttributeError(name)
        raise self._no_method(name)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._methods})

    def __enter__(self) -> RunnerService:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<RunnerService {self._label} session={self.session_id!r} ({state})>"

    # -- internals -------------------------------------------------------------------------

    def _no_method(self, name: str) -> _NoSuchMethod:
        if self._kind is Kind.FUNCTION:
            hint = "it serves a function: call the service itself"
        elif name.startswith("_"):
            hint = (
                "only public methods (names not starting with '_') are called remotely; "
                f"its public methods: {', '.join(self._methods) or 'none'}"
            )
        else:
            hint = f"its public methods: {', '.join(self._methods) or 'none'}"
        return _NoSuchMethod(
            f"{self._label} has no remote method {name!r}: {hint}",
            target=self._label,
            method=name,
        )

    def _check_open(self) -> core.Session:
        if self._closed:
            raise InvalidStateError(
                f"the runner service for {self._label} is closed; create a new one with "
                "runner.service(...)",
                session_id=self.session_id,
            )
        return self._session

    def _submit(
        self, method: str | None, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> ObjectFuture:
        session = self._check_open()
        label = f"{self._label}.{method}()" if method else f"{self._label}()"
        refs: list[ObjectRef | ObjectFuture] = []

        def slot(value: Any) -> Any:
            if isinstance(value, (ObjectRef, ObjectFuture)):
                refs.append(value)
                return Slot(len(refs) - 1)
            return value

        marked = (tuple(slot(a) for a in args), {k: slot(v) for k, v in kwargs.items()})
        try:
            arguments = cloudpickle.dumps(marked)
        except InvalidArgumentError:
            raise
        except Exception as exc:
            raise InvalidArgumentError(
                f"{label}: the arguments cannot be sent, as they cannot be pickled "
                f"({type(exc).__name__}: {exc})",
                call=label,
            ) from exc
        out: concurrent.futures.Future[ObjectRef] = concurrent.futures.Future()
        waiting = [r for r in refs if isinstance(r, ObjectFuture)]
        if all(f.done() for f in waiting):
            try:
                resolved = _resolve(refs, label)
            except BaseException as exc:
                out.set_exception(exc)  # an argument's call failed: as if sent later
            else:
                # Sent now, so a call the runtime refuses raises here, not later.
                self._dispatch(session, out, label, method, arguments, resolved)
        else:
            _when_all_done(
                waiting,
                functools.partial(self._send_later, out, label, method, arguments, refs),
            )
        return ObjectFuture(out, call=label)

    def _send_later(
        self,
        out: concurrent.futures.Future[ObjectRef],
        label: str,
        method: str | None,
        arguments: bytes,
        refs: list[ObjectRef | ObjectFuture],
    ) -> None:
        try:
            resolved = _resolve(refs, label)
            session = self._check_open()
            self._dispatch(session, out, label, method, arguments, resolved)
        except BaseException as exc:
            out.set_exception(exc)

    def _dispatch(
        self,
        session: core.Session,
        out: concurrent.futures.Future[ObjectRef],
        label: str,
        method: str | None,
        arguments: bytes,
        refs: tuple[ObjectRef, ...],
    ) -> None:
        inner = session.run(cloudpickle.dumps(Call(method, arguments, refs)))
        inner.add_done_callback(functools.partial(_relay, out, label))


def _resolve(refs: Sequence[ObjectRef | ObjectFuture], label: str) -> tuple[ObjectRef, ...]:
    """The refs of a call's arguments, its futures all finished."""
    return tuple(ref if isinstance(ref, ObjectRef) else _argument_ref(ref, label) for ref in refs)


def _argument_ref(future: ObjectFuture, label: str) -> ObjectRef:
    """The finished ``future``'s ref; if its call failed, an error saying this call was not
    made (the same class, so ``remote_type`` and the like carry over)."""
    try:
        return future.ref()
    except FlameAgentsError as exc:
        message = f"{label} was not sent: its argument {future._call} failed: {exc.message}"
        try:
            error = type(exc)(message, **exc.fields)
        except Exception:
            raise exc from None
        raise error from exc


def _relay(
    out: concurrent.futures.Future[ObjectRef],
    label: str,
    inner: concurrent.futures.Future[bytes | None],
) -> None:
    exc = inner.exception()
    if exc is not None:
        out.set_exception(exc)
        return
    data = inner.result()
    try:
        if data is None:
            raise InternalError(f"{label}: the runner service answered without a result ref")
        out.set_result(ObjectRef.decode(data))
    except FlameAgentsError as error:
        out.set_exception(error)


def _when_all_done(futures: Sequence[ObjectFuture], callback: Callable[[], None]) -> None:
    """Run ``callback`` once, in the thread that finishes the last of ``futures``."""
    remaining = [len(futures)]
    lock = threading.Lock()

    def one_done(_: concurrent.futures.Future[ObjectRef]) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            callback()

    for future in futures:
        future._future.add_done_callback(one_done)
