"""A raw-bytes service on the published flamepy (``flamepy.FlameService`` + ``flamepy.run``).

Replies ``b"echo:<input>|cd=<common_data>"``; ``b"none"`` returns no output, ``b"fail:<text>"``
raises ``<text>``, ``b"sleep:<seconds>"`` sleeps first (to observe RUNNING tasks).
"""

from __future__ import annotations

import time

import flamepy
from flamepy.core import FlameService, SessionContext, TaskContext


class RawService(FlameService):
    """Echo the task input with the session's common data."""

    def __init__(self) -> None:
        self._common_data: bytes | None = None

    def on_session_enter(self, context: SessionContext) -> None:
        self._common_data = context.common_data()

    def on_task_invoke(self, context: TaskContext) -> bytes | None:
        data = context.input or b""
        if data == b"none":
            return None
        if data.startswith(b"fail:"):
            raise ValueError(data[len(b"fail:") :].decode())
        if data.startswith(b"sleep:"):
            time.sleep(float(data[len(b"sleep:") :]))
        cd = b"<none>" if self._common_data is None else self._common_data
        return b"echo:" + data + b"|cd=" + cd

    def on_session_leave(self) -> None:
        self._common_data = None


if __name__ == "__main__":
    flamepy.run(RawService())
