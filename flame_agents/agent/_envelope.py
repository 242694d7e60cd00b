"""The JSON envelopes of agent task payloads (task input and output bytes).

Request: ``{"key": <idempotency key>, "request": <request JSON>}``.
Reply: ``{"reply": <reply JSON>, "replayed": <bool>, "version": <state version>,
"type": "<module>:<qualname of the reply type>"}``.

JSON rather than pickles: validated on both ends, readable without user classes, and not
executable (DESIGN decision 4). Failures travel as the task's message, prefixed with the error
class name so the client can raise the same class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flame_agents import errors
from flame_agents.errors import FlameAgentsError, InvalidArgumentError, TaskFailedError

__all__ = ["ReplyEnvelope", "decode_request", "encode_request", "error_from_message"]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_request(key: str, request_json: Any) -> bytes:
    """Task input for one invocation."""
    return _dumps({"key": key, "request": request_json})


def decode_request(data: bytes | None) -> tuple[str, Any]:
    """``(idempotency key, request JSON)`` from task input."""
    try:
        raw = json.loads(data or b"")
        key, request = raw["key"], raw["request"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgumentError(
            "agent task input must be a JSON request envelope {key, request}; invoke agents "
            "through AgentSession",
        ) from exc
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError("the idempotency key must be a non-empty string")
    return key, request


@dataclass(frozen=True)
class ReplyEnvelope:
    """What an instance answers: the reply JSON and where it came from."""

    reply: Any
    replayed: bool
    version: int
    type: str

    def encode(self) -> bytes:
        return _dumps(
            {
                "reply": self.reply,
                "replayed": self.replayed,
                "version": self.version,
                "type": self.type,
            }
        )

    @classmethod
    def decode(cls, data: bytes | None) -> ReplyEnvelope:
        try:
            raw = json.loads(data or b"")
            return cls(raw["reply"], bool(raw["replayed"]), int(raw["version"]), str(raw["type"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise TaskFailedError(
                "the service did not answer with an agent reply envelope; is the application an "
                "Agent?"
            ) from exc


def error_from_message(message: str, **fields: Any) -> FlameAgentsError:
    """Rebuild the error an instance reported as ``"<ErrorClass>: <text>"``."""
    name, sep, text = message.partition(": ")
    cls = getattr(errors, name, None) if sep else None
    if isinstance(cls, type) and issubclass(cls, FlameAgentsError) and not cls.retryable:
        return cls(text, **fields)
    return TaskFailedError(message, **fields)
