"""Agents of the turn cancellation tests (served by tests/agent/services/cancel_service.py).

Each run writes ``<folder>/entered`` when it is under way, so a test cancels a turn that is
running, never one it guesses is; what the handler saw is reported through files too.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from pydantic import BaseModel, Field

from flame_agents import Agent, AsyncTurn, ContextModel, History, Turn


class CountContext(ContextModel):
    count: int = 0
    notes: History[str] = Field(default_factory=History)


class Work(BaseModel):
    folder: str = ""
    """Where the run reports; empty: a quick turn that only counts."""
    mode: str = "quick"
    """``emit``: emits until stopped; ``poll``: waits for ``turn.cancelled``, then steps;
    ``ignore``: only reads ``turn.cancelled`` (reporting it in ``<folder>/cancel-seen``) and
    returns normally once ``<folder>/release`` exists."""


class Counted(BaseModel):
    count: int


def _enter(folder: str) -> Path:
    path = Path(folder)
    (path / "entered").write_text("1")
    return path


class SyncWorker(Agent[CountContext]):
    """A sync handler: changes the context first, then runs until it is cancelled."""

    def handle(self, req: Work, ctx: CountContext, turn: Turn) -> Counted:
        ctx.count += 1
        ctx.notes.append(req.mode)
        if req.folder:
            folder = _enter(req.folder)
            if req.mode == "emit":
                for i in range(600_000):
                    turn.emit({"i": i})  # stops here once cancelled
                    time.sleep(0.005)
            elif req.mode == "poll":
                while not turn.cancelled:
                    time.sleep(0.005)
                (folder / "saw-cancelled").write_text("1")
                turn.step("after", lambda: (folder / "step-ran").write_text("1") and None)
            elif req.mode == "ignore":
                while not (folder / "release").exists():
                    if turn.cancelled:
                        (folder / "cancel-seen").write_text("1")
                    time.sleep(0.005)
        return Counted(count=ctx.count)


class AsyncWorker(Agent[CountContext]):
    """An async handler: changes the context, then sleeps until it is cancelled."""

    async def handle(self, req: Work, ctx: CountContext, turn: AsyncTurn) -> Counted:
        ctx.count += 1
        ctx.notes.append(req.mode)
        if req.folder:
            folder = _enter(req.folder)
            try:
                await asyncio.sleep(600)
            except asyncio.CancelledError:
                (folder / "got-cancelled").write_text(str(turn.cancelled))
                raise
        return Counted(count=ctx.count)
