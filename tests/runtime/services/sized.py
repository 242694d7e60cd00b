"""A raw-bytes service for the message-limit tests, served by our instance server.

``reply <n> <count file>`` -> ``n`` bytes; ``echo <count file>\\n<payload>`` -> the payload;
``pid`` -> this process's pid. The two first append a line to the count file each time the
handler runs, so a test counts runs from outside the process.
"""

from __future__ import annotations

import os
from pathlib import Path

from flame_agents.service._instance_server import serve


def handle(data: bytes) -> bytes:
    """The reply to one task input (see the module docstring)."""
    head, _, payload = data.partition(b"\n")
    verb, *args = head.decode().split(" ")
    if verb == "pid":
        return str(os.getpid()).encode()
    with Path(args[-1]).open("a") as count:
        count.write("ran\n")
    if verb == "reply":
        return b"r" * int(args[0])
    return payload


class Sized:
    """Test handler (see the module docstring)."""

    def on_session_enter(
        self, session_id: str, application_name: str, common_data: bytes | None
    ) -> None:
        pass

    def on_task_invoke(self, task_id: str, session_id: str, input: bytes | None) -> bytes | None:
        return handle(input or b"")

    def on_session_leave(self) -> None:
        pass


if __name__ == "__main__":
    serve(Sized())
