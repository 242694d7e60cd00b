"""The agent the fault and load tests drive: a tally whose history records every addition."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, Field

from flame_agents.agent import Agent, ContextModel, History


class Tally(ContextModel):
    """Sum of the additions and each addition, in commit order."""

    count: int = 0
    added: History[int] = Field(default_factory=History)


class Add(BaseModel):
    """Add ``n`` after sleeping ``sleep`` seconds (a window for faults to land in)."""

    n: int
    sleep: float = 0.0
    hold: str = ""
    """A folder: the first run of this invocation writes ``held`` there and blocks (a fault
    lands while it is in flight); later runs (after the fault) go on."""


class Total(BaseModel):
    """The tally after the addition."""

    count: int
    entries: int


class TallyAgent(Agent[Tally]):
    """Adds ``n`` and appends it to the history."""

    def handle(self, req: Add, ctx: Tally) -> Total:
        if req.sleep > 0:
            time.sleep(req.sleep)
        if req.hold:
            marker = Path(req.hold) / "held"
            if not marker.exists():
                marker.with_suffix(".tmp").write_text("held")
                marker.with_suffix(".tmp").rename(marker)
                time.sleep(300)
        ctx.count += req.n
        ctx.added.append(req.n)
        return Total(count=ctx.count, entries=len(ctx.added))
