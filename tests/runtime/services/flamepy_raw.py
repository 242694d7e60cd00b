"""The published flamepy's raw-bytes FlameService: echoes input with the common_data."""

from __future__ import annotations

import flamepy
from flamepy.core import FlameService, SessionContext, TaskContext


class Echo(FlameService):
    """Echo ``<input>|cd=<common_data>``; ``fail:<text>`` raises."""

    def __init__(self) -> None:
        self.cd: bytes | None = None

    def on_session_enter(self, context: SessionContext) -> None:
        self.cd = context.common_data()

    def on_task_invoke(self, context: TaskContext) -> bytes | None:
        data = context.input or b""
        if data.startswith(b"fail:"):
            raise RuntimeError(data[5:].decode())
        return data + b"|cd=" + (self.cd or b"<none>")

    def on_session_leave(self) -> None:
        self.cd = None


if __name__ == "__main__":
    flamepy.run(Echo())
