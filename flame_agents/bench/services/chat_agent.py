"""A minimal chat agent: each turn appends one message to a ``History`` and replies its length.

The agent layer stores the history as a journaled object (base + append-only patches), so a
turn should cost the same at 10 and at 50,000 messages; the agent-turn scenario checks that.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from flame_agents.agent import Agent, ContextModel, History


class Message(BaseModel):
    """One chat message."""

    role: str
    text: str


class ChatContext(ContextModel):
    """The session context: the whole conversation."""

    messages: History[Message] = Field(default_factory=History)


class Say(BaseModel):
    """A user turn."""

    text: str


class Said(BaseModel):
    """The reply: how many messages the conversation has now."""

    count: int


class ChatAgent(Agent[ChatContext]):
    """Appends the user's message; replies the history length."""

    def handle(self, req: Say, ctx: ChatContext) -> Said:
        """One turn."""
        ctx.messages.append(Message(role="user", text=req.text))
        return Said(count=len(ctx.messages))


if __name__ == "__main__":
    # Serve the class under its importable name, not ``__main__``: replies carry the type name.
    from flame_agents.bench.services.chat_agent import ChatAgent as _ChatAgent

    _ChatAgent.run()
