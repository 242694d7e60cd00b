"""A ``flamepy.core`` FlameService speaking raw bytes, launched by the runtime under test.

Replies ``b"echo:<input>|cd=<common_data>"``; the input ``b"none"`` returns no output and
``b"fail:<text>"`` raises with ``<text>``, so clients can check both paths of the shim.
``b"crash"`` kills the process mid-task, and ``b"crash-once:<path>"`` does so only while
``<path>`` does not exist yet (creating it first), to exercise the runtime's recovery.
``b"env"`` replies JSON describing the launch environment (variables, cwd, socket).
"""

from __future__ import annotations

import json
import os
import stat

import flamepy
from flamepy.core import FlameService, SessionContext, TaskContext


class RawEcho(FlameService):
    """Echo the task input together with the session's common_data."""

    def __init__(self) -> None:
        self._common_data: bytes | None = None
        self._session_id = ""

    def on_session_enter(self, context: SessionContext) -> None:
        self._common_data = context.common_data()
        self._session_id = context.session_id

    def on_task_invoke(self, context: TaskContext) -> bytes | None:
        data = context.input or b""
        if data == b"none":
            return None
        if data.startswith(b"fail:"):
            raise RuntimeError(data[len(b"fail:") :].decode())
        if data == b"crash":
            os._exit(3)
        if data.startswith(b"crash-once:"):
            marker = data[len(b"crash-once:") :].decode()
            if not os.path.exists(marker):
                with open(marker, "w"):
                    pass
                os._exit(3)
        if data == b"env":
            names = (
                "FLAME_INSTANCE_ENDPOINT",
                "FLAME_ENDPOINT",
                "FLAME_CACHE_ENDPOINT",
                "FLAME_LOG",
                "HOME",
                "TMPDIR",
                "PYTHONUNBUFFERED",
            )
            sock = os.environ.get("FLAME_INSTANCE_ENDPOINT", "")
            return json.dumps(
                {
                    "env": {n: os.environ.get(n) for n in names},
                    "cwd": os.getcwd(),
                    "socket_is_unix": bool(sock) and stat.S_ISSOCK(os.stat(sock).st_mode),
                    "own_group": os.getpgid(0) == os.getpid(),
                }
            ).encode()
        if data == b"whoami":
            return f"{self._session_id}/{context.session_id}/{context.task_id}".encode()
        cd = b"<none>" if self._common_data is None else self._common_data
        return b"echo:" + data + b"|cd=" + cd

    def on_session_leave(self) -> None:
        self._common_data = None


if __name__ == "__main__":
    flamepy.run(RawEcho())
