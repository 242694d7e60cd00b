"""The one place where Arrow Flight failures become :mod:`flame_agents.errors` classes."""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from flame_agents.errors import (
    CacheError,
    CommitConflictError,
    ConfigError,
    FlameAgentsError,
    InvalidArgumentError,
    LimitExceededError,
    ObjectNotFoundError,
    RuntimeUnavailableError,
)

__all__ = ["details", "map_flight_error"]

_CONFLICT = re.compile(r"version conflict \(expected (\d+), current (\d+)\)")


def details(exc: BaseException) -> str:
    """The server's message without pyarrow's ``. Detail: ...`` tail (a server traceback)."""
    text = str(exc)
    if isinstance(exc, KeyError) and text.startswith("'") and ". Detail:" not in text:
        text = text.strip("'")
    return text.split(". Detail:", 1)[0].strip()


def map_flight_error(exc: BaseException, *, op: str, **fields: Any) -> FlameAgentsError:
    """Translate a Flight/Arrow failure of ``op`` into the most specific error class.

    not found -> ObjectNotFoundError, unreachable -> RuntimeUnavailableError, bad argument ->
    InvalidArgumentError (LimitExceededError for limits), "version conflict" ->
    CommitConflictError, anything else -> CacheError. Message: ``"<op>: <details>"``.
    """
    if isinstance(exc, FlameAgentsError):
        return exc
    text = details(exc)
    message = f"{op}: {text}"
    conflict = _CONFLICT.search(text)
    if conflict is not None or "version conflict" in text:
        if conflict is not None:
            fields.setdefault("expected_version", int(conflict.group(1)))
            fields.setdefault("current_version", int(conflict.group(2)))
        return CommitConflictError(message, **fields)
    if isinstance(exc, flight.FlightUnauthenticatedError):
        return ConfigError(message, **fields)  # as UNAUTHENTICATED on the Frontend
    if isinstance(exc, (flight.FlightUnavailableError, flight.FlightTimedOutError)):
        return RuntimeUnavailableError(
            f"{message} (is the object cache running and reachable?)", **fields
        )
    if isinstance(exc, (pa.ArrowKeyError, KeyError)):
        return ObjectNotFoundError(message, **fields)
    if isinstance(exc, (pa.ArrowInvalid, ValueError)):
        if "(the limit)" in text:
            return LimitExceededError(message, **fields)
        return InvalidArgumentError(message, **fields)
    return CacheError(message, **fields)
