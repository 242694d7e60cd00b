"""The instance side of a turn's stream: :class:`StreamWriter` appends emitted items to the
turn's stream object, and :class:`TurnStreams` opens one per streamed turn of a session and
keeps only the recent ones.

``emit(item)`` never waits on the network: it encodes the item (so a later change of the object
does not change what was emitted) and appends it to a buffer that one background thread writes,
one write in flight at a time, everything buffered meanwhile in the next write. So the first
item leaves at once and a fast emitter gets large batches. Writes are conditional on the
segment's version, so a second writer of the same stream (a stale instance) is refused instead
of interleaving items.

A re-run of a turn (its instance killed, a retry with the same idempotency key) opens the
stream its earlier run left and skips as many of its first emits as the stream already holds:
replay assumes the handler emits the same items in the same order up to where it stopped, as
steps replay their recorded results. A stream that ended ``failed`` or ``cancelled`` (or
``reply``) starts afresh; one that ended ``interrupted`` goes on after a resume mark.

A stream that cannot be written (the cache down, refused writes) is logged and dropped: the
turn's outcome never depends on its stream, and a committed turn is never repeated for it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from flame_agents._logging import get_logger
from flame_agents.agent._stream_format import (
    CANCELLED,
    FAILED,
    FINAL,
    INTERRUPTED,
    SEGMENT_PATCHES,
    base_record,
    encode_item,
    patch_record,
    registry_key,
    scan_stream,
    segment_key,
    stream_key,
)
from flame_agents.cache import ObjectRef, delete_objects, fetch_raw, patch_raw, put_raw, update_raw
from flame_agents.errors import (
    Cancelled,
    CommitConflictError,
    FlameAgentsError,
    Interrupted,
    InvalidStateError,
    ObjectNotFoundError,
    RetryableError,
)

__all__ = ["KEEP_STREAMS", "StreamWriter", "TurnStreams", "stream_outcome"]

KEEP_STREAMS = 16
"""Streams of a session an instance keeps; opening a newer one deletes the oldest beyond."""

MAX_BATCH_BYTES = 1024 * 1024
"""A write carries at most this many bytes of items (and at least one item)."""
MAX_BUFFER_BYTES = 64 * 1024 * 1024
"""Encoded items waiting to be written before ``emit`` waits for the writer (back pressure)."""
CLOSE_TIMEOUT = 30.0
"""Seconds ``close`` waits for the last writes before it gives the stream up."""
_WRITE_ATTEMPTS = 3

_log = get_logger(__name__)


def stream_outcome(exc: BaseException, *, handler_error: BaseException | None) -> str | None:
    """The end marker of a turn that raised ``exc``: None (no end marker) when the agent layer
    asks for a retry with the same key, so the stream goes on in the turn's next run."""
    if isinstance(exc, Interrupted):
        return INTERRUPTED
    if isinstance(exc, Cancelled):
        return CANCELLED
    if exc is not handler_error and getattr(exc, "retryable", False):
        return None
    return FAILED


class _NoStream(FlameAgentsError):
    """The turn has no stream to go on in (a writer opened ``if_exists``)."""


