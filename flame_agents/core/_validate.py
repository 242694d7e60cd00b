"""Up-front argument checks of the core client, so mistakes fail with a clear message locally
instead of as an opaque server error (or, worse, a session id that escapes a directory)."""

from __future__ import annotations

import re
from typing import Any

from flame_agents.errors import InvalidArgumentError

__all__ = [
    "check_application_name",
    "check_bytes",
    "check_session_id",
    "check_task_id",
    "check_uint32",
]

_UINT32_MAX = 2**32 - 1
# Flame's rule for application names (checked server-side on Register/Update too).
_APP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,252}")


def check_session_id(session_id: Any) -> str:
    """A non-empty session id without path separators, NUL or ``..``.

    Runtimes store sessions by id (Flame's fs engine uses it as a directory name), so an id
    that could leave that directory is refused before it is sent.
    """
    if not isinstance(session_id, str) or not session_id:
        raise InvalidArgumentError(
            f"session id must be a non-empty string, got {session_id!r}", session_id=session_id
        )
    if any(c in session_id for c in "/\\\x00") or ".." in session_id:
        raise InvalidArgumentError(
            f"session id {session_id!r} must not contain '/', '\\', NUL or '..'",
            session_id=session_id,
        )
    return session_id


def check_task_id(task_id: Any) -> str:
    """A task id as the wire carries it: a decimal string (ints are accepted and converted)."""
    if isinstance(task_id, int) and not isinstance(task_id, bool) and task_id > 0:
        return str(task_id)
    if not isinstance(task_id, str) or not task_id:
        raise InvalidArgumentError(
            f"task id must be a non-empty string such as '1', got {task_id!r}", task_id=task_id
        )
    return task_id


def check_application_name(name: Any) -> str:
    """An application name Flame accepts: 1-253 of ``[A-Za-z0-9._-]``, no leading ``.``/``-``,
    no ``..``."""
    if not isinstance(name, str) or not _APP_NAME.fullmatch(name) or ".." in name:
        raise InvalidArgumentError(
            f"application name {name!r} is invalid: use 1-253 characters of [A-Za-z0-9._-], "
            "not starting with '.' or '-', without '..'",
            application=name,
        )
    return name


def check_bytes(name: str, value: Any) -> bytes | None:
    """``value`` as bytes (bytes-like objects are copied), or None; anything else is an error."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    hint = " (encode it first, e.g. text.encode())" if isinstance(value, str) else ""
    raise InvalidArgumentError(
        f"{name} must be bytes or None, got {type(value).__name__}{hint}", argument=name
    )


def check_uint32(name: str, value: Any) -> int:
    """An integer that fits the wire's uint32 fields (counts, priority)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT32_MAX:
        raise InvalidArgumentError(
            f"{name} must be an integer in 0..{_UINT32_MAX}, got {value!r}", argument=name
        )
    return value
