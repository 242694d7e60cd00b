"""Agents of the durable-turn end-to-end tests (served by tests/agent/services/turn_service.py).

Their step functions tell the test what ran through files in a folder the request names:
``started-<step>`` and ``completed-<step>`` get a line (the pid) per run of a step's function,
and a gated step writes ``entered-<step>`` and waits for the file ``release``, so the test can
kill the instance while the step runs. A test waits for a file, never for a chosen time.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from flame_agents import Agent, AsyncTurn, ContextModel, Turn
from flame_agents.agent import History


def append_line(path: Path, line: str) -> None:
    with open(path, "a") as fh:
        fh.write(f"{line}\n")


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_for_file(path: Path) -> None:
    while not path.exists():
        time.sleep(0.01)


def gate(folder: Path, name: str) -> None:
    """Tell the test this step runs (``entered-<name>``: the pid), then wait for ``release``."""
    (folder / f"entered-{name}").write_text(str(os.getpid()))
    wait_for_file(folder / "release")


class TurnContext(ContextModel):
    count: int = 0
    log: History[str] = Field(default_factory=History)


class Run(BaseModel):
    tag: str
    dir: str
    gated: str = ""
    """The step whose function waits at the gate (see :func:`gate`)."""


class Ran(BaseModel):
    tag: str
    results: list[str]
    count: int
    pid: int


def run_step(folder: str, name: str, tag: str, gated: bool) -> str:
    path = Path(folder)
    append_line(path / f"started-{name}", str(os.getpid()))
    if gated:
        gate(path, name)
    append_line(path / f"completed-{name}", str(os.getpid()))
    return f"{name}:{tag}"


class ThreeStepAgent(Agent[TurnContext]):
    """Three durable steps, then one change of the context."""

    def handle(self, req: Run, ctx: TurnContext, turn: Turn) -> Ran:
        results = [
            turn.step(name, run_step, req.dir, name, req.tag, req.gated == name)
            for name in ("step1", "step2", "step3")
        ]
        ctx.count += 1
        ctx.log.append(req.tag)
        return Ran(tag=req.tag, results=results, count=ctx.count, pid=os.getpid())


class Pay(BaseModel):
    amount: int
    dir: str


class Paid(BaseModel):
    result: dict[str, Any]
    key: str
    count: int


def charge(folder: str, key: str, amount: int) -> dict[str, Any]:
    """The effect (a line with the step key in ``ledger``), then the gate."""
    path = Path(folder)
    append_line(path / "started-charge", str(os.getpid()))
    append_line(path / "ledger", key)
    gate(path, "charge")
    return {"charged": amount, "by": "charge"}


def find_charge(folder: str, key: str, amount: int) -> dict[str, Any] | None:
    """The reconcile hook: records the key it got, answers from the ledger."""
    path = Path(folder)
    append_line(path / "reconciled", key)
    if key in read_lines(path / "ledger"):
        return {"charged": amount, "by": "reconcile"}
    return None


class ChargeAgent(Agent[TurnContext]):
    """One step with an external effect and a reconcile hook; replies with the step's key."""

    def handle(self, req: Pay, ctx: TurnContext, turn: Turn) -> Paid:
        key = turn.key("charge")
        result = turn.step(
            "charge",
            charge,
            req.dir,
            key,
            req.amount,
            reconcile=lambda k: find_charge(req.dir, k, req.amount),
        )
        ctx.count += 1
        ctx.log.append(f"charged {result['charged']}")
        return Paid(result=result, key=key, count=ctx.count)


class Draft(BaseModel):
    text: str
    words: int


class Approval(BaseModel):
    question: str
    draft: Draft


class Publish(BaseModel):
    text: str
    dir: str
    ask: bool = True


class Published(BaseModel):
    text: str
    approved: bool
    draft_type: str
    count: int


def write_draft(folder: str, text: str) -> Draft:
    append_line(Path(folder) / "started-draft", str(os.getpid()))
    return Draft(text=text, words=len(text.split()))


def publish(folder: str, text: str) -> str:
    append_line(Path(folder) / "started-publish", str(os.getpid()))
    return text


class ApproveAgent(Agent[TurnContext]):
    """Drafts (a step returning a model), asks for approval (an interrupt), then publishes."""

    def handle(self, req: Publish, ctx: TurnContext, turn: Turn) -> Published:
        draft = turn.step("draft", write_draft, req.dir, req.text)
        approved = True
        if req.ask:
            answer = turn.interrupt(Approval(question=f"publish {draft.text!r}?", draft=draft))
            approved = bool(answer.get("yes"))
        if approved:
            turn.step("publish", publish, req.dir, req.text)
            ctx.log.append(draft.text)
        ctx.count += 1
        return Published(
            text=req.text, approved=approved, draft_type=type(draft).__name__, count=ctx.count
        )


async def write_draft_async(folder: str, text: str) -> Draft:
    await asyncio.sleep(0)
    return write_draft(folder, text)


class AsyncApproveAgent(Agent[TurnContext]):
    """ApproveAgent as an async handler: awaited steps (async and sync) and interrupt."""

    async def handle(self, req: Publish, ctx: TurnContext, turn: AsyncTurn) -> Published:
        draft = await turn.step("draft", write_draft_async, req.dir, req.text)
        approved = True
        if req.ask:
            answer = await turn.interrupt(
                Approval(question=f"publish {draft.text!r}?", draft=draft)
            )
            approved = bool(answer.get("yes"))
        if approved:
            await turn.step("publish", publish, req.dir, req.text)
            ctx.log.append(draft.text)
        ctx.count += 1
        return Published(
            text=req.text, approved=approved, draft_type=type(draft).__name__, count=ctx.count
        )
