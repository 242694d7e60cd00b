"""Agents shared by the agent-layer tests (also served by tests/agent/services/*.py)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, Field

from flame_agents.agent import Agent, ContextModel, History


class Message(BaseModel):
    role: str
    text: str


class ChatContext(ContextModel):
    system_prompt: str = ""
    turns: int = 0
    messages: History[Message] = Field(default_factory=History)


class Ask(BaseModel):
    text: str


class Answer(BaseModel):
    text: str
    turns: int


class ChatAgent(Agent[ChatContext]):
    def handle(self, req: Ask, ctx: ChatContext) -> Answer:
        ctx.messages.append(Message(role="user", text=req.text))
        ctx.turns += 1
        if req.text == "explode":
            raise ValueError("the handler exploded")
        if req.text == "invalidate":
            ctx.turns = "not a number"  # type: ignore[assignment]
            return Answer(text="", turns=0)
        return Answer(text=req.text.upper(), turns=ctx.turns)


class CounterContext(ContextModel):
    count: int = 0
    added: History[int] = Field(default_factory=History)
    started: int = 0
    ended: int = 0


class Add(BaseModel):
    n: int = 1


class Total(BaseModel):
    count: int
    entries: int
    pid: int = 0


class CounterAgent(Agent[CounterContext]):
    """Adds ``n``; records each addition; counts session start/end hooks."""

    def on_session_start(self, ctx: CounterContext) -> None:
        ctx.started += 1

    def on_session_end(self, ctx: CounterContext) -> None:
        ctx.ended += 1

    async def handle(self, req: Add, ctx: CounterContext) -> Total:
        ctx.count += req.n
        ctx.added.append(req.n)
        return Total(count=ctx.count, entries=len(ctx.added), pid=os.getpid())


def plain_counter(adds: list[int]) -> dict[str, Any]:
    """What CounterContext should hold after ``adds`` (the plain model)."""
    return {"count": sum(adds), "added": list(adds)}
