"""An agent whose turn runs ``steps`` no-op durable steps, then appends one message.

The durable-step scenario times turns of this agent with N steps and with none, at a given
history length: the difference, divided by N, is what one ``turn.step`` costs (its intent and
result records in the session's journal, and the compactions they bring on sooner).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from flame_agents.agent import Agent, ContextModel, History, Turn
from flame_agents.bench.services.chat_agent import Message


class StepContext(ContextModel):
    """The session context: a conversation, as the chat agent's."""

    messages: History[Message] = Field(default_factory=History)


class Work(BaseModel):
    """One turn: ``steps`` no-op steps, then ``text`` appended to the history."""

    steps: int = Field(ge=0)
    text: str


class Done(BaseModel):
    """How many messages the conversation has now."""

    count: int


def noop(i: int) -> int:
    """The step's function: nothing but its result, so the figure is the step's own cost."""
    return i


class StepAgent(Agent[StepContext]):
    """``steps`` durable no-op steps per turn."""

    def handle(self, req: Work, ctx: StepContext, turn: Turn) -> Done:
        """One turn."""
        for i in range(req.steps):
            turn.step(f"s{i}", noop, i)
        ctx.messages.append(Message(role="user", text=req.text))
        return Done(count=len(ctx.messages))


if __name__ == "__main__":
    # Serve the class under its importable name, not ``__main__``: replies carry the type name.
    from flame_agents.bench.services.step_agent import StepAgent as _StepAgent

    _StepAgent.run()
