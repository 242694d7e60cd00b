"""The text of a failed task: how an exception in a service travels to the client, and back.

Flame carries one free-text message per failed task (``TaskResult.message``, then the task's
event code 3), so the failure stays readable by any client (flamepy shows it as is). Ours is
laid out so our client can also read the class and the remote frames back out of it::

    ValueError: bad input

    Remote traceback (most recent call last, innermost frames):
      File "/srv/app/service.py", line 14, in parse
        raise ValueError("bad input")

The first line is ``<ExceptionClass>: <text>`` (the agent layer already used that prefix); the
frames are the innermost few, from the first one outside flame-agents on (the handler's own code).
Failures the runtime makes itself (a reply over the message limit) use the first line alone, with
one of our error class names.

A failure that is one of our errors (anything the agent layer reports, a ``LimitExceededError``
of the runtime) ends with its error document, one line of JSON naming the class to raise and
the error's fields, so they reach the client as they were set (:mod:`flame_agents._wire.fields`)::

    CommitConflictError: version conflict (expected 3, current 4) on app/s/state: ...

    Remote error (JSON): {"type": "CommitConflictError", "fields": {"expected_version": 3, ...}}

:func:`parse_failure` reads it back and gives the message without it; a message without one
(flamepy's services, plain exceptions) is read from its first line as before.

A task that was cancelled is reported the same way, as a failure naming ``Cancelled`` (see
``_wire.cancel``): :func:`is_cancellation` is how the runtime and the client recognize it.
"""

from __future__ import annotations

import json
import os
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flame_agents import errors
from flame_agents._wire.fields import from_wire, to_wire
from flame_agents.errors import FlameAgentsError, TaskFailedError

__all__ = [
    "DEFAULT_FRAMES",
    "MAX_FAILURE_CHARS",
    "RemoteFailure",
    "failure_message",
    "format_failure",
    "is_cancellation",
    "parse_failure",
]

DEFAULT_FRAMES = 5
"""Remote frames kept in a failure message (the innermost ones)."""

MAX_FAILURE_CHARS = 64 * 1024
"""Longest failure message a service sends: a huge exception text must not become a message
over the size limit (it would then fail the task with a limit error instead of its own)."""

_TRACEBACK_MARK = "\n\nRemote traceback (most recent call last, innermost frames):\n"
_DOCUMENT_MARK = "\n\nRemote error (JSON): "
_MAX_DOCUMENT_CHARS = 16 * 1024
"""Longest error document sent; past it, the fields are left out (the class still travels)."""
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_PACKAGE_DIR = str(Path(errors.__file__).resolve().parent) + os.sep


@dataclass(frozen=True)
class RemoteFailure:
    """What a failure message says about the remote exception."""

    type: str | None
    """The remote exception's class name (``"ValueError"``), or None when the message does not
    name one (a service that reports plain text, such as flamepy's)."""
    traceback: str | None
    """The remote frames as Python formats them (innermost last), or None."""
    fields: dict[str, Any] = field(default_factory=dict)
    """The remote error's fields, from its error document (empty without one)."""
    message: str = ""
    """The failure message without its error document: what people are shown."""


def failure_message(type_name: str, text: str, *, fields: Mapping[str, Any] | None = None) -> str:
    """The first line of a failure: ``"<type_name>: <text>"`` (just the name without text);
    with ``fields``, followed by the error document naming ``type_name`` and them."""
    head = f"{type_name}: {text}" if text else type_name
    return head if fields is None else head + _document(type_name, fields)


def _document(type_name: str, fields: Mapping[str, Any]) -> str:
    doc = json.dumps({"type": type_name, "fields": to_wire(fields)})
    if len(doc) > _MAX_DOCUMENT_CHARS:
        doc = json.dumps({"type": type_name, "fields": {}})
    return _DOCUMENT_MARK + doc


