"""The client's handles: :class:`Connection` to a Frontend, and the :class:`Session` it opens.

A Connection is a :class:`~flame_agents.core._transport.Transport` with every operation of the
``_sessions``, ``_tasks``, ``_applications`` and ``_executors`` modules as a method; a Session
runs its tasks through one. The module functions of :mod:`flame_agents.core` are these methods
on the default connection (``_api``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import Any

from flame_agents._logging import get_logger
from flame_agents.config import Endpoints
from flame_agents.core import _applications, _cancel, _executors, _fastpath, _sessions, _tasks
from flame_agents.core._executors import ExecutorInfo
from flame_agents.core._transport import Transport
from flame_agents.core._validate import check_bytes, check_session_id, check_task_id
from flame_agents.errors import FlameAgentsError
from flame_agents.types import (
    Application,
    ApplicationSpec,
    ResourceRequirement,
    SessionInfo,
    Task,
)

__all__ = ["Connection", "Session"]

_log = get_logger(__name__)


class Connection(Transport):
    """A client connection to a Frontend (our embedded runtime or a Flame session manager).

    Thread-safe; share one per process (the module-level functions of :mod:`flame_agents.core`
    do) or one per runtime (``service.Session(..., connection=c)``, ``AgentSession(...,
    connection=c)``). ``close()`` cancels running watches and releases the channel.
    ``cache_endpoint`` is where handles opened on this connection store new objects (contexts,
    agent state).
    """

    @classmethod
    def from_endpoints(cls, endpoints: Endpoints, **options: Any) -> Connection:
        """Connect to resolved :class:`~flame_agents.config.Endpoints`."""
        return cls(
            endpoints.endpoint,
            cache_endpoint=endpoints.cache_endpoint,
            ca_file=endpoints.ca_file,
            **options,
        )

    # -- sessions ------------------------------------------------------------------------------

    def create_session(
        self,
        application: str,
        *,
        common_data: bytes | None = None,
        session_id: str | None = None,
        min_instances: int = 0,
        max_instances: int | None = None,
        priority: int = 0,
        resreq: ResourceRequirement | str | Mapping[str, Any] | None = None,
    ) -> Session:
        """Create a session of ``application`` and return its handle.

        Args:
            application: Name of a registered application.
            common_data: Opaque bytes handed to every instance of the session.
            session_id: The id to use (default ``<application>-<6 random alphanumerics>``).
            min_instances: Instances kept warm even without tasks.
            max_instances: Upper bound of concurrent instances (``None`` = unlimited).
            priority: Scheduling priority, higher first.
            resreq: Resources per instance: a ResourceRequirement, ``"cpu=1,mem=2g"`` or a
                mapping (default: the runtime's, ``cpu=1,mem=1g`` on Flame).

        Raises:
            AlreadyExistsError: the session id is taken. NotFoundError: no such application.
        """
        spec = _sessions.session_spec(
            application,
            common_data=common_data,
            min_instances=min_instances,
            max_instances=max_instances,
            priority=priority,
            resreq=resreq,
        )
        return Session(self, _sessions.create_session(self, spec, session_id=session_id))

    def open_session(self, session_id: str, *, spec: Any = None) -> Session:
        """Open an existing open session, or create it when ``spec`` is given and it is missing.

        ``spec`` is a mapping with :meth:`create_session`'s keyword names (``application``
        required) or flamepy's ``SessionAttributes``. Raises NotFoundError (missing, no spec) or
        InvalidArgumentError (closed, or the spec does not match).
        """
        return Session(self, _sessions.open_session(self, session_id, spec=spec))

    def get_session(self, session_id: str) -> SessionInfo:
        """A snapshot of a session: state, task counters, events, spec."""
        return _sessions.get_session(self, session_id)

    def list_sessions(self) -> list[SessionInfo]:
        """Snapshots of every session the runtime knows (closed ones included)."""
        return _sessions.list_sessions(self)

    def close_session(self, session_id: str, *, cancel_running: bool = False) -> SessionInfo:
        """Close a session: pending tasks are cancelled; closing a closed session is a no-op.

        ``cancel_running``: stop running tasks too (our runtime only; see Session.close).
        """
        return _sessions.close_session(self, session_id, cancel_running=cancel_running)

    # -- tasks of any session (also closed ones, which open_session refuses) -------------------

    def get_task(self, session_id: str, task_id: str) -> Task:
        """One task of a session, with input, output and events."""
        return _tasks.get_task(self, check_session_id(session_id), check_task_id(task_id))

    def list_tasks(self, session_id: str) -> list[Task]:
        """Every task of a session."""
        return _tasks.list_tasks(self, check_session_id(session_id))

    def cancel_task(
        self,
        session_id: str,
        task_id: str | None = None,
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> list[Task]:
        """Cancel a task of a session, from any thread or process (our runtime only).

        ``task_id`` None cancels each task of the session that has not ended (those in
        flight). A Pending task ends CANCELLED at once; a Running one once its service stopped
        it (an async entrypoint gets ``asyncio.CancelledError``), or once the runtime stopped
        its instance after a grace period (``--cancel-grace``). Whoever waits for the task
        (``invoke``, ``run``) then gets :class:`~flame_agents.errors.Cancelled`. A task that
        ended first keeps its result; cancelling it changes nothing.

        Returns the tasks concerned, in their terminal states when ``wait`` (waiting at most
        ``timeout`` seconds), else as they were once the runtime recorded the request.

        Raises:
            NotFoundError: no such session or task.
            InvalidStateError: the Frontend cannot cancel tasks (a Flame 0.6 cluster; the
                error's ``grpc_code`` field is ``"UNIMPLEMENTED"``).
        """
        sid = check_session_id(session_id)
        tid = None if task_id is None else check_task_id(task_id)
        return _cancel.cancel_tasks(self, sid, tid, wait=wait, timeout=timeout)

    # -- applications --------------------------------------------------------------------------

    def register_application(
        self, name: str, spec: ApplicationSpec | Mapping[str, Any] | Any
    ) -> None:
        """Register an application.

        ``spec`` is an :class:`ApplicationSpec`, a dict with flamepy's ``ApplicationAttributes``
        field names (``command``, ``arguments``, ``environments``, ``working_directory``, ...),
        or an ``ApplicationAttributes``. Raises AlreadyExistsError if the name is taken.
        """
        _applications.register_application(self, name, spec)

    def update_application(
        self, name: str, spec: ApplicationSpec | Mapping[str, Any] | Any
    ) -> None:
        """Replace an application's spec; InvalidStateError while it has open sessions."""
        _applications.update_application(self, name, spec)

    def unregister_application(self, name: str) -> None:
        """Remove an application; InvalidStateError while it has open sessions."""
        _applications.unregister_application(self, name)

    def get_application(self, name: str) -> Application | None:
        """The application called ``name``, or ``None``."""
        return _applications.get_application(self, name)

    def list_applications(self) -> list[Application]:
        """Every registered application."""
        return _applications.list_applications(self)

    # -- executors -----------------------------------------------------------------------------

    def list_executors(self) -> list[ExecutorInfo]:
        """Every executor of the runtime: its state, the session it serves, its process."""
        return _executors.list_executors(self)


class Session:
    """A session of an application: run tasks on its instances, then close it.

    Obtain one from ``create_session`` or ``open_session`` (of a :class:`Connection` or the
    module). Use it as a context manager to close the session on exit.
    """

    def __init__(
        self, connection: Connection | Callable[[], Connection], info: SessionInfo
    ) -> None:
        """Wrap ``info``, bound to ``connection`` or to the connection a function returns.

        The module functions pass ``default_connection``: their handles follow the default
        connection, so they keep working after ``reset_default_connection()`` (e.g. a runtime
        restarted on the same port).
        """
        self._connection = connection
        self.id = info.id
        """The session id."""
        self.application = info.application
        """The application serving the session."""
        self._info = info

    @property
    def connection(self) -> Connection:
        """The connection the session's RPCs go through."""
        if isinstance(self._connection, Connection):
            return self._connection
        return self._connection()

    @property
    def last_info(self) -> SessionInfo:
        """The snapshot from the last reply about this session (no RPC)."""
        return self._info

    def info(self) -> SessionInfo:
        """A fresh snapshot of the session (state, task counters, events) from the runtime."""
        self._info = self.connection.get_session(self.id)
        return self._info

    def common_data(self) -> bytes | None:
        """The session's common data as given at creation (it never changes)."""
        return self._info.common_data

    def create_task(self, input: bytes | None) -> Task:
        """Submit a task with ``input`` bytes (or None); returns it PENDING without waiting."""
        data = check_bytes("task input", input)
        return _tasks.create_task(self.connection, self.id, data)

    def run(self, input: bytes | None) -> Future[bytes | None]:
        """Submit a task and return a Future of its output.

        The task is created before this returns (so a closed session fails here); the Future
        resolves with the output bytes (or None), or fails with :class:`TaskFailedError` carrying
        the service's error text, or with :class:`Cancelled` when the task was cancelled.
        """
        data = check_bytes("task input", input)
        started = _fastpath.start_task(self.connection, self.id, data)
        if started is not None:
            return self.connection.submit(lambda: _tasks.result_of(started.wait()))
        task = _tasks.create_task(self.connection, self.id, data)
        return self.connection.submit(lambda: self._result(task.id, None))

    def invoke(
        self,
        input: bytes | None,
        *,
        timeout: float | None = None,
        cancel_on_timeout: bool = False,
    ) -> bytes | None:
        """Run a task and wait for its output.

        ``cancel_on_timeout``: when ``timeout`` runs out, cancel the task (see
        :meth:`Connection.cancel_task`) and raise :class:`Cancelled` once it ended (its result
        or failure, if it finished first). Ctrl-C while waiting asks the runtime to cancel the
        task before the KeyboardInterrupt goes on (our runtime; a Flame cluster cannot).

        Raises:
            TaskFailedError: the service failed the task (message = the service's error text,
                with ``task_id``, ``session_id``, ``remote_type`` and ``remote_traceback``
                fields).
            LimitExceededError: the input or the reply is over the runtime's message limit
                (``--max-message-bytes``); a reply over it was not retried.
            Cancelled: the task was cancelled (by :meth:`cancel` from any thread or process,
                ``cancel_on_timeout``, or because the session closed before it ran).
            InvocationTimeoutError: no result within ``timeout`` seconds (without
                ``cancel_on_timeout`` the task keeps running).
        """
        data = check_bytes("task input", input)
        conn = self.connection
        started = _fastpath.start_task(conn, self.id, data, timeout=timeout, terminal_first=True)
        wait: Callable[[], Task]
        if started is not None:
            task_id, wait = started.task.id, started.wait
        else:
            task_id = _tasks.create_task(conn, self.id, data).id
            # A partial, not a closure: no frame of its own in a Ctrl-C traceback.
            wait = functools.partial(_tasks.wait_task, conn, self.id, task_id, timeout=timeout)

        done = _cancel.wait_or_cancel(
            conn, self.id, task_id, wait, cancel_on_timeout=cancel_on_timeout
        )
        return _tasks.result_of(done)

    def cancel(
        self, task_id: str | None = None, *, wait: bool = True, timeout: float | None = None
    ) -> list[Task]:
        """Cancel one task of the session, or (``None``) each task of it in flight; see
        :meth:`Connection.cancel_task`. Callable from any thread while ``invoke`` waits."""
        return self.connection.cancel_task(self.id, task_id, wait=wait, timeout=timeout)

    def _result(self, task_id: str, timeout: float | None) -> bytes | None:
        task = _tasks.wait_task(self.connection, self.id, task_id, timeout=timeout)
        return _tasks.result_of(task)

    def get_task(self, task_id: str) -> Task:
        """The current state of one task, with input, output and events."""
        return _tasks.get_task(self.connection, self.id, check_task_id(task_id))

    def list_tasks(self) -> list[Task]:
        """Every task of the session."""
        return _tasks.list_tasks(self.connection, self.id)

    def watch_task(self, task_id: str, *, timeout: float | None = None) -> Iterator[Task]:
        """Yield each new state of a task until its terminal state (no polling).

        Raises :class:`InvocationTimeoutError` (a ``TimeoutError``) after ``timeout`` seconds.
        """
        return _tasks.watch_task(self.connection, self.id, check_task_id(task_id), timeout=timeout)

    def close(self, *, cancel_running: bool = False) -> SessionInfo:
        """Close the session: pending tasks are cancelled, no new tasks are accepted.

        Running tasks finish first on our runtime (Flame refuses the close while a task runs).
        ``cancel_running``: our runtime stops them instead (their instances are stopped) and
        they end CANCELLED; leaving a ``with`` block on Ctrl-C closes this way.
        """
        self._info = self.connection.close_session(self.id, cancel_running=cancel_running)
        return self._info

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        # Already failing: closing is best effort and must not hide the original error. On
        # Ctrl-C nobody waits for the running tasks: they are stopped rather than awaited.
        try:
            self.close(cancel_running=isinstance(exc, KeyboardInterrupt))
        except FlameAgentsError as close_exc:
            _log.warning("session_close_failed", session_id=self.id, error=str(close_exc))

    def __repr__(self) -> str:
        return f"<Session {self.id} of {self.application}>"
