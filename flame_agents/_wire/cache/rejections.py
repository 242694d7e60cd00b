"""Structured rejections of the object cache: a code and fields, not a message to parse.

A rejection our server makes on purpose (a :class:`~flame_agents.errors.FlameAgentsError` of
the store or the protocol) travels as an Arrow Flight error whose ``extra_info`` is a small JSON
document: the code, then the error's fields::

    {"code": "version-conflict", "key": "app/s/obj", "expected_version": 3, "current_version": 4}

Codes: ``version-conflict``, ``not-found``, ``invalid-argument``, ``unknown-command``,
``limit-exceeded``, ``internal``. The client raises the class of the code with the fields as
attributes (and the code as ``rejection_code``).

pyarrow attaches ``extra_info`` only to ``FlightError`` classes, whereas Flame answers a missing
key with NOT_FOUND and a bad one with INVALID_ARGUMENT, which flamepy sees as ``KeyError`` and
``ArrowInvalid``. So those two stay as Flame sends them, unless the call carries the header
:data:`REJECTIONS_HEADER` (our client sends it on every call): then they come structured too.
A version conflict (our extension) and an internal failure are Flight errors anyway and always
carry the document.

A server that sends no ``extra_info`` (a Flame cache, or a flame-agents cache from before this
protocol) is understood by :func:`map_flight_error`'s fallback: the Flight or Arrow error class,
and for our older servers' texts, the "version conflict (expected N, current M)" and
"(the limit)" phrases.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from flame_agents._wire.cache.commands import UNKNOWN_COMMAND
from flame_agents._wire.fields import from_wire, to_wire
from flame_agents.errors import (
    CacheError,
    CommitConflictError,
    ConfigError,
    FlameAgentsError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    ObjectNotFoundError,
    RuntimeUnavailableError,
)

__all__ = [
    "CODE_FIELD",
    "INTERNAL",
    "INVALID_ARGUMENT",
    "LIMIT_EXCEEDED",
    "NOT_FOUND",
    "REJECTIONS_HEADER",
    "REJECTIONS_VALUE",
    "UNKNOWN_COMMAND",
    "VERSION_CONFLICT",
    "Rejection",
    "details",
    "flight_error",
    "is_unsupported_command",
    "map_flight_error",
    "read_rejection",
]

REJECTIONS_HEADER = "flame-agents-rejections"
"""Call header by which a client asks for structured rejections of every kind."""
REJECTIONS_VALUE = "json"

VERSION_CONFLICT = "version-conflict"
NOT_FOUND = "not-found"
INVALID_ARGUMENT = "invalid-argument"
LIMIT_EXCEEDED = "limit-exceeded"
INTERNAL = "internal"

CODE_FIELD = "rejection_code"
"""The error field holding a rejection's code, on the server's error and the client's alike
(a server error sets it to choose a code other than its class's)."""

_CLASS_BY_CODE: dict[str, type[FlameAgentsError]] = {
    VERSION_CONFLICT: CommitConflictError,
    NOT_FOUND: ObjectNotFoundError,
    INVALID_ARGUMENT: InvalidArgumentError,
    UNKNOWN_COMMAND: InvalidArgumentError,
    LIMIT_EXCEEDED: LimitExceededError,
    INTERNAL: CacheError,
}


@dataclass(frozen=True)
class Rejection:
    """A structured rejection: its code and the fields of the error it stands for."""

    code: str
    fields: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The ``extra_info`` document."""
        return json.dumps({"code": self.code, **to_wire(self.fields)}).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> Rejection | None:
        """The rejection in ``data``, or None if it is not one of ours (empty, not our JSON)."""
        if not data:
            return None
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("code"), str):
            return None
        return cls(doc["code"], from_wire(doc, skip=frozenset({"code", CODE_FIELD})))


def _code_of(exc: FlameAgentsError) -> str:
    explicit = exc.fields.get(CODE_FIELD)
    if isinstance(explicit, str):
        return explicit
    if isinstance(exc, CommitConflictError):
        return VERSION_CONFLICT
    if isinstance(exc, NotFoundError):
        return NOT_FOUND
    if isinstance(exc, LimitExceededError):
        return LIMIT_EXCEEDED
    if isinstance(exc, InvalidArgumentError):
        return INVALID_ARGUMENT
    return INTERNAL


def flight_error(exc: FlameAgentsError, *, op: str, structured: bool) -> Exception:
    """What the server raises for ``exc`` in ``op`` (``structured``: the call asked for it)."""
    code = _code_of(exc)
    fields = {k: v for k, v in exc.fields.items() if k != CODE_FIELD}
    info = Rejection(code, fields).encode()
    error: Exception
    if code == VERSION_CONFLICT:
        # No Flight class carries ABORTED; the code in extra_info is what clients read.
        error = flight.FlightServerError(exc.message, extra_info=info)
    elif code == INTERNAL:
        error = flight.FlightInternalError(f"{op}: {exc.message}", extra_info=info)
    elif structured:
        error = flight.FlightServerError(exc.message, extra_info=info)
    elif code == NOT_FOUND:
        error = pa.ArrowKeyError(exc.message)  # -> NOT_FOUND, as Flame
    else:
        error = pa.ArrowInvalid(exc.message)  # -> INVALID_ARGUMENT, as Flame
    return error


def read_rejection(exc: BaseException) -> Rejection | None:
    """The structured rejection a Flight error carries, if any."""
    if isinstance(exc, flight.FlightError):
        return Rejection.decode(exc.extra_info)
    return None


def details(exc: BaseException) -> str:
    """The server's message without pyarrow's ``. Detail: ...`` tail (a server traceback)."""
    text = str(exc)
    if isinstance(exc, KeyError) and text.startswith("'") and ". Detail:" not in text:
        text = text.strip("'")
    return text.split(". Detail:", 1)[0].strip()


# Fallback for servers without structured rejections (see the module docstring).
_CONFLICT_TEXT = re.compile(r"version conflict \(expected (\d+), current (\d+)\)")
_LIMIT_TEXT = "(the limit)"


def map_flight_error(exc: BaseException, *, op: str, **fields: Any) -> FlameAgentsError:
    """Translate a Flight/Arrow failure of ``op`` into the most specific error class.

    A structured rejection gives the class of its code and its fields (``fields`` given here
    win). Otherwise: not found -> ObjectNotFoundError, unreachable -> RuntimeUnavailableError,
    unauthenticated -> ConfigError, bad argument -> InvalidArgumentError, anything else ->
    CacheError, with the fallback texts above. Message: ``"<op>: <details>"``.
    """
    if isinstance(exc, FlameAgentsError):
        return exc
    text = details(exc)
    message = f"{op}: {text}"
    rejection = read_rejection(exc)
    if rejection is not None:
        cls = _CLASS_BY_CODE.get(rejection.code, CacheError)
        return cls(message, **{**rejection.fields, CODE_FIELD: rejection.code, **fields})
    return _map_unstructured(exc, text, message, fields)


def _map_unstructured(
    exc: BaseException, text: str, message: str, fields: dict[str, Any]
) -> FlameAgentsError:
    conflict = _CONFLICT_TEXT.search(text)
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
        if _LIMIT_TEXT in text:
            return LimitExceededError(message, **fields)
        return InvalidArgumentError(message, **fields)
    return CacheError(message, **fields)


def is_unsupported_command(error: FlameAgentsError) -> bool:
    """Whether a rejected conditional command means the server lacks the command: it said so
    (``unknown-command``), or it sends no structured rejections at all (a Flame cache)."""
    code = error.fields.get(CODE_FIELD)
    if code is None:
        return isinstance(error, (InvalidArgumentError, CacheError))
    return bool(code == UNKNOWN_COMMAND)