def _reported(exc: BaseException) -> str:
    """The error document of a failure, or "" for exceptions that are not ours.

    A :class:`TaskFailedError` whose ``remote_type`` is set was raised by a layer above the
    handler to report that class with ``remote_fields`` (the agent layer does).
    """
    if isinstance(exc, TaskFailedError):
        reported = exc.fields.get("remote_type")
        if not isinstance(reported, str):
            return ""
        remote_fields = exc.fields.get("remote_fields")
        return _document(reported, remote_fields if isinstance(remote_fields, Mapping) else {})
    if isinstance(exc, FlameAgentsError):
        return _document(type(exc).__name__, exc.fields)
    return ""


def format_failure(
    exc: BaseException, *, frames: int = DEFAULT_FRAMES, max_chars: int = MAX_FAILURE_CHARS
) -> str:
    """The failure message of a handler that raised ``exc``: class, text, innermost frames and,
    for our errors, the error document (see the module docstring).

    A :class:`TaskFailedError` raised by a layer above the handler (the agent layer) already
    holds the text to report, class prefix included; its frames are those of its cause.
    """
    origin: BaseException = exc
    if isinstance(exc, TaskFailedError):
        head = exc.message
        if exc.__cause__ is not None:
            origin = exc.__cause__
    else:
        text = exc.message if isinstance(exc, FlameAgentsError) else str(exc)
        head = failure_message(type(exc).__name__, text)
    document = _reported(exc)
    if len(document) > max_chars // 2:
        document = ""  # never at the expense of the text itself
    tail = ""
    stack = _user_frames(traceback.extract_tb(origin.__traceback__))
    if stack and frames > 0:
        tail = _TRACEBACK_MARK + "\n".join(_frame_text(f) for f in stack[-frames:])
    budget = max(max_chars - len(document) - len(tail), 0)
    if len(head) > budget:
        cut = f"... ({len(head) - budget} more characters)"
        head = head[: max(budget - len(cut), 0)] + cut
    return (head + tail)[: max_chars - len(document)] + document


def _user_frames(stack: traceback.StackSummary) -> list[traceback.FrameSummary]:
    """The frames from the first one outside flame-agents on (our dispatch frames say nothing
    about the failure); all of them when every frame is ours."""
    for index, frame in enumerate(stack):
        if not frame.filename.startswith(_PACKAGE_DIR):
            return list(stack[index:])
    return list(stack)


def _frame_text(frame: traceback.FrameSummary) -> str:
    text = f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}'
    return f"{text}\n    {frame.line.strip()}" if frame.line else text


def parse_failure(message: str) -> RemoteFailure:
    """The remote class, frames and fields of a failure message (see the module docstring).

    With an error document, class and fields are the document's. Without one, a class is read
    from the first line only when the message carries our traceback section or the name is one
    of flame-agents' own error classes, so a plain ``"key: value"`` text from another service is
    not mistaken for one.
    """
    body, document = _split_document(message)
    head, mark, frames = body.rpartition(_TRACEBACK_MARK)
    if not mark:
        head, frames = body, ""
    if document is not None:
        return RemoteFailure(document[0], frames or None, document[1], body)
    name = head.split("\n", 1)[0].partition(": ")[0]
    known = name in errors.__all__
    type_name = name if _NAME.fullmatch(name) and (mark or known) else None
    return RemoteFailure(type=type_name, traceback=frames or None, message=body)


def _split_document(message: str) -> tuple[str, tuple[str, dict[str, Any]] | None]:
    """The message without its error document, and the document's class and fields."""
    body, mark, text = message.rpartition(_DOCUMENT_MARK)
    if not mark or "\n" in text:
        return message, None
    try:
        doc = json.loads(text)
    except ValueError:
        return message, None
    if not isinstance(doc, dict):
        return message, None
    type_name, fields = doc.get("type"), doc.get("fields")
    if not isinstance(type_name, str) or not _NAME.fullmatch(type_name):
        return message, None
    return body, (type_name, from_wire(fields) if isinstance(fields, dict) else {})


def is_cancellation(message: str | None) -> bool:
    """Whether a task's failure message reports that the task was cancelled (it names
    ``errors.Cancelled``, in its error document or on its first line)."""
    return bool(message) and parse_failure(message or "").type == errors.Cancelled.__name__