class StreamWriter:
    """Appends one turn's items to its stream object (see the module docstring).

    ``on_created(prefix)`` is called (on the writer's thread) when the writer created the stream
    afresh, for retention. ``if_exists``: write only to a stream an earlier run left (a resumed
    turn that was not streamed writes nothing).
    """

    def __init__(
        self,
        endpoint: str,
        prefix: str,
        *,
        on_created: Callable[[str], None] | None = None,
        if_exists: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.prefix = prefix
        self._on_created = on_created
        self._if_exists = if_exists
        self._cond = threading.Condition()
        # Encoded items, and counts of items a replayed step emitted in an earlier run.
        self._buffer: list[bytes | int] = []
        self._buffered = 0
        self._closing = False
        self._outcome: str | None = None
        self._thread: threading.Thread | None = None
        self._failed: FlameAgentsError | None = None
        self._replayed = False
        # Where the stream stands (touched by the writer thread only, once it runs).
        self._opened = False
        self._run = uuid.uuid4().hex[:16]
        self._seg = 0
        self._version = 0
        self._patches = 0
        self._skip = 0
        self._resume = False
        self.emitted = 0
        """Items emitted so far (skipped ones included)."""
        self.written = 0
        """Items this writer wrote to the stream."""
        self.skipped = 0
        """Emits of a re-run that the stream held already, not written again."""

    # -- the turn's side --------------------------------------------------------------------

    def emit(self, item: Any) -> None:
        """Queue ``item`` (a pydantic model or a JSON value) for the stream; returns at once
        unless :data:`MAX_BUFFER_BYTES` of items wait to be written."""
        data = encode_item(item)
        with self._cond:
            if self._closing:
                raise InvalidStateError("emit() after the turn's stream was closed")
            self.emitted += 1
            if self._failed is not None:
                return
            while self._buffered > MAX_BUFFER_BYTES and self._failed is None:
                self._cond.wait()
            self._buffer.append(data)
            self._buffered += len(data)
            if self._thread is None:
                self._start()
            elif len(self._buffer) == 1:
                self._cond.notify_all()

    def replayed(self, count: int) -> None:
        """``count`` items were emitted inside a step that now replays from the journal (its
        function does not run again): an earlier run streamed them, so they count among the
        items of the stream this run skips, in their place in the emit order."""
        if count <= 0:
            return
        with self._cond:
            if self._closing or self._failed is not None:
                return
            self._buffer.append(count)
            if self._thread is None:
                self._start()
            elif len(self._buffer) == 1:
                self._cond.notify_all()

    def close(self, outcome: str | None, *, replayed: bool = False) -> bool:
        """Write what is buffered, then the end marker ``outcome`` (None: no end marker, the
        turn will run again); wait for it. Returns whether the stream holds everything; a
        failure is logged, never raised.

        ``replayed``: the turn was not run (its reply was recorded): a stream that ended stays
        as it is, one that did not gets its end marker, a missing one is created with it.
        """
        with self._cond:
            self._closing = True
            self._outcome = outcome
            self._replayed = replayed
            if self._thread is None:
                if outcome is None and not self._buffer:
                    return self._failed is None or isinstance(self._failed, _NoStream)
                self._start()
            self._cond.notify_all()
            thread = self._thread
        assert thread is not None
        thread.join(CLOSE_TIMEOUT)
        if thread.is_alive():
            _log.warning("stream_close_timed_out", prefix=self.prefix, seconds=CLOSE_TIMEOUT)
            return False
        return self._failed is None or isinstance(self._failed, _NoStream)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run_writes, name="turn-stream", daemon=True)
        self._thread.start()

    # -- the writer thread ------------------------------------------------------------------

    def _next_batch(self) -> tuple[list[bytes | int], str | None, bool]:
        """Wait for items or the close; take up to MAX_BATCH_BYTES of them."""
        with self._cond:
            while not self._buffer and not self._closing:
                self._cond.wait()
            taken, size = 0, 0
            for data in self._buffer:
                length = 0 if isinstance(data, int) else len(data)
                if taken and size + length > MAX_BATCH_BYTES:
                    break
                taken, size = taken + 1, size + length
            batch = self._buffer[:taken]
            del self._buffer[:taken]
            self._buffered -= size
            last = self._closing and not self._buffer
            self._cond.notify_all()  # an emit may wait for room
            return batch, (self._outcome if last else None), last

    def _run_writes(self) -> None:
        try:
            while True:
                batch, end, last = self._next_batch()
                if batch or end:
                    self._write(batch, end)
                if last:
                    return
        except _NoStream:
            with self._cond:  # nobody streams this turn: drop its items from now on
                self._failed = _NoStream("no stream")
                self._buffer.clear()
                self._buffered = 0
                self._cond.notify_all()
        except FlameAgentsError as exc:
            _log.warning("stream_write_failed", prefix=self.prefix, error=str(exc))
            with self._cond:
                self._failed = exc
                self._buffer.clear()
                self._buffered = 0
                self._cond.notify_all()

    def _ref(self, seg: int) -> ObjectRef:
        return ObjectRef(self.endpoint, segment_key(self.prefix, seg), 0)

    def _write(self, batch: list[bytes | int], end: str | None) -> None:
        if not self._opened:
            # A stream created now holds none of an earlier run's items: counts drop out.
            rest = self._open([data for data in batch if not isinstance(data, int)], end)
            if rest is None:
                return  # the create carried the batch
        items: list[bytes] = []
        for data in batch:
            if isinstance(data, int):  # a replayed step's items, in the stream already
                held = min(data, self._skip)
                self._skip -= held
                self.skipped += held
            elif self._skip:
                self._skip -= 1
                self.skipped += 1
            else:
                items.append(data)
        if not items and not end:
            return
        if self._patches >= SEGMENT_PATCHES:
            self._next_segment(items, end)
            return
        data = patch_record(items, end=end, resume=self._resume)
        self._version = self._patch(self._seg, data)
        self._patches += 1
        self._resume = False
        self.written += len(items)

    def _open(self, items: list[bytes], end: str | None) -> list[bytes] | None:
        """Create the stream with the first batch (returns None), or learn where an earlier
        run left it (returns the batch, still to write)."""
        for _ in range(2):
            if self._if_exists:
                if not scan_stream(self.endpoint, self.prefix).found:
                    raise _NoStream(f"turn stream {self.prefix} does not exist")
                self._if_exists = False
            try:
                self._version = self._create(0, base_record(self._run, 0, 0, items, end=end))
            except CommitConflictError:
                pass  # an earlier run of this turn left a stream
            else:
                self._opened = True
                self.written += len(items)
                if self._on_created is not None:
                    self._on_created(self.prefix)
                return None
            scan = scan_stream(self.endpoint, self.prefix)
            if scan.found and scan.end in FINAL and self._replayed:
                self._opened = True
                return None  # the recorded turn's stream, complete: leave it as it is
            if scan.found and scan.end in FINAL:
                _log.info("stream_restarted", prefix=self.prefix, ended=scan.end)
                delete_objects(self.prefix, endpoint=self.endpoint)
                continue
            if not scan.found:
                continue  # deleted between the create and the scan: create again
            self._opened = True
            self._run = scan.run
            self._seg, self._version, self._patches = scan.seg, scan.version, scan.patches
            self._skip = scan.items
            self._resume = scan.end == INTERRUPTED
            _log.info("stream_reopened", prefix=self.prefix, items=scan.items)
            return items
        raise CommitConflictError(
            f"stream {self.prefix}: another writer keeps creating it", key=self.prefix
        )

    def _next_segment(self, items: list[bytes], end: str | None) -> None:
        """Start segment n+1 with ``items``, then point segment n at it."""
        nxt = self._seg + 1
        first = self.written + self.skipped
        data = base_record(self._run, nxt, first, items, end=end)
        try:
            version = self._create(nxt, data)
        except CommitConflictError:
            # Left by a run that died before linking it: nobody can have read it.
            version = self._attempt(lambda: update_raw(self._ref(nxt), data).version)
        self._patch(self._seg, patch_record([], nxt=nxt, resume=self._resume))
        self._seg, self._version, self._patches, self._resume = nxt, version, 0, False
        self.written += len(items)

    def _create(self, seg: int, data: bytes) -> int:
        """Create segment ``seg`` iff it does not exist (CommitConflictError otherwise)."""

        def create() -> int:
            return int(update_raw(self._ref(seg), data, expected_version=0).version)

        return self._attempt(create, expected=0, seg=seg)

    def _patch(self, seg: int, data: bytes) -> int:
        expected = self._version

        def append() -> int:
            return int(patch_raw(self._ref(seg), data, expected_version=expected).version)

        return self._attempt(append, expected=expected, seg=seg)

    def _attempt(
        self, write: Callable[[], int], *, expected: int | None = None, seg: int = 0
    ) -> int:
        """``write()``, retried on transient failures. A conflict after a failed attempt whose
        outcome is unknown is that attempt having landed when the segment is one past it."""
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                return write()
            except CommitConflictError as exc:
                current = exc.fields.get("current_version")
                if attempt > 1 and expected is not None and current == expected + 1:
                    return expected + 1
                raise
            except RetryableError:
                if attempt == _WRITE_ATTEMPTS:
                    raise
                time.sleep(0.05 * 4 ** (attempt - 1))
        raise AssertionError("unreachable")


