"""Agents of the guarantee tests (served by tests/agent/services/guarantee_service.py).

Their handlers place faults by what the test asks in the request, and tell the test where they
are through files: a test waits for a file, never for a chosen time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from pydantic import BaseModel, Field

from flame_agents.agent import Agent, ContextModel, History


class GateContext(ContextModel):
    count: int = 0
    done: History[str] = Field(default_factory=History)


class Do(BaseModel):
    """One invocation of GateAgent; the optional fields choose a fault."""

    tag: str
    runs: str = ""
    """A file: each run of the handler appends a line to it (so the test counts runs)."""
    die_runs: int = 0
    """The first ``die_runs`` runs (counted in ``runs``) SIGKILL their own instance."""
    hang_once: str = ""
    """A folder: the first run writes ``<folder>/hung`` (its pid) and hangs; later runs go on."""
    gate: str = ""
    """A folder: the run writes ``<folder>/entered-<tag>``, then waits for ``<folder>/release``."""


class Done(BaseModel):
    tag: str
    count: int
    pid: int


def _record_run(runs: str) -> int:
    """Append this run to the file ``runs``; the number of this run (0 when not counted)."""
    if not runs:
        return 0
    with open(runs, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return len(Path(runs).read_text().splitlines())


def _wait_for(path: Path) -> None:
    while not path.exists():
        time.sleep(0.01)


class GateAgent(Agent[GateContext]):
    """Counts invocations and records their tags; faults as the request asks (see :class:`Do`)."""

    def handle(self, req: Do, ctx: GateContext) -> Done:
        run = _record_run(req.runs)
        if run and run <= req.die_runs:
            os.kill(os.getpid(), signal.SIGKILL)
        if req.hang_once:
            hung = Path(req.hang_once) / "hung"
            if not hung.exists():
                hung.write_text(str(os.getpid()))
                while True:  # until the runtime's task timeout kills this instance
                    time.sleep(3600)
        if req.gate:
            folder = Path(req.gate)
            (folder / f"entered-{req.tag}").write_text(str(os.getpid()))
            _wait_for(folder / "release")
        ctx.count += 1
        ctx.done.append(req.tag)
        return Done(tag=req.tag, count=ctx.count, pid=os.getpid())


class HooksContext(ContextModel):
    started: int = 0
    ended: int = 0
    events: History[str] = Field(default_factory=History)


class Note(BaseModel):
    text: str


class Noted(BaseModel):
    started: int
    events: int
    pid: int


class AsyncHooksAgent(Agent[HooksContext]):
    """Both session hooks are coroutines: their changes count only if they were awaited."""

    async def on_session_start(self, ctx: HooksContext) -> None:
        await asyncio.sleep(0)
        ctx.started += 1
        ctx.events.append("start")

    async def on_session_end(self, ctx: HooksContext) -> None:
        await asyncio.sleep(0)
        ctx.ended += 1
        ctx.events.append("end")

    def handle(self, req: Note, ctx: HooksContext) -> Noted:
        ctx.events.append(req.text)
        return Noted(started=ctx.started, events=len(ctx.events), pid=os.getpid())
