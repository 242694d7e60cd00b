"""The client-side handle of one session: create and await its tasks, then close it."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING

from flame_agents._logging import get_logger
from flame_agents.core import _fastpath, _tasks
from flame_agents.core._validate import check_bytes, check_task_id
from flame_agents.errors import FlameAgentsError
from flame_agents.types import SessionInfo, Task

if TYPE_CHECKING:
    from flame_agents.core._connection import Connection

__all__ = ["Session"]

_log = get_logger(__name__)


class Session:
    """A session of an application: run tasks on its instances, then close it.

    Obtain one from ``create_session`` or ``open_session``. Use it as a context manager to
    close the session on exit.
    """

    def __init__(self, connection: Connection | None, info: SessionInfo) -> None:
        """Wrap ``info``; ``connection=None`` follows the process's default connection."""
        # Handles from the module-level functions follow the default connection, so they keep
        # working after reset_default_connection() (e.g. a runtime restarted on the same port).
        self._connection = connection
        self.id = info.id
        """The session id."""
        self.application = info.application
        """The application serving the session."""
        self._info = info

    @property
    def connection(self) -> Connection:
        """The connection the session's RPCs go through."""
        if self._connection is not None:
            return self._connection
        # Imported here: _default -> _connection -> _sessions -> this module at import time.
        from flame_agents.core._default import default_connection

        return default_connection()

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
        the service's error text.
        """
        data = check_bytes("task input", input)
        started = _fastpath.start_task(self.connection, self.id, data)
        if started is not None:
            return self.connection.submit(lambda: _tasks.result_of(started.wait()))
        task = _tasks.create_task(self.connection, self.id, data)
        return self.connection.submit(lambda: self._result(task.id, None))

    def invoke(self, input: bytes | None, *, timeout: float | None = None) -> bytes | None:
        """Run a task and wait for its output.

        Raises:
            TaskFailedError: the service failed the task (message = the service's error text,
                with ``task_id``, ``session_id``, ``remote_type`` and ``remote_traceback``
                fields).
            LimitExceededError: the input or the reply is over the runtime's message limit
                (``--max-message-bytes``); a reply over it was not retried.
            InvalidStateError: the task was cancelled because the session closed.
            InvocationTimeoutError: no result within ``timeout`` seconds (the task keeps
                running).
        """
        data = check_bytes("task input", input)
        started = _fastpath.start_task(
            self.connection, self.id, data, timeout=timeout, terminal_first=True
        )
        if started is not None:
            return _tasks.result_of(started.wait())
        task = _tasks.create_task(self.connection, self.id, data)
        return self._result(task.id, timeout)

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
