"""A raw-bytes test service whose running tasks can be cancelled (it has ``on_task_cancel``).

``wait:<dir>`` -> write the pid to ``<dir>/pid``, then wait until cancelled and raise
``Cancelled`` (records ``<dir>/cancelled``); ``ignore:<dir>`` -> write the pid, then sleep on
whatever happens (a task that does not stop when asked); ``pid`` -> this process's pid;
``echo:<x>`` -> ``<x>``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from flame_agents.errors import Cancelled
from flame_agents.service._instance_server import serve


def _write_pid(folder: Path) -> None:
    tmp = folder / "pid.tmp"
    tmp.write_text(str(os.getpid()))
    tmp.rename(folder / "pid")


class Stoppable:
    """Test handler (see the module docstring)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._cancelled: set[str] = set()

    def on_session_enter(self, session_id: str, application_name: str, cd: bytes | None) -> None:
        pass

    def on_task_invoke(self, task_id: str, session_id: str, input: bytes | None) -> bytes | None:
        verb, _, arg = (input or b"").partition(b":")
        if verb == b"wait":
            _write_pid(Path(arg.decode()))
            with self._cond:
                cancelled = self._cond.wait_for(lambda: task_id in self._cancelled, 120)
            if cancelled:
                (Path(arg.decode()) / "cancelled").touch()
                raise Cancelled("stopped by the test service", task_id=task_id)
            return b"never cancelled"
        if verb == b"ignore":
            _write_pid(Path(arg.decode()))
            time.sleep(120)
            return b"slept"
        if verb == b"pid":
            return str(os.getpid()).encode()
        return arg

    def on_task_cancel(self, task_id: str) -> None:
        with self._cond:  # remembered: the request may come before the task reaches the wait
            self._cancelled.add(task_id)
            self._cond.notify_all()

    def on_session_leave(self) -> None:
        pass


if __name__ == "__main__":
    serve(Stoppable())
