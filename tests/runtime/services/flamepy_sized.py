"""The published flamepy's FlameService with the verbs of ``sized.py`` (its gRPC server keeps
gRPC's 4 MiB receive limit, which we cannot change)."""

from __future__ import annotations

import sys
from pathlib import Path

import flamepy
from flamepy.core import FlameService, SessionContext, TaskContext

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sized import handle


class FlamepySized(FlameService):
    """Answers with ``sized.handle``."""

    def on_session_enter(self, context: SessionContext) -> None:
        pass

    def on_task_invoke(self, context: TaskContext) -> bytes | None:
        return handle(context.input or b"")

    def on_session_leave(self) -> None:
        pass


if __name__ == "__main__":
    flamepy.run(FlamepySized())
