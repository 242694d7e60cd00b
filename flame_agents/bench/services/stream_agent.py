"""An agent that emits ``n`` small items through its turn, then replies their count.

``n=0`` is a no-op turn (the baseline of the stream's first-item latency); ``inline`` returns
the same items in the reply instead of emitting them (the baseline of the stream's rate).
"""

from __future__ import annotations

from pydantic import BaseModel

from flame_agents.agent import Agent, ContextModel, Turn


class Item(BaseModel):
    """One small streamed item (a token, a progress line)."""

    i: int
    text: str


class Produce(BaseModel):
    """How many items to emit, or to return in the reply."""

    n: int = 0
    inline: bool = False


class Produced(BaseModel):
    """How many items the turn emitted, and those it returned inline."""

    count: int
    items: list[Item] = []


class StreamContext(ContextModel):
    """The agent keeps no state of its own."""


class StreamAgent(Agent[StreamContext]):
    """Emits ``req.n`` items (or returns them inline)."""

    def handle(self, req: Produce, ctx: StreamContext, turn: Turn) -> Produced:
        """One turn."""
        items = (Item(i=i, text="token") for i in range(req.n))
        if req.inline:
            return Produced(count=req.n, items=list(items))
        for item in items:
            turn.emit(item)
        return Produced(count=req.n)


if __name__ == "__main__":
    # Serve the class under its importable name, not ``__main__``: replies carry the type name.
    from flame_agents.bench.services.stream_agent import StreamAgent as _StreamAgent

    _StreamAgent.run()
