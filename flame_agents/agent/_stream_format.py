"""The stream object of an agent turn: where it lives and what its records say.

A turn's emitted items live in the object cache, in one or more *segments* under the prefix
:func:`stream_key` derives from the session's state key and the turn's idempotency key::

    <app>/<session>~stream~<digest>/0, /1, ...

so one DELETE of the prefix removes a whole stream, and the keys obey the cache's key grammar
whatever the idempotency key holds. Each segment is an opaque object whose base and patches are
*records*, JSON objects with these optional members, read in this order:

- ``"run"``, ``"seg"``, ``"first"`` (a segment's base only): the writer that created the stream,
  the segment's number and the stream index of its first item;
- ``"resume": true``: the turn runs again after it ended ``interrupted``; the stream goes on;
- ``"items": [[type, value], ...]``: items in emit order, ``type`` the ``module:qualname`` of a
  pydantic model (``value`` its JSON), or null for a plain JSON value;
- ``"end": outcome``: the turn ended (:data:`OUTCOMES`);
- ``"next": n``: the stream goes on in segment ``n`` (a segment holds at most
  :data:`SEGMENT_PATCHES` patches, below Flame's 1000 per object).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from flame_agents._wire.cache.keys import MAX_COMPONENT_BYTES, check_prefix, parse_key
from flame_agents.agent._typenames import type_name
from flame_agents.cache import ObjectRef, follow_raw
from flame_agents.errors import CacheError, InvalidArgumentError

__all__ = [
    "CANCELLED",
    "FAILED",
    "FINAL",
    "INTERRUPTED",
    "OUTCOMES",
    "REPLY",
    "SEGMENT_PATCHES",
    "Record",
    "StreamScan",
    "base_record",
    "decode_record",
    "encode_item",
    "patch_record",
    "registry_key",
    "scan_stream",
    "segment_key",
    "stream_key",
]

REPLY = "reply"
FAILED = "failed"
INTERRUPTED = "interrupted"
CANCELLED = "cancelled"
OUTCOMES = (REPLY, FAILED, INTERRUPTED, CANCELLED)
"""How a turn ended, as its stream's end marker says."""
FINAL = frozenset({REPLY, FAILED, CANCELLED})
"""Outcomes after which a run of the same turn starts its stream afresh (``interrupted`` is a
pause: the resumed turn goes on in the same stream)."""

SEGMENT_PATCHES = 500
"""Patches a segment takes before the stream moves on to the next one."""

_MARK = "~stream~"


def stream_key(state_key: str, idempotency_key: str) -> str:
    """The prefix ``<app>/<session>~stream~<digest>`` of a turn's stream segments."""
    key = parse_key(state_key)
    digest = hashlib.sha256(f"{state_key}\0{idempotency_key}".encode()).hexdigest()[:32]
    session = f"{key.session}{_MARK}{digest}"
    if len(session.encode()) > MAX_COMPONENT_BYTES:
        session = f"{_MARK}{digest}"  # a session id near the limit: the digest alone is unique
    return check_prefix(f"{key.app}/{session}")


def segment_key(prefix: str, seg: int) -> str:
    """The key of segment ``seg`` of the stream under ``prefix``."""
    return f"{prefix}/{seg}"


def registry_key(state_key: str) -> str:
    """The key of the list of a session's recent streams (kept beside its state object)."""
    return f"{state_key}.streams"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


_type_names: dict[type, bytes] = {}


def encode_item(item: Any) -> bytes:
    """``[type, value]`` for one emitted item (a pydantic model or a JSON-able value)."""
    if isinstance(item, BaseModel):
        cls = type(item)
        name = _type_names.get(cls)
        if name is None:
            name = _type_names[cls] = _dumps(type_name(cls))
        return b"[" + name + b"," + item.model_dump_json().encode() + b"]"
    try:
        return b"[null," + _dumps(item) + b"]"
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"an emitted item must be a pydantic model or a JSON value, got "
            f"{type(item).__name__}: {exc}"
        ) from exc


def _record(head: dict[str, Any], items: list[bytes], tail: dict[str, Any]) -> bytes:
    parts = [_dumps(head)[:-1]] if head else [b"{"]
    if items:
        parts.append((b"," if head else b"") + b'"items":[' + b",".join(items) + b"]")
    if tail:
        sep = b"," if head or items else b""
        parts.append(sep + _dumps(tail)[1:-1])
    return b"".join(parts) + b"}"


def base_record(
    run: str, seg: int, first: int, items: list[bytes], *, end: str | None = None
) -> bytes:
    """A segment's base: its header, then ``items`` and the end marker if any."""
    return _record({"run": run, "seg": seg, "first": first}, items, {"end": end} if end else {})


def patch_record(
    items: list[bytes], *, end: str | None = None, nxt: int | None = None, resume: bool = False
) -> bytes:
    """A patch: the resume mark, ``items``, the end marker, the next segment (each if given)."""
    tail: dict[str, Any] = {}
    if end:
        tail["end"] = end
    if nxt is not None:
        tail["next"] = nxt
    return _record({"resume": True} if resume else {}, items, tail)


@dataclass(frozen=True)
class Record:
    """One decoded record."""

    run: str | None = None
    first: int | None = None
    resume: bool = False
    items: tuple[tuple[str | None, Any], ...] = ()
    end: str | None = None
    next: int | None = None


def decode_record(data: bytes, *, key: str) -> Record:
    """The record in ``data`` (a segment's base or patch); CacheError if it is not one."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise TypeError("not an object")
        items = tuple((t if isinstance(t, str) else None, v) for t, v in doc.get("items", ()))
        end = doc.get("end")
        if end is not None and end not in OUTCOMES:
            raise ValueError(f"unknown outcome {end!r}")
        nxt = doc.get("next")
        first = doc.get("first")
        return Record(
            run=str(doc["run"]) if "run" in doc else None,
            first=int(first) if first is not None else None,
            resume=doc.get("resume") is True,
            items=items,
            end=end,
            next=int(nxt) if nxt is not None else None,
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise CacheError(f"stream object {key} holds a damaged record: {exc}", key=key) from exc


@dataclass(frozen=True)
class StreamScan:
    """What a stream holds, read from its first segment to its last."""

    found: bool
    """Whether the stream exists."""
    run: str = ""
    """The writer run that created it."""
    items: int = 0
    """Items in the stream."""
    seg: int = 0
    """Its last segment."""
    version: int = 0
    """The version of the last segment."""
    patches: int = 0
    """Patches in the last segment."""
    end: str | None = None
    """The outcome of its end marker, when the last record ends the turn."""


def scan_stream(endpoint: str, prefix: str) -> StreamScan:
    """Read the stream under ``prefix`` whole (a re-run of a turn learns where it stopped)."""
    seg, items, run = 0, 0, ""
    while True:
        key = segment_key(prefix, seg)
        reply = follow_raw(ObjectRef(endpoint, key, 0))
        if not reply.found:
            if seg == 0:
                return StreamScan(False)
            raise CacheError(f"stream {prefix}: segment {seg} is missing", key=key)
        end: str | None = None
        nxt: int | None = None
        for _, _, data in reply.rows:
            record = decode_record(data, key=key)
            if record.run is not None and seg == 0:
                run = record.run
            if record.resume:
                end = None
            items += len(record.items)
            end = record.end or end
            nxt = record.next if record.next is not None else nxt
        if nxt is None:
            return StreamScan(True, run, items, seg, reply.version, len(reply.rows) - 1, end)
        seg = nxt