class TurnStreams:
    """The streams of one session's turns, on the instance: opens a :class:`StreamWriter` per
    streamed turn and keeps the :data:`KEEP_STREAMS` most recent streams of the session (a list
    of them lives beside the state object; opening a newer one deletes the oldest beyond)."""

    def __init__(self, endpoint: str, state_key: str, *, keep: int = KEEP_STREAMS) -> None:
        self.endpoint = endpoint
        self.state_key = state_key
        self.keep = keep
        self._lock = threading.Lock()
        self._recent: list[str] | None = None

    def writer(self, idempotency_key: str, *, if_exists: bool = False) -> StreamWriter:
        """A writer of the stream of turn ``idempotency_key`` (``if_exists``: only if the turn
        has a stream already)."""
        prefix = stream_key(self.state_key, idempotency_key)
        return StreamWriter(self.endpoint, prefix, on_created=self._created, if_exists=if_exists)

    def _created(self, prefix: str) -> None:
        """Record ``prefix`` among the recent streams; delete those past :attr:`keep`."""
        key = registry_key(self.state_key)
        try:
            with self._lock:
                if self._recent is None:
                    self._recent = self._read(key)
                recent = [p for p in self._recent if p != prefix] + [prefix]
                victims, self._recent = recent[: -self.keep], recent[-self.keep :]
                put_raw(key, json.dumps(self._recent).encode(), endpoint=self.endpoint)
            for victim in victims:
                delete_objects(victim, endpoint=self.endpoint)
        except FlameAgentsError as exc:
            _log.warning("stream_retention_failed", state_key=self.state_key, error=str(exc))

    def _read(self, key: str) -> list[str]:
        try:
            raw = fetch_raw(ObjectRef(self.endpoint, key, 0))
        except ObjectNotFoundError:
            return []
        try:
            value = json.loads(raw.base or b"[]")
        except ValueError:
            return []
        return [p for p in value if isinstance(p, str)] if isinstance(value, list) else []
