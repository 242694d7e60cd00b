"""A test service that records when its instances serve a session, for resource-order tests.

``OnSessionEnter`` appends ``enter <session_id> <pid>`` and ``OnSessionLeave`` appends
``leave <session_id> <pid>`` to the file named by ``PROBE_LOG`` (one short ``O_APPEND`` write
each, so lines of concurrent instances never interleave). Tasks: ``pid`` -> this process's pid;
``env:<NAME>`` -> that variable (``<unset>`` when absent); ``hold:<dir>`` -> write ``<dir>/<pid>``
then wait until ``<dir>/go`` exists, then answer ``held``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flame_agents.service._instance_server import serve


def _record(event: str, session_id: str) -> None:
    line = f"{event} {session_id} {os.getpid()}\n".encode()
    fd = os.open(os.environ["PROBE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class Probe:
    """Test handler (see the module docstring)."""

    def __init__(self) -> None:
        self.session_id = ""

    def on_session_enter(
        self, session_id: str, application_name: str, common_data: bytes | None
    ) -> None:
        self.session_id = session_id
        _record("enter", session_id)

    def on_task_invoke(self, task_id: str, session_id: str, input: bytes | None) -> bytes | None:
        verb, _, arg = (input or b"").partition(b":")
        if verb == b"pid":
            return str(os.getpid()).encode()
        if verb == b"env":
            return os.environ.get(arg.decode(), "<unset>").encode()
        if verb == b"hold":
            folder = Path(arg.decode())
            (folder / str(os.getpid())).touch()
            while not (folder / "go").exists():
                time.sleep(0.02)
            return b"held"
        raise ValueError(f"unknown probe task {input!r}")

    def on_session_leave(self) -> None:
        _record("leave", self.session_id)


if __name__ == "__main__":
    serve(Probe())
