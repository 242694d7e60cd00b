"""Following an object: its patches after a version, as soon as they are written.

Our cache serves the follow read (:mod:`flame_agents._wire.cache.follow`): one call that waits
on the server until the object has something new. A cache that does not know it (Flame 0.6, an
older flame-agents cache, ours with the follow turned off) rejects it, recognised by the
rejection's code; the endpoint is then remembered and followed by polling do_get tickets
``<key>:<version>`` with a backoff from :data:`POLL_FIRST` to :data:`POLL_MAX`: the same
answers, later (up to ``POLL_MAX`` after a write) and at the cost of a read per poll.
"""

from __future__ import annotations

import time

import pyarrow.flight as flight

from flame_agents._logging import get_logger
from flame_agents._wire.cache.follow import (
    FOLLOW_ACTION,
    MAX_WAIT_MS,
    FollowReply,
    decode_follow_reply,
    encode_follow,
)
from flame_agents._wire.cache.keys import check_key
from flame_agents._wire.cache.rejections import is_unsupported_command
from flame_agents._wire.cache.schemas import ROW_BASE, ROW_PATCH
from flame_agents.cache import _transport
from flame_agents.cache._ref import ObjectRef
from flame_agents.errors import CacheError, InvalidArgumentError, ObjectNotFoundError

__all__ = ["POLL_FIRST", "POLL_MAX", "FollowReply", "follow_raw"]

POLL_FIRST = 0.005
"""First pause (seconds) between two polls of a cache without the follow read."""
POLL_MAX = 0.25
"""Longest pause between two polls; a poll that finds something starts again at POLL_FIRST."""

_BUSY_PAUSE = 0.05
"""Pause after a server answered ``busy`` (too many follows waiting) with nothing new."""
_CALL_SLACK = 30.0
"""Seconds a follow call may take beyond its wait before it counts as a failure."""

_log = get_logger(__name__)


def follow_raw(ref: ObjectRef, *, since_version: int = 0, wait: float = 0.0) -> FollowReply:
    """The patches of ``ref.key`` after ``since_version`` (0: the whole object, base first),
    waiting up to ``wait`` seconds for there to be some, or for the object to appear.

    Returns a :class:`FollowReply`: ``found`` false while the object does not exist; ``rows``
    empty when nothing changed within the wait. A full answer (``since_version`` 0, or a version
    the object no longer continues from, e.g. after it was replaced) starts with its base row.
    """
    check_key(ref.key)
    if not isinstance(since_version, int) or since_version < 0:
        raise InvalidArgumentError(
            f"since_version must be a non-negative int, got {since_version!r}"
        )
    wait = max(0.0, float(wait))
    endpoint, key = ref.endpoint, ref.key
    if endpoint not in _transport.unfollowable_endpoints:
        wait_ms = min(int(wait * 1000), MAX_WAIT_MS)
        act = flight.Action(FOLLOW_ACTION, encode_follow(key, since_version, wait_ms))
        try:
            bodies = _transport.action(
                endpoint, act, op="follow_raw", key=key, timeout=wait_ms / 1000 + _CALL_SLACK
            )
        except (InvalidArgumentError, CacheError) as exc:
            if not is_unsupported_command(exc):
                raise
            _log.info("cache_follow_unsupported", endpoint=endpoint, error=str(exc))
            _transport.unfollowable_endpoints.add(endpoint)
        else:
            reply = decode_follow_reply(bodies)
            if reply.busy and not reply.rows:
                time.sleep(min(wait, _BUSY_PAUSE))
            return reply
    return _poll(endpoint, key, since_version, wait)


def _poll(endpoint: str, key: str, since: int, wait: float) -> FollowReply:
    """The follow read of a cache without it: do_get with a backoff until something is new."""
    deadline = time.monotonic() + wait
    pause = POLL_FIRST
    while True:
        reply = _read(endpoint, key, since)
        remaining = deadline - time.monotonic()
        if reply.rows or (since and not reply.found) or remaining <= 0:
            return reply
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, POLL_MAX)


def _read(endpoint: str, key: str, since: int) -> FollowReply:
    try:
        got = _transport.get(endpoint, key, since, aliases=False)
    except ObjectNotFoundError:
        return FollowReply(False, 0)
    if got.mode == "native":
        raise CacheError(f"follow_raw: {key} is a native Arrow table", key=key)
    if got.mode == "not_modified":
        return FollowReply(True, since)
    rows = [(version, ROW_PATCH, data) for version, data in got.patches]
    if got.mode == "full":
        rows.insert(0, (got.base_version, ROW_BASE, got.base or b""))
    return FollowReply(True, got.version, rows)
