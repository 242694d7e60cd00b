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
"""

from __future__ import annotations

import os
import re
import traceback
from dataclasses import dataclass
from pathlib import Path

from flame_agents import errors
from flame_agents.errors import FlameAgentsError, TaskFailedError

__all__ = [
    "DEFAULT_FRAMES",
    "MAX_FAILURE_CHARS",
    "RemoteFailure",
    "failure_message",
    "format_failure",
    "parse_failure",
]

DEFAULT_FRAMES = 5
"""Remote frames kept in a failure message (the innermost ones)."""

MAX_FAILURE_CHARS = 64 * 1024
"""Longest failure message a service sends: a huge exception text must not become a message
over the size limit (it would then fail the task with a limit error instead of its own)."""

_TRACEBACK_MARK = "\n\nRemote traceback (most recent call last, innermost frames):\n"
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


def failure_message(type_name: str, text: str) -> str:
    """The first line of a failure: ``"<type_name>: <text>"`` (just the name without text)."""
    return f"{type_name}: {text}" if text else type_name


def format_failure(
    exc: BaseException, *, frames: int = DEFAULT_FRAMES, max_chars: int = MAX_FAILURE_CHARS
) -> str:
    """The failure message of a handler that raised ``exc``: class, text and innermost frames.

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
    tail = ""
    stack = _user_frames(traceback.extract_tb(origin.__traceback__))
    if stack and frames > 0:
        tail = _TRACEBACK_MARK + "\n".join(_frame_text(f) for f in stack[-frames:])
    budget = max(max_chars - len(tail), 0)
    if len(head) > budget:
        cut = f"... ({len(head) - budget} more characters)"
        head = head[: max(budget - len(cut), 0)] + cut
    return (head + tail)[:max_chars]


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
    """The remote class and frames named by a failure message (see the module docstring).

    A class is read from the first line only when the message carries our traceback section or
    the name is one of flame-agents' own error classes, so a plain ``"key: value"`` text from
    another service is not mistaken for one.
    """
    head, mark, frames = message.rpartition(_TRACEBACK_MARK)
    if not mark:
        head, frames = message, ""
    name = head.split("\n", 1)[0].partition(": ")[0]
    known = name in errors.__all__
    type_name = name if _NAME.fullmatch(name) and (mark or known) else None
    return RemoteFailure(type=type_name, traceback=frames or None)
