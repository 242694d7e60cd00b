"""``Session``: the client side of the seed's API (typed invoke over a Flame session).

Same conventions as flamepy 0.6's ``flamepy.service.Session`` (flame-wire §4.5, §8.4): the
context is stored as ``cloudpickle.dumps(ctx)`` at ``<name>/<session_id>`` in the object cache
and the session's ``common_data`` is that object's BSON ``ObjectRef``; requests and replies are
cloudpickle bytes over ``flame_agents.core``'s task API.
"""

from __future__ import annotations

import contextlib
import secrets
import string
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import cloudpickle

from flame_agents import cache, core
from flame_agents._logging import get_logger
from flame_agents.errors import FlameAgentsError, InvalidStateError, NotFoundError
from flame_agents.types import ResourceRequirement

__all__ = ["Session"]

_ALNUM = string.ascii_letters + string.digits
_log = get_logger(__name__)


def _new_session_id(application: str) -> str:
    # Flame's own convention (flamepy, flmctl): "<app>-<6 random alphanumerics>".
    return f"{application}-{''.join(secrets.choice(_ALNUM) for _ in range(6))}"


class Session:
    """A session of a named service: create one (``Session(name, ctx=...)``) or open one
    (``Session(session_id=...)``), ``invoke`` its entrypoint with Python objects, read its
    shared ``context()``, and ``close()`` it (also on leaving a ``with`` block).

    Example::

        with Session("echo-app", ctx=[]) as session:
            reply = session.invoke(EchoRequest("hello"))
            print(reply.text, reply.count, session.id())
    """

    def __init__(
        self,
        name: str | None = None,
        ctx: Any = None,
        session_id: str | None = None,
        resreq: ResourceRequirement | Mapping[str, Any] | str | None = None,
        *,
        connection: core.Connection | None = None,
    ) -> None:
        """Create a new session of application ``name``, or open ``session_id``.

        ``ctx`` (new sessions only) is the initial shared context, stored in the object cache.
        ``resreq`` is each instance's resources: a ``ResourceRequirement``, a mapping like
        ``{"cpu": 2, "memory": "4g", "gpu": 0}`` or a string like ``"cpu=2,mem=4g"``.
        ``connection``: the runtime to use, e.g. ``core.connect(url)`` or a
        ``LocalRuntime``'s ``connect()``; the context goes to its ``cache_endpoint``. By
        default, the process's default connection (``FLAME_ENDPOINT``, ``~/.flame/flame.yaml``
        or the embedded runtime).
        Passing both or neither of ``name`` and ``session_id`` raises ``ValueError``.
        """
        if name is None and session_id is None:
            raise ValueError(
                "Session() needs an application name to create a session "
                "(Session('echo-app')) or session_id= to open an existing one"
            )
        if name is not None and session_id is not None:
            raise ValueError(
                "Session() takes either an application name (create a new session) or "
                "session_id= (open an existing one), not both"
            )
        self._closed = False
        self._connection = connection
        if session_id is not None:
            if ctx is not None or resreq is not None:
                raise ValueError(
                    "ctx and resreq apply only when creating a session; they cannot be passed "
                    "with session_id="
                )
            opener = core.open_session if connection is None else connection.open_session
            self._session = opener(session_id)
        else:
            assert name is not None  # narrowed by the checks above
            self._session = self._create(name, ctx, ResourceRequirement.coerce(resreq))

    def _create(self, name: str, ctx: Any, resreq: ResourceRequirement | None) -> core.Session:
        conn = self._connection
        cache_endpoint = None if conn is None else conn.cache_endpoint
        sid = _new_session_id(name)
        common_data: bytes | None = None
        if ctx is not None:
            ref = cache.put_object(f"{name}/{sid}", cloudpickle.dumps(ctx), endpoint=cache_endpoint)
            common_data = ref.encode()
        create = core.create_session if conn is None else conn.create_session
        try:
            return create(name, common_data=common_data, session_id=sid, resreq=resreq)
        except FlameAgentsError as exc:
            if ctx is not None:
                _forget_context(name, sid, cache_endpoint)
            # Flame's sqlite store reports an unknown application as an internal error, so ask.
            if isinstance(exc, NotFoundError) or _app_missing(name, conn):
                raise NotFoundError(_unknown_app_message(name), application=name) from exc
            raise

    def invoke(
        self, req: Any, *, timeout: float | None = None, cancel_on_timeout: bool = False
    ) -> Any:
        """Run the service's entrypoint on ``req`` and return its reply.

        Raises ``TaskFailedError`` with the service's error text when the entrypoint raised
        (the session stays usable), ``InvocationTimeoutError`` after ``timeout`` seconds (the
        task runs on), or, with ``cancel_on_timeout=True``, ``Cancelled`` once the task was
        cancelled when the timeout ran out. ``Cancelled`` too when :meth:`cancel` stopped it.
        Ctrl-C while it waits cancels the task before the ``KeyboardInterrupt`` goes on.
        """
        session = self._open_session()
        output = session.invoke(
            cloudpickle.dumps(req), timeout=timeout, cancel_on_timeout=cancel_on_timeout
        )
        return None if output is None else cloudpickle.loads(output)

    def cancel(self, task: str | int | core.Task | None = None) -> None:
        """Cancel a task of this session and wait until it has ended; ``None`` (the default)
        cancels every task of it in flight, such as an ``invoke`` running on another thread.

        ``task``: a task id, or a ``core.Task``. The ``invoke`` waiting for a cancelled task
        raises ``Cancelled``; an ``async`` entrypoint gets ``asyncio.CancelledError`` (a
        synchronous one is stopped at its next ``context()``/``update_context()`` call, or by
        the runtime after its grace period). The session serves the next ``invoke`` as usual.
        Works from any thread, and from another process with ``Session(session_id=...)``.
        Needs the flame-agents runtime: a Flame cluster cannot cancel a task
        (``InvalidStateError``).
        """
        task_id = task.id if isinstance(task, core.Task) else task
        self._open_session().cancel(None if task_id is None else str(task_id))

    def context(self) -> Any:
        """The session's current shared context (``None`` if it was created without one)."""
        data = self._open_session().common_data()
        if not data:
            return None
        stored = cache.get_object(cache.ObjectRef.decode(data))
        return cloudpickle.loads(stored) if isinstance(stored, bytes) else stored

    def id(self) -> str:
        """The session id (``<app>-<6 alphanumerics>`` for sessions created here)."""
        return str(self._session.id)

    def close(self) -> None:
        """Close the session on the runtime (idempotent); later calls raise InvalidStateError."""
        if not self._closed:
            self._closed = True
            self._session.close()

    def _close_interrupted(self) -> None:
        # Ctrl-C: stop the running task instead of waiting for it (our runtime; a Flame
        # cluster refuses to close a session with a running task), and never let a failed
        # close replace the KeyboardInterrupt.
        if self._closed:
            return
        self._closed = True
        try:
            self._session.close(cancel_running=True)
        except FlameAgentsError as exc:
            _log.warning("session_close_failed", session_id=self._session.id, error=str(exc))

    def _open_session(self) -> core.Session:
        if self._closed:
            raise InvalidStateError(
                f"session {self._session.id!r} is closed; create a new Session to continue",
                session_id=self._session.id,
            )
        return self._session

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, KeyboardInterrupt):
            self._close_interrupted()
        else:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<flame_agents.service.Session {self._session.id!r} ({state})>"


def _unknown_app_message(name: str) -> str:
    return (
        f"application {name!r} is not registered; register it first "
        f"(flame-agents register -f <app>.yaml, or flame_agents.core.register_application)"
    )


def _app_missing(name: str, conn: core.Connection | None) -> bool:
    try:
        lookup = core.get_application if conn is None else conn.get_application
        return lookup(name) is None
    except FlameAgentsError:
        return False  # cannot tell; keep the original error


def _forget_context(name: str, sid: str, endpoint: str | None) -> None:
    # The context object would otherwise be orphaned in the cache by the failed create.
    with contextlib.suppress(FlameAgentsError):
        cache.delete_objects(f"{name}/{sid}", endpoint=endpoint)
