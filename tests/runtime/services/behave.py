"""A raw-bytes test service whose behaviour is chosen by each task's input.

``echo:<x>`` -> ``<x>|cd=<common_data>``; ``fail:<text>`` raises with ``<text>``; ``pid`` ->
this process's pid; ``die`` -> SIGKILL itself; ``block:<dir>`` -> the first time (no
``<dir>/pid`` yet) write the pid there and sleep, later times answer ``done``;
``sleep:<seconds>`` -> sleep then ``slept``; ``env:<NAME>`` -> that variable; ``cwd`` -> the
working directory. The session is refused when common_data is
``b"refuse"``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from flame_agents.service._instance_server import serve


class Behave:
    """Test handler (see the module docstring)."""

    def __init__(self) -> None:
        self.common_data: bytes | None = None

    def on_session_enter(
        self, session_id: str, application_name: str, common_data: bytes | None
    ) -> None:
        if common_data == b"refuse":
            raise RuntimeError("this service refuses the session")
        self.common_data = common_data

    def on_task_invoke(self, task_id: str, session_id: str, input: bytes | None) -> bytes | None:
        data = input or b""
        verb, _, arg = data.partition(b":")
        if verb == b"echo":
            return arg + b"|cd=" + (self.common_data or b"<none>")
        if verb == b"fail":
            raise RuntimeError(arg.decode())
        if verb == b"pid":
            return str(os.getpid()).encode()
        if verb == b"die":
            os.kill(os.getpid(), signal.SIGKILL)
        if verb == b"block":
            marker = Path(arg.decode()) / "pid"
            if marker.exists():
                return b"done"
            tmp = marker.with_suffix(".tmp")
            tmp.write_text(str(os.getpid()))
            tmp.rename(marker)
            time.sleep(120)
        if verb == b"sleep":
            time.sleep(float(arg))
            return b"slept"
        if verb == b"env":
            return os.environ.get(arg.decode(), "<unset>").encode()
        if verb == b"cwd":
            return os.getcwd().encode()
        if verb == b"none":
            return None
        return data

    def on_session_leave(self) -> None:
        self.common_data = None


if __name__ == "__main__":
    serve(Behave())
