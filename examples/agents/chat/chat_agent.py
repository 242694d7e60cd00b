"""A chat agent: the conversation lives in the session's context, one patch per turn.

Each turn calls the model through a durable step (``turn.step("model", ...)``) and streams its
tokens to the client as they come (``turn.emit(Token(...))``). When the model asks for a tool
with a side effect (``send_email``), the turn pauses for a human's approval
(``turn.interrupt(...)``) and, once approved, sends through a step keyed by ``turn.key(...)``
whose ``reconcile`` hook looks in the outbox for that key: a turn whose process died inside the
send does not send the email twice.

The model is pluggable: a deterministic local one by default (it writes its tokens with a small
delay, ``CHAT_TOKEN_DELAY`` seconds, and asks for ``send_email`` when the message reads
``email someone@example.com: text``), or any OpenAI-compatible chat-completions endpoint when
``CHAT_API_BASE`` (e.g. ``https://api.openai.com/v1``) is set, with ``CHAT_API_KEY`` and
``CHAT_MODEL`` (default ``gpt-4o-mini``). Only the last ``CHAT_WINDOW`` messages are sent, and
only the history chunks holding them are read. The outbox is a JSON-lines file standing in for a
mail server: ``CHAT_OUTBOX``, default ``outbox.jsonl`` next to this file.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from flame_agents import Agent, ContextModel, History, Turn


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


class Token(BaseModel):
    """A piece of the reply, streamed to the client while the model writes it."""

    text: str


class ToolCall(BaseModel):
    """A tool the model wants run, with its arguments."""

    name: str
    args: dict[str, str]


class Completion(BaseModel):
    """What one model call returned: its text, and a tool call if it asked for one."""

    text: str
    tool: ToolCall | None = None


class Approval(BaseModel):
    """The question the turn pauses on; the human answers ``{"yes": true}`` or ``false``."""

    question: str
    tool: ToolCall


class Model(Protocol):
    def complete(
        self, system_prompt: str, window: list[Message], on_token: Callable[[str], None]
    ) -> Completion: ...


_EMAIL = re.compile(r"^\s*email\s+(?P<to>[^\s:]+@[^\s:]+)\s*:\s*(?P<body>.+)$", re.I | re.S)


class LocalModel:
    """Deterministic: answers from the conversation itself (tests and demos need no network),
    one word at a time with ``delay`` seconds between words, as a model streams tokens."""

    def __init__(self, *, delay: float = 0.03) -> None:
        self.delay = delay

    def complete(
        self, system_prompt: str, window: list[Message], on_token: Callable[[str], None]
    ) -> Completion:
        last = window[-1].text if window else ""
        prefix = f"[{system_prompt}] " if system_prompt else ""
        email = _EMAIL.match(last)
        if email:
            tool = ToolCall(name="send_email", args=email.groupdict())
            text = f"{prefix}I can email {tool.args['to']} for you."
        else:
            tool = None
            earlier = sum(1 for m in window[:-1] if m.role == "user")
            text = f"{prefix}you said {last!r} ({earlier} earlier messages in view)"
        words = text.split(" ")
        for i, word in enumerate(words):
            time.sleep(self.delay)
            on_token(word if i == len(words) - 1 else word + " ")
        return Completion(text=text, tool=tool)


class OpenAICompatibleModel:
    """Calls ``POST {base}/chat/completions`` with the standard request shape (stdlib only);
    the whole answer arrives as one token, and it never asks for a tool."""

    def __init__(self, base: str, *, api_key: str, model: str, timeout: float = 60.0) -> None:
        self.url = base.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.model = model
        self.timeout = timeout

    def complete(
        self, system_prompt: str, window: list[Message], on_token: Callable[[str], None]
    ) -> Completion:
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
        text = str(data["choices"][0]["message"]["content"])
        on_token(text)
        return Completion(text=text)


def model_from_env() -> Model:
    """The OpenAI-compatible model when ``CHAT_API_BASE`` is set, else the local one."""
    base = os.environ.get("CHAT_API_BASE")
    if not base:
        return LocalModel(delay=float(os.environ.get("CHAT_TOKEN_DELAY", "0.03")))
    return OpenAICompatibleModel(
        base,
        api_key=os.environ.get("CHAT_API_KEY", ""),
        model=os.environ.get("CHAT_MODEL", "gpt-4o-mini"),
    )


def outbox_path() -> Path:
    """Where ``send_email`` delivers: ``CHAT_OUTBOX``, or ``outbox.jsonl`` next to this file
    (not the temp folder: each instance gets a temp folder of its own)."""
    default = Path(__file__).resolve().parent / "outbox.jsonl"
    return Path(os.environ.get("CHAT_OUTBOX") or default)


class Outbox:
    """A JSON-lines file standing in for a mail server: one line per email sent."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, to: str, body: str, *, key: str) -> str:
        """Deliver one email and return its message id; ``key`` goes with it, so that
        :meth:`find` can tell later whether this very send happened."""
        line = json.dumps({"id": f"msg-{key[-12:]}", "key": key, "to": to, "body": body})
        with self.path.open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # several instances may send at once
            f.write(line + "\n")
        return f"msg-{key[-12:]}"

    def find(self, key: str) -> str | None:
        """The message id of the email sent with ``key``, or None if it was never sent."""
        for email in self.emails():
            if email["key"] == key:
                return str(email["id"])
        return None

    def emails(self) -> list[dict[str, str]]:
        """Every email sent so far, oldest first."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]


class ChatAgent(Agent[ChatContext]):
    """Appends the user's message and the answer; the model sees the last few messages."""

    window = int(os.environ.get("CHAT_WINDOW", "20"))

    def __init__(self) -> None:
        self.model = model_from_env()
        self.outbox = Outbox(outbox_path())

    def handle(self, req: Ask, ctx: ChatContext, turn: Turn) -> Answer:
        ctx.messages.append(Message(role="user", text=req.text))
        # A slice reads only the chunks it covers, so a turn costs the same at any length.
        window = ctx.messages[-self.window :]
        # Recorded once per turn: a re-run (a crash, or the resume after an interrupt) gets
        # the same completion back without calling the model again.
        completion: Completion = turn.step(
            "model",
            self.model.complete,
            ctx.system_prompt,
            window,
            lambda token: turn.emit(Token(text=token)),
        )
        text = completion.text
        if completion.tool is not None and completion.tool.name == "send_email":
            text += " " + self._send_email(completion.tool, turn)
        ctx.messages.append(Message(role="assistant", text=text))
        ctx.turns += 1
        return Answer(text=text, turns=ctx.turns)

    def _send_email(self, call: ToolCall, turn: Turn) -> str:
        """Ask a human first; send once, whatever crashes happen around the send."""
        question = f"send this email to {call.args['to']}?"
        answer = turn.interrupt(Approval(question=question, tool=call))
        approved = answer.get("yes") if isinstance(answer, dict) else answer
        if approved is not True:
            return "(not sent)"
        message_id = turn.step(
            "send_email",
            self.outbox.send,
            call.args["to"],
            call.args["body"],
            key=turn.key("send_email"),
            reconcile=self.outbox.find,  # died inside send: was it delivered? (by its key)
        )
        return f"(sent as {message_id})"
