"""Streaming agents of the stream tests (served by tests/agent/services/stream_service.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel

from flame_agents.agent import Agent, ContextModel, Turn


class Token(BaseModel):
    i: int
    text: str = ""


class Emit(BaseModel):
    n: int = 10
    delay: float = 0.0
    """Seconds between two items."""
    plain: bool = False
    """Emit plain JSON values ({"i": i}) instead of Token models."""
    fail: bool = False
    hold_at: int = -1
    """The first run of the turn stops after this many items until it is killed."""
    hold_dir: str = ""
    ask: bool = False
    """After its items, interrupt for an answer, then emit one more."""
    in_step: bool = False
    """Emit the items inside one durable step (a re-run replays it without emitting)."""


class Emitted(BaseModel):
    count: int
    turns: int


class StreamContext(ContextModel):
    turns: int = 0


class StreamAgent(Agent[StreamContext]):
    def handle(self, req: Emit, ctx: StreamContext, turn: Turn) -> Emitted:
        def emit_all() -> int:
            for i in range(req.n):
                if i == req.hold_at:
                    _hold_first_run(Path(req.hold_dir))
                turn.emit({"i": i} if req.plain else Token(i=i, text=f"t{i}"))
                if req.delay:
                    time.sleep(req.delay)
            return req.n

        count = turn.step("emit", emit_all) if req.in_step else emit_all()
        if req.ask:
            turn.interrupt({"question": "go on?"})
            turn.emit(Token(i=req.n, text="after the answer"))
            count += 1
        if req.fail:
            raise ValueError("the handler failed after emitting")
        ctx.turns += 1
        return Emitted(count=count, turns=ctx.turns)


def _hold_first_run(folder: Path) -> None:
    """The first run records its pid and waits to be killed; later runs go on."""
    try:
        fd = os.open(folder / "started", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    (folder / "pid.tmp").write_text(str(os.getpid()))
    os.replace(folder / "pid.tmp", folder / "pid")
    time.sleep(120)
