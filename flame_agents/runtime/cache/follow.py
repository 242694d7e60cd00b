"""The follow read of the cache server: answer when a followed object changes, not by polling.

:class:`Follows` keeps, for each key somebody waits on, a change counter and a condition. The
server calls :meth:`Follows.changed` after every write it acknowledged (and
:meth:`Follows.deleted` after a DELETE); a follow reads the object as a do_get would, and if
there is nothing new waits on the key's condition until the counter moves, the wait is over,
or the server stops. The counter is read *before* the object is, so a write landing between
the read and the wait is never slept through.

A waiting follow holds one of the Flight server's threads (the wait itself releases the GIL),
so at most :data:`MAX_WAITERS` wait at once; past that a follow answers at once with ``busy``
and the client pauses before asking again. Keys nobody waits on cost one dict lookup per write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flame_agents._wire.cache.follow import MAX_WAIT_MS, FollowReply, FollowRequest
from flame_agents._wire.cache.keys import CacheKey
from flame_agents.errors import InvalidArgumentError, ObjectNotFoundError
from flame_agents.runtime.cache.object_store import NativeReply, NotModified, ReadReply

__all__ = ["MAX_WAITERS", "Follows"]

MAX_WAITERS = 256
"""Follows allowed to wait at once (each holds a server thread while it waits)."""


@dataclass
class _Watch:
    key: CacheKey
    cond: threading.Condition
    changes: int = 0
    waiters: int = 0


class Follows:
    """The waiting follows of one cache server, woken by the writes it acknowledges."""

    def __init__(self, *, max_waiters: int = MAX_WAITERS) -> None:
        self._lock = threading.Lock()
        self._watches: dict[str, _Watch] = {}
        self._waiting = 0
        self._max_waiters = max_waiters
        self._closed = False

    def changed(self, key: str) -> None:
        """Wake the follows of ``key`` (called after a write to it was acknowledged)."""
        with self._lock:
            watch = self._watches.get(key)
            if watch is not None:
                watch.changes += 1
                watch.cond.notify_all()

    def deleted(self, pattern: CacheKey) -> None:
        """Wake the follows of every key ``pattern`` (a DELETE's key, prefix or pattern) names."""
        with self._lock:
            for watch in self._watches.values():
                if pattern.matches(watch.key):
                    watch.changes += 1
                    watch.cond.notify_all()

    def close(self) -> None:
        """Answer every waiting follow now (the server is stopping) and wait no more."""
        with self._lock:
            self._closed = True
            for watch in self._watches.values():
                watch.cond.notify_all()

    def follow(
        self, request: FollowRequest, read: Callable[[CacheKey, int], ReadReply]
    ) -> FollowReply:
        """Answer ``request``: ``read(key, since)`` at once, then again after each change of the
        key until it has something new (or the object the caller held is gone), or ``wait_ms``
        (at most :data:`MAX_WAIT_MS`) passed."""
        key, skey = request.key, str(request.key)
        deadline = time.monotonic() + min(request.wait_ms, MAX_WAIT_MS) / 1000
        with self._lock:
            busy = self._closed or self._waiting >= self._max_waiters
            if busy:
                watch = None
                seen = 0
            else:
                watch = self._watches.get(skey)
                if watch is None:
                    watch = self._watches[skey] = _Watch(key, threading.Condition(self._lock))
                watch.waiters += 1
                self._waiting += 1
                seen = watch.changes
        try:
            while True:
                reply = _answer(key, request.since, read)
                remaining = deadline - time.monotonic()
                gone = request.since > 0 and not reply.found  # the caller's object went
                if watch is None or reply.rows or gone or remaining <= 0:
                    return FollowReply(reply.found, reply.version, reply.rows, busy=busy)
                with self._lock:
                    while watch.changes == seen and not self._closed and remaining > 0:
                        watch.cond.wait(remaining)
                        remaining = deadline - time.monotonic()
                    if watch.changes == seen:  # the wait is over (or the server stops)
                        return FollowReply(reply.found, reply.version, reply.rows, busy=busy)
                    seen = watch.changes
        finally:
            if watch is not None:
                with self._lock:
                    watch.waiters -= 1
                    self._waiting -= 1
                    if watch.waiters == 0:
                        del self._watches[skey]


def _answer(key: CacheKey, since: int, read: Callable[[CacheKey, int], ReadReply]) -> FollowReply:
    """What a do_get of ``key:since`` says, as a follow reply (absent: ``found`` false)."""
    try:
        reply = read(key, since)
    except ObjectNotFoundError:
        return FollowReply(False, 0)
    if isinstance(reply, NativeReply):
        raise InvalidArgumentError(
            f"follow: {key} is a native Arrow table; only opaque objects can be followed",
            key=str(key),
        )
    if isinstance(reply, NotModified):
        return FollowReply(True, reply.version)
    return FollowReply(True, reply.version, list(reply.rows))
