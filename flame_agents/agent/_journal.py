"""The state journal: the JSON format of an agent session's state object and its pure algebra.

One object per session holds a *base* (a snapshot) followed by *patches*, one per committed
invocation. Everything here is pure (bytes and dicts in, bytes and dicts out) so it can be
property-tested against a plain model; talking to a store lives in ``_state``.

Base (JSON)::

    {"format": "flame-agents/state@1", "schema": <ContextModel.schema_version>, "gen": <int>,
     "chunk": <items per sealed chunk>, "fields": {<scalar field>: <JSON value>},
     "histories": {<history field>: {"sealed": <sealed chunk count>, "tail": [<item>, ...]}},
     "keys": {"sealed": <count>,
              "tail": [[<idempotency key>, <reply JSON>, <request digest>], ...]},
     "turns": {<idempotency key>: <progress of a turn not committed yet>}}   (when any)

Patch (JSON)::

    {"base": <base version>, "prev": <version committed against>, "schema": <int>,
     "key": <idempotency key>, "reply": <reply JSON>, "req": <request digest>,
     "set": {<field>: <new value>}, "append": {<history field>: [<item>, ...]}}

A turn that has not committed yet may write *progress* patches before its commit (step intents
and results, interrupts and their answers: :mod:`flame_agents.agent._progress`)::

    {"base": <base version>, "prev": <version>, "schema": <int>, "turn": <progress record>}

The request digest (:func:`request_digest`) lets a repeated key be checked against the request
it was first used with; it is absent for hook commits and in state written before it existed
(key entries are then ``[<key>, <reply>]`` and the check is skipped).

History items and idempotency keys beyond the tail live in immutable *chunks* of exactly
``chunk`` items, stored as separate objects at :func:`chunk_key`. A compaction moves full chunks
out of the tail, so a base never grows with history length and every item is written at most
twice (once in its patch, once in its chunk): bytes per invocation stay O(change).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flame_agents.agent._progress import (
    TurnProgress,
    apply_progress,
    bound_open_turns,
    turns_from_json,
    turns_to_json,
)
from flame_agents.errors import CacheError

__all__ = [
    "FORMAT",
    "KEYS_LOG",
    "HistoryLog",
    "Journal",
    "Patch",
    "Recorded",
    "chunk_key",
    "decode_base",
    "decode_patch",
    "encode_base",
    "encode_chunk",
    "encode_patch",
    "new_journal",
    "request_digest",
    "seal",
]

FORMAT = "flame-agents/state@1"
#: Name used for the idempotency-key log in chunk keys (not a valid Python field name).
KEYS_LOG = "~keys"
DEFAULT_CHUNK = 256


def _dumps(value: Any) -> bytes:
    # Compact separators: patches are the hot path and their size is what we promise to bound.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def request_digest(request_json: Any) -> str:
    """A short digest of a request's JSON (key order ignored), recorded with its idempotency key."""
    canonical = json.dumps(request_json, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def chunk_key(state_key: str, gen: int, log: str, index: int) -> str:
    """Object key of sealed chunk ``index`` of history ``log`` in generation ``gen``.

    Keys are deterministic so a base only stores a count; the generation changes when a
    migration rewrites history, so a reader holding an older base never sees rewritten items.
    """
    return f"{state_key}.{gen}.{log}.{index}"


@dataclass
class HistoryLog:
    """One append-only log: ``sealed`` full chunks in other objects, then ``tail`` items here."""

    sealed: int = 0
    tail: list[Any] = field(default_factory=list)

    def length(self, chunk: int) -> int:
        """Total number of items (sealed and tail)."""
        return self.sealed * chunk + len(self.tail)

    def to_json(self) -> dict[str, Any]:
        return {"sealed": self.sealed, "tail": self.tail}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HistoryLog:
        return cls(sealed=int(data.get("sealed", 0)), tail=list(data.get("tail", [])))


@dataclass(frozen=True)
class Recorded:
    """What the journal holds for one committed idempotency key."""

    reply: Any
    """The reply JSON returned for the key."""
    request: str | None = None
    """:func:`request_digest` of the request committed under the key (None: not recorded)."""

    @classmethod
    def from_entry(cls, entry: Any) -> tuple[str, Recorded]:
        """``(key, recorded)`` from a key-log entry ``[key, reply]`` or ``[key, reply, digest]``."""
        request = entry[2] if len(entry) > 2 else None
        return str(entry[0]), cls(entry[1], None if request is None else str(request))


@dataclass
class Patch:
    """One committed invocation: the delta it made, its idempotency key and its reply."""

    base: int
    prev: int
    schema: int
    key: str
    reply: Any = None
    set: dict[str, Any] = field(default_factory=dict)
    append: dict[str, list[Any]] = field(default_factory=dict)
    request: str | None = None
    """:func:`request_digest` of the invocation's request (None for hook commits)."""
    progress: dict[str, Any] | None = None
    """A turn progress record instead of a commit (``key`` is then empty, no delta)."""

    def is_empty_delta(self) -> bool:
        return not self.set and not any(self.append.values())

    def key_entry(self) -> list[Any]:
        """The entry this patch adds to the idempotency-key log."""
        if self.request is None:
            return [self.key, self.reply]
        return [self.key, self.reply, self.request]


@dataclass
class Journal:
    """The materialized state at ``version``: what base + patches add up to, as JSON values."""

    version: int
    base_version: int
    schema: int
    gen: int
    chunk: int
    fields: dict[str, Any]
    histories: dict[str, HistoryLog]
    keys: HistoryLog
    #: Patches applied on top of the base (drives compaction).
    patches: int = 0
    #: Idempotency keys in ``keys.tail`` -> what they recorded; sealed keys are in chunks.
    recent: dict[str, Recorded] = field(default_factory=dict)
    #: Turns that recorded progress and have not committed: idempotency key -> progress.
    turns: dict[str, TurnProgress] = field(default_factory=dict)

    def apply(self, patch: Patch, version: int) -> bool:
        """Apply ``patch`` stored at ``version``; returns False when it lost a race.

        A patch committed against a version other than the current one was written by a writer
        whose state had moved (possible only on a store without conditional commits): it is
        ignored, so the first writer wins and history never forks.
        """
        if patch.prev != self.version:
            self.version = version
            return False
        if patch.schema != self.schema:
            raise CacheError(
                f"state patch at version {version} has schema {patch.schema} but its base has "
                f"{self.schema}; the state object is corrupt",
                version=version,
            )
        if patch.progress is not None:
            try:
                apply_progress(self.turns, patch.progress)
            except (KeyError, TypeError, ValueError) as exc:
                raise CacheError(
                    f"turn progress at version {version} is malformed: {exc}", version=version
                ) from exc
            self.version = version
            self.patches += 1
            return True
        for name, value in patch.set.items():
            self.fields[name] = value
        for name, items in patch.append.items():
            self.histories.setdefault(name, HistoryLog()).tail.extend(items)
        self.keys.tail.append(patch.key_entry())
        self.recent[patch.key] = Recorded(patch.reply, patch.request)
        self.turns.pop(patch.key, None)  # committed: its progress is history
        self.version = version
        self.patches += 1
        return True

    def apply_stored(self, patches: Iterable[tuple[int, bytes]]) -> None:
        """Apply stored ``(version, patch bytes)`` pairs in order."""
        for version, data in patches:
            self.apply(decode_patch(data, version=version), version)

    def copy(self) -> Journal:
        """A deep copy (the tails are mutable)."""
        return copy.deepcopy(self)


def new_journal(
    fields: Mapping[str, Any],
    histories: Mapping[str, list[Any]],
    *,
    schema: int,
    chunk: int = DEFAULT_CHUNK,
    gen: int = 0,
) -> Journal:
    """A fresh journal (version 0, not stored yet) holding ``fields`` and whole ``histories``."""
    if chunk < 1:
        raise ValueError("chunk must be >= 1")
    return Journal(
        version=0,
        base_version=0,
        schema=schema,
        gen=gen,
        chunk=chunk,
        fields=dict(fields),
        histories={name: HistoryLog(tail=list(items)) for name, items in histories.items()},
        keys=HistoryLog(),
    )


def encode_base(journal: Journal) -> bytes:
    """The base bytes for ``journal`` (call :func:`seal` first to keep it small)."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "schema": journal.schema,
        "gen": journal.gen,
        "chunk": journal.chunk,
        "fields": journal.fields,
        "histories": {name: log.to_json() for name, log in journal.histories.items()},
        "keys": journal.keys.to_json(),
    }
    if journal.turns:
        doc["turns"] = turns_to_json(journal.turns)
    return _dumps(doc)


def decode_base(data: bytes, *, version: int) -> Journal:
    """Parse base bytes stored at ``version`` into a journal with no patches applied."""
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise CacheError(f"state base at version {version} is not JSON: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CacheError(
            f"object at version {version} is not an agent state object (format "
            f"{raw.get('format') if isinstance(raw, dict) else None!r}, expected {FORMAT!r})",
            version=version,
        )
    keys = HistoryLog.from_json(raw.get("keys", {}))
    return Journal(
        version=version,
        base_version=version,
        schema=int(raw["schema"]),
        gen=int(raw.get("gen", 0)),
        chunk=int(raw["chunk"]),
        fields=dict(raw.get("fields", {})),
        histories={k: HistoryLog.from_json(v) for k, v in raw.get("histories", {}).items()},
        keys=keys,
        recent=_recent(keys),
        turns=turns_from_json(raw.get("turns", {})),
    )


def _recent(keys: HistoryLog) -> dict[str, Recorded]:
    return dict(Recorded.from_entry(entry) for entry in keys.tail)


def encode_patch(patch: Patch) -> bytes:
    """The patch bytes (empty ``set``/``append`` omitted: an idempotent no-op stays tiny)."""
    if patch.progress is not None:
        return _dumps(
            {"base": patch.base, "prev": patch.prev, "schema": patch.schema, "turn": patch.progress}
        )
    body: dict[str, Any] = {
        "base": patch.base,
        "prev": patch.prev,
        "schema": patch.schema,
        "key": patch.key,
        "reply": patch.reply,
    }
    if patch.request is not None:
        body["req"] = patch.request
    if patch.set:
        body["set"] = patch.set
    appended = {k: v for k, v in patch.append.items() if v}
    if appended:
        body["append"] = appended
    return _dumps(body)


def decode_patch(data: bytes, *, version: int) -> Patch:
    """Parse patch bytes stored at ``version``."""
    try:
        raw = json.loads(data)
        if "turn" in raw:
            return Patch(
                base=int(raw["base"]),
                prev=int(raw["prev"]),
                schema=int(raw["schema"]),
                key="",
                progress=dict(raw["turn"]),
            )
        return Patch(
            base=int(raw["base"]),
            prev=int(raw["prev"]),
            schema=int(raw["schema"]),
            key=str(raw["key"]),
            reply=raw.get("reply"),
            set=dict(raw.get("set", {})),
            append={k: list(v) for k, v in raw.get("append", {}).items()},
            request=None if raw.get("req") is None else str(raw["req"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"state patch at version {version} is malformed: {exc}") from exc


def encode_chunk(items: list[Any]) -> bytes:
    """Bytes of one sealed chunk (a JSON array)."""
    return _dumps(items)


def decode_chunk(data: bytes, *, key: str, expected: int) -> list[Any]:
    """Parse a sealed chunk and check it holds ``expected`` items."""
    try:
        items = json.loads(data)
    except ValueError as exc:
        raise CacheError(f"history chunk {key} is not JSON: {exc}", key=key) from exc
    if not isinstance(items, list) or len(items) != expected:
        raise CacheError(f"history chunk {key} is malformed (expected {expected} items)", key=key)
    return items


def seal(journal: Journal) -> list[tuple[str, int, bytes]]:
    """Move every full chunk out of the tails; returns ``(log, index, bytes)`` of each new chunk.

    Mutates ``journal`` into the shape of the next base: every tail then holds fewer than
    ``chunk`` items, whatever the history's length. The chunks go to :func:`chunk_key` of the
    state key. A compaction stores them before the base that counts them; a crash in between
    leaves an unreferenced chunk that the next compaction rewrites with the same bytes (its
    content is fixed by the linear, append-only history).
    """
    chunks: list[tuple[str, int, bytes]] = []
    logs: Iterable[tuple[str, HistoryLog]] = [*journal.histories.items(), (KEYS_LOG, journal.keys)]
    for name, log in logs:
        while len(log.tail) >= journal.chunk:
            items, log.tail = log.tail[: journal.chunk], log.tail[journal.chunk :]
            chunks.append((name, log.sealed, encode_chunk(items)))
            log.sealed += 1
    journal.recent = _recent(journal.keys)
    journal.patches = 0
    bound_open_turns(journal.turns)
    return chunks


ChunkReader = Callable[[str, int], list[Any]]
"""``read(log_name, index) -> items`` of a sealed chunk of the journal's current generation."""


def full_log(journal: Journal, name: str, read: ChunkReader) -> list[Any]:
    """Every item of history ``name`` (sealed chunks read through ``read``, then the tail)."""
    log = journal.keys if name == KEYS_LOG else journal.histories.get(name, HistoryLog())
    items: list[Any] = []
    for index in range(log.sealed):
        items.extend(read(name, index))
    items.extend(log.tail)
    return items
