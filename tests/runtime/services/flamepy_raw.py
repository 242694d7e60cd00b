"""The published flamepy's raw-bytes FlameService: echoes input with the common_data."""

from __future__ import annotations

import os
import time
from pathlib import Path

import flamepy
from flamepy.core import FlameService, SessionContext, TaskContext


class Echo(FlameService):
    """Echo ``<input>|cd=<common_data>``; ``fail:<text>`` raises; ``block:<dir>`` writes the
    pid to ``<dir>/pid`` and sleeps."""

    def __init__(self) -> None:
        self.cd: bytes | None = None

    def on_session_enter(self, context: SessionContext) -> None:
        self.cd = context.common_data()

    def on_task_invoke(self, context: TaskContext) -> bytes | None:
        data = context.input or b""
        if data.startswith(b"fail:"):
            raise RuntimeError(data[5:].decode())
        if data.startswith(b"block:"):
            folder = Path(data[6:].decode())
            (folder / "pid.tmp").write_text(str(os.getpid()))
            (folder / "pid.tmp").rename(folder / "pid")
            time.sleep(120)
        return data + b"|cd=" + (self.cd or b"<none>")

    def on_session_leave(self) -> None:
        self.cd = None


if __name__ == "__main__":
    flamepy.run(Echo())
