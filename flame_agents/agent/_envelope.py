"""The JSON envelopes of agent task payloads (task input and output bytes).

Request: ``{"key": <idempotency key>, "request": <request JSON>}``, plus ``"want_schema": true``
from a client that has no reply class to validate with, and ``"stream": true`` from a client that
follows the turn's emitted items (``AgentSession.stream``). Two more act on a paused turn instead:
``{"key": <turn's key>, "resume": {"index": <interrupt>, "answer": <JSON>}}`` answers its
interrupt and runs it on, ``{"key": <turn's key>, "drop": true}`` drops it.
Reply: ``{"reply": <reply JSON>, "replayed": <bool>, "version": <state version>,
"type": "<module>:<qualname of the reply type>"}``, plus ``"schema": <the reply type's JSON
Schema>`` when the request asked for it.

JSON rather than pickles: validated on both ends, readable without user classes, and not
executable (DESIGN decision 4). Failures travel as the task's message, prefixed with the error
class name and followed by the error's fields, so the client can raise the same class with the
same fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flame_agents import errors
from flame_agents.errors import FlameAgentsError, InvalidArgumentError, TaskFailedError

__all__ = [
    "ReplyEnvelope",
    "RequestEnvelope",
    "decode_request",
    "encode_drop",
    "encode_probe",
    "encode_request",
    "encode_resume",
    "error_from_message",
]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_request(
    key: str, request_json: Any, *, want_schema: bool = False, stream: bool = False
) -> bytes:
    """Task input for one invocation; ``want_schema`` asks for the reply type's JSON Schema,
    ``stream`` for the turn's emitted items in its stream object."""
    doc: dict[str, Any] = {"key": key, "request": request_json}
    if want_schema:
        doc["want_schema"] = True
    if stream:
        doc["stream"] = True
    return _dumps(doc)


def encode_resume(key: str, index: int, answer: Any, *, want_schema: bool = False) -> bytes:
    """Task input answering interrupt ``index`` of the paused turn ``key`` with ``answer``."""
    doc: dict[str, Any] = {"key": key, "resume": {"index": index, "answer": answer}}
    if want_schema:
        doc["want_schema"] = True
    return _dumps(doc)


def encode_drop(key: str) -> bytes:
    """Task input dropping the paused turn ``key`` (its interrupt and recorded steps)."""
    return _dumps({"key": key, "drop": True})


def encode_probe(*, want_schema: bool) -> bytes:
    """Task input asking an agent to answer without running anything: ``{"probe": true}``.

    A plain service fails to read it (it is not a pickle) before calling its entrypoint, so a
    client learns whether an application is an agent, and its reply type, at no cost to state.
    """
    doc: dict[str, Any] = {"probe": True}
    if want_schema:
        doc["want_schema"] = True
    return _dumps(doc)


@dataclass(frozen=True)
class RequestEnvelope:
    """A decoded task input."""

    key: str
    """The invocation's idempotency key."""
    request: Any
    """The request JSON."""
    want_schema: bool = False
    """The client has no reply class: send the reply type's JSON Schema with the reply."""
    probe: bool = False
    """Answer who you are (reply type, state version) without running the handler."""
    resume: tuple[int, Any] | None = None
    """``(interrupt index, answer)``: answer the paused turn ``key`` and run it on."""
    drop: bool = False
    """Drop the paused turn ``key`` (cancel its interrupt); runs nothing."""
    stream: bool = False
    """Write the turn's emitted items to its stream object (else they are dropped)."""


def decode_request(data: bytes | None) -> RequestEnvelope:
    """The request envelope in task input."""
    try:
        raw = json.loads(data or b"")
        if isinstance(raw, dict) and raw.get("probe") is True:
            return RequestEnvelope("", None, raw.get("want_schema") is True, probe=True)
        key = raw["key"]
        want_schema = raw.get("want_schema") is True
        resume: tuple[int, Any] | None = None
        if isinstance(raw.get("resume"), dict):
            resume = (int(raw["resume"]["index"]), raw["resume"].get("answer"))
        drop = raw.get("drop") is True
        request = None if resume is not None or drop else raw["request"]
        stream = raw.get("stream") is True
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgumentError(
            "agent task input must be a JSON request envelope {key, request}; invoke agents "
            "through AgentSession",
        ) from exc
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError("the idempotency key must be a non-empty string")
    return RequestEnvelope(key, request, want_schema, resume=resume, drop=drop, stream=stream)


@dataclass(frozen=True)
class ReplyEnvelope:
    """What an instance answers: the reply JSON and where it came from."""

    reply: Any
    replayed: bool
    version: int
    type: str
    schema: dict[str, Any] | None = None
    """The reply type's JSON Schema, when the request asked for it."""

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "reply": self.reply,
            "replayed": self.replayed,
            "version": self.version,
            "type": self.type,
        }
        if self.schema is not None:
            doc["schema"] = self.schema
        return _dumps(doc)

    @classmethod
    def decode(cls, data: bytes | None) -> ReplyEnvelope:
        try:
            raw = json.loads(data or b"")
            schema = raw.get("schema")
            return cls(
                raw["reply"],
                bool(raw["replayed"]),
                int(raw["version"]),
                str(raw["type"]),
                schema if isinstance(schema, dict) else None,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise TaskFailedError(
                "the service did not answer with an agent reply envelope; is the application an "
                "Agent?"
            ) from exc


def error_from_message(message: str, **fields: Any) -> FlameAgentsError:
    """Rebuild the error an instance reported as ``"<ErrorClass>: <text>"``.

    ``fields`` are those of the client's :class:`TaskFailedError`; its ``remote_fields`` (the
    fields the instance set on the error) become fields of the rebuilt error, under the
    client's own (``task_id``, ``session_id``, ...).

    A retryable class comes back retryable: the agent layer reports one only when it asks for a
    retry with the same idempotency key (a commit whose outcome it could not establish); a
    handler's exception of a retryable class arrives as ``"TaskFailedError: <ErrorClass>: ..."``.
    """
    remote_fields = fields.pop("remote_fields", None) or {}
    name, sep, text = message.partition(": ")
    cls = getattr(errors, name, None) if sep else None
    if isinstance(cls, type) and issubclass(cls, FlameAgentsError):
        return cls(text, **{**remote_fields, **fields})
    return TaskFailedError(message, remote_fields=remote_fields, **fields)
