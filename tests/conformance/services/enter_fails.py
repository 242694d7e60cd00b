"""A ``flamepy.core`` FlameService whose ``on_session_enter`` always raises.

The runtime must record the failure as session event 1001 (with this text), stop binding after
its retry limit (event 1002), keep the tasks pending and never hang.
"""

from __future__ import annotations

import flamepy
from flamepy.core import FlameService, SessionContext, TaskContext

FAILURE_TEXT = "enter refused by conformance service"


class EnterFails(FlameService):
    """Refuse every session."""

    def on_session_enter(self, context: SessionContext) -> None:
        raise RuntimeError(f"{FAILURE_TEXT} ({context.session_id})")

    def on_task_invoke(self, context: TaskContext) -> bytes | None:
        return b"must never run"

    def on_session_leave(self) -> None:
        return None


if __name__ == "__main__":
    flamepy.run(EnterFails())
