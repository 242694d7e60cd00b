"""The follow read (our extension): "the patches of object K after version n, waiting up to W ms
until there are some, or until the object appears".

It is the one way a reader learns of new patches without polling, which is what streams of
agent items need (``flame_agents.agent``'s stream objects). It is a Flight *action*,
:data:`FOLLOW_ACTION`, rather than a new do_get ticket: Flame 0.6 answers every action type it
does not know with INVALID_ARGUMENT (flame-wire §4.2), whereas a ticket of a new shape could be
read by it as a key and answered NOT_FOUND, which a client could not tell from "the object does
not exist yet". Our server answers an action it does not know (or a follow it was told not to
serve) with the structured code ``unknown-command``; either way the client decides by the code
(:func:`~flame_agents._wire.cache.rejections.is_unsupported_command`) and falls back to polling
do_get tickets ``<key>:<version>``, which give the same answer without the wait.

Request body: JSON ``{"key": <full key>, "since": <version the caller holds, 0: none>,
"wait_ms": <longest wait>}``.

Reply: one or more result bodies. The first is a JSON header ``{"found": bool, "version": int,
"rows": [[version, kind], ...], "busy": bool}``; then one body per row, its data. The rows are
those of do_get with ticket ``<key>:<since>`` (flame-wire §4.2): a full answer (the base row,
then every patch) or the patches after ``since``; none when the object is still at ``since``
after the wait, or does not exist (``found`` false). ``busy``: the server had too many follows
waiting and answered at once; the caller should pause before asking again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from flame_agents._wire.cache.keys import CacheKey, parse_key
from flame_agents.errors import InvalidArgumentError

__all__ = [
    "FOLLOW_ACTION",
    "MAX_WAIT_MS",
    "FollowReply",
    "FollowRequest",
    "decode_follow",
    "decode_follow_reply",
    "encode_follow",
    "encode_follow_reply",
]

FOLLOW_ACTION = "flame-agents.follow"
"""Flight action type of the follow read."""

MAX_WAIT_MS = 10_000
"""Longest wait a server grants one follow (a longer one is cut to this); callers ask again."""


@dataclass(frozen=True)
class FollowRequest:
    """A parsed follow request."""

    key: CacheKey
    """The object followed (a full key)."""
    since: int
    """The version the caller holds (0: none)."""
    wait_ms: int
    """How long to wait for something new (0: answer at once)."""


@dataclass(frozen=True)
class FollowReply:
    """What a follow answers (and what the polling fallback assembles from a do_get)."""

    found: bool
    """Whether the object exists."""
    version: int
    """The object's version (0 when absent; ``since`` when nothing changed)."""
    rows: list[tuple[int, str, bytes]] = field(default_factory=list)
    """``(version, kind, data)``: a full answer starts with the base row, else patches only."""
    busy: bool = False
    """The server answered without waiting because too many follows wait already."""


def encode_follow(key: str, since: int, wait_ms: int) -> bytes:
    """The action body following ``key`` from version ``since`` for up to ``wait_ms``."""
    return json.dumps({"key": key, "since": since, "wait_ms": wait_ms}).encode()


def _count(doc: dict[str, object], name: str) -> int:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgumentError(
            f"follow: {name!r} must be a non-negative integer, got {value!r}"
        )
    return value


def decode_follow(body: bytes) -> FollowRequest:
    """The follow request in an action body; InvalidArgumentError if it is malformed."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"follow: the body is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("key"), str):
        raise InvalidArgumentError('follow: expected {"key", "since", "wait_ms"}')
    key = parse_key(doc["key"])
    return FollowRequest(key, _count(doc, "since"), _count(doc, "wait_ms"))


def encode_follow_reply(reply: FollowReply) -> list[bytes]:
    """The result bodies of ``reply``: the JSON header, then each row's data."""
    header = {
        "found": reply.found,
        "version": reply.version,
        "rows": [[version, kind] for version, kind, _ in reply.rows],
        "busy": reply.busy,
    }
    return [json.dumps(header).encode(), *(data for _, _, data in reply.rows)]


def decode_follow_reply(bodies: list[bytes]) -> FollowReply:
    """The reply in a follow's result bodies; InvalidArgumentError if they are not one."""
    try:
        header = json.loads(bodies[0])
        rows = header["rows"]
        if len(rows) != len(bodies) - 1:
            raise ValueError(f"{len(rows)} rows announced, {len(bodies) - 1} sent")
        return FollowReply(
            bool(header["found"]),
            int(header["version"]),
            [
                (int(version), str(kind), data)
                for (version, kind), data in zip(rows, bodies[1:], strict=True)
            ],
            bool(header.get("busy", False)),
        )
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"follow: malformed reply: {exc}") from exc
