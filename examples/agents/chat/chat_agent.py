"""A chat agent: the conversation lives in the session's context, one patch per turn.

The responder is pluggable: a deterministic local one by default, or any OpenAI-compatible
chat-completions endpoint when ``CHAT_API_BASE`` (e.g. ``https://api.openai.com/v1``) is set,
with ``CHAT_API_KEY`` and ``CHAT_MODEL`` (default ``gpt-4o-mini``). Only the last
``CHAT_WINDOW`` messages are sent, and only the history chunks holding them are read.
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Protocol

from pydantic import BaseModel, Field

from flame_agents import Agent, ContextModel, History


class Message(BaseModel):
    """One message of the conversation."""

    role: str
    text: str


class ChatContext(ContextModel):
    """The session's state: the system prompt, a turn counter and the whole conversation."""

    system_prompt: str = ""
    turns: int = 0
    messages: History[Message] = Field(default_factory=History)


class Ask(BaseModel):
    """A user message."""

    text: str


class Answer(BaseModel):
    """The assistant's reply and the turn it answered."""

    text: str
    turns: int


class Responder(Protocol):
    def respond(self, system_prompt: str, window: list[Message]) -> str: ...


class LocalResponder:
    """Deterministic: answers from the conversation itself (tests and demos need no network)."""

    def respond(self, system_prompt: str, window: list[Message]) -> str:
        last = window[-1].text if window else ""
        earlier = sum(1 for m in window[:-1] if m.role == "user")
        prefix = f"[{system_prompt}] " if system_prompt else ""
        return f"{prefix}you said {last!r} ({earlier} earlier messages in view)"


class OpenAICompatibleResponder:
    """Calls ``POST {base}/chat/completions`` with the standard request shape (stdlib only)."""

    def __init__(self, base: str, *, api_key: str, model: str, timeout: float = 60.0) -> None:
        self.url = base.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.model = model
        self.timeout = timeout

    def respond(self, system_prompt: str, window: list[Message]) -> str:
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages += [{"role": m.role, "content": m.text} for m in window]
        body = json.dumps({"model": self.model, "messages": messages}).encode()
        request = urllib.request.Request(
            self.url,
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            data = json.load(response)
        return str(data["choices"][0]["message"]["content"])


def responder_from_env() -> Responder:
    """The OpenAI-compatible responder when ``CHAT_API_BASE`` is set, else the local one."""
    base = os.environ.get("CHAT_API_BASE")
    if not base:
        return LocalResponder()
    return OpenAICompatibleResponder(
        base,
        api_key=os.environ.get("CHAT_API_KEY", ""),
        model=os.environ.get("CHAT_MODEL", "gpt-4o-mini"),
    )


class ChatAgent(Agent[ChatContext]):
    """Appends the user's message and the answer; the model sees the last few messages."""

    window = int(os.environ.get("CHAT_WINDOW", "20"))

    def __init__(self) -> None:
        self.responder = responder_from_env()

    def handle(self, req: Ask, ctx: ChatContext) -> Answer:
        ctx.messages.append(Message(role="user", text=req.text))
        # A slice reads only the chunks it covers, so a turn costs the same at any length.
        window = ctx.messages[-self.window :]
        text = self.responder.respond(ctx.system_prompt, window)
        ctx.messages.append(Message(role="assistant", text=text))
        ctx.turns += 1
        return Answer(text=text, turns=ctx.turns)
