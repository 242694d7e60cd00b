"""Per-object journal of the object cache: one append per write, torn tails detected.

An object's journal (``<app>/<session>/<id>.journal``, beside its base file) holds the writes
made since the base file was last rewritten: patches, and replacements of a small opaque base.
A write is one record appended with a single ``pwritev`` call, so a write costs one small append
instead of a new file and a rename (new files and renames are the expensive metadata operations
of a file system). Each record carries its length and a CRC32 over the rest of the record:

    crc32 u32 | kind u8 (0 = base, 1 = patch) | version u64 | length u64 | data

A write that a kill interrupted (never acknowledged) can leave a torn record at the end of the
file; it is detected by its length or checksum and dropped, and the file is truncated back when
the store opens. A bad record followed by good data is damage, reported naming the file.

:class:`GroupSync` is the group commit of the ``--fsync`` mode: callers that need the same file
or directory flushed at the same time share one ``fsync``.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flame_agents.errors import CacheError

__all__ = [
    "JOURNAL_MAGIC",
    "KIND_BASE",
    "KIND_PATCH",
    "GroupSync",
    "Journal",
    "JournalRecord",
    "append_records",
    "encode_record",
    "read_journal",
]

JOURNAL_MAGIC = b"FLMJRNL1"
"""First bytes of every journal file (written with its first record)."""

KIND_BASE = 0
KIND_PATCH = 1
_HEADER = struct.Struct("<IBQQ")  # crc32, kind, version, length
_CRC_FROM = 4  # the checksum covers everything after itself


@dataclass(frozen=True)
class JournalRecord:
    """One record: a base replacement or a patch, its version, data and size on disk."""

    kind: int
    version: int
    data: bytes
    disk_size: int


@dataclass
class Journal:
    """What a journal file holds up to its last intact record."""

    records: list[JournalRecord] = field(default_factory=list)
    good_size: int = 0
    """Bytes up to the end of the last intact record (0 if the file holds none)."""
    torn_bytes: int = 0
    """Bytes after ``good_size``: an interrupted, unacknowledged write."""


def encode_record(kind: int, version: int, data: bytes) -> list[bytes]:
    """The record's parts (header, data), to be written with one vectored write."""
    tail = _HEADER.pack(0, kind, version, len(data))[_CRC_FROM:]
    crc = zlib.crc32(data, zlib.crc32(tail))
    return [struct.pack("<I", crc) + tail, data]


def append_records(path: Path, offset: int, parts: list[bytes], *, sync: bool) -> bool:
    """Write ``parts`` at ``offset`` of ``path`` (created if absent); True if it was created.

    On failure the file is cut back to ``offset`` so a later append never follows a partial
    record, and the error is raised. With ``sync`` the data is flushed (``fdatasync``) before
    returning; the caller makes a created file's directory entry durable.
    """
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    try:
        created = offset == 0
        if created:
            parts = [JOURNAL_MAGIC, *parts]
        total = sum(len(p) for p in parts)
        try:
            written = os.pwritev(fd, parts, offset)
            if written < total:  # rare (signal, disk filling up): finish it in plain writes
                rest = b"".join(parts)[written:]
                while rest:
                    n = os.pwrite(fd, rest, offset + total - len(rest))
                    rest = rest[n:]
            if sync:
                os.fdatasync(fd)
        except BaseException:
            # If even this fails, reads still stop at the last acknowledged size.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, offset)
            raise
        return created
    finally:
        os.close(fd)


def _damaged(path: Path, why: str) -> CacheError:
    return CacheError(
        f"corrupted object cache file {path}: {why}. Restore it from a backup, or move it away "
        "to keep only the object's base",
        path=str(path),
    )


def read_journal(path: Path, *, limit: int | None = None) -> Journal:
    """Parse ``path`` (up to ``limit`` bytes); a torn last record is reported, not returned.

    Raises CacheError naming the file when a damaged record is followed by more data (damage,
    not an interrupted append) or the file does not start with the journal's magic.
    """
    with open(path, "rb") as f:
        raw = f.read() if limit is None else f.read(limit)
    journal = Journal()
    if len(raw) < len(JOURNAL_MAGIC):
        if JOURNAL_MAGIC.startswith(raw):
            journal.torn_bytes = len(raw)  # the first append was interrupted
            return journal
        raise _damaged(path, "not an object journal")
    if not raw.startswith(JOURNAL_MAGIC):
        raise _damaged(path, "not an object journal")
    pos = len(JOURNAL_MAGIC)
    journal.good_size = pos
    view = memoryview(raw)
    while pos < len(raw):
        end = pos + _HEADER.size
        if end <= len(raw):
            crc, kind, version, length = _HEADER.unpack_from(raw, pos)
            end += length
        if end > len(raw):
            break  # incomplete: the last append was interrupted
        body = view[pos + _CRC_FROM : end]
        if zlib.crc32(body) != crc or kind not in (KIND_BASE, KIND_PATCH):
            if end == len(raw) or not any(raw[pos:]):
                break  # a torn last record (or zeros an OS crash left): never acknowledged
            raise _damaged(path, f"record at byte {pos} fails its checksum")
        data = bytes(view[pos + _HEADER.size : end])
        journal.records.append(JournalRecord(kind, version, data, end - pos))
        pos = journal.good_size = end
    journal.torn_bytes = len(raw) - journal.good_size
    return journal


@dataclass
class _SyncState:
    started: int = 0
    done: int = 0
    running: bool = False
    users: int = 0
    failed: tuple[int, BaseException] | None = None


class GroupSync:
    """Group commit: concurrent callers needing the same path flushed share one ``fsync``.

    A caller's change is covered by any flush that *starts* after the change was made; so a
    caller arriving while a flush runs waits for it, then for (or runs) the next one, which
    also covers every caller that arrived meanwhile.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._states: dict[str, _SyncState] = {}

    def sync(self, key: str, flush: Callable[[], None]) -> None:
        """Return once a ``flush`` of ``key`` that started after this call has finished."""
        with self._cond:
            state = self._states.setdefault(key, _SyncState())
            state.users += 1
            try:
                self._await(state, state.started + 1, flush)
            finally:
                state.users -= 1
                if state.users == 0:
                    del self._states[key]  # nobody waits on it: keep the map small

    def _await(self, state: _SyncState, need: int, flush: Callable[[], None]) -> None:
        while state.done < need:
            if state.running:
                self._cond.wait()
                continue
            state.running = True
            state.started += 1
            gen = state.started
            self._cond.release()
            error: BaseException | None = None
            try:
                flush()
            except BaseException as exc:
                error = exc
            finally:
                self._cond.acquire()
                state.running = False
                state.done = gen
                state.failed = (gen, error) if error is not None else None
                self._cond.notify_all()
        if state.failed is not None and state.failed[0] == need:
            raise state.failed[1]


def fsync_path(path: Path) -> None:
    """``fsync`` a file or directory by path."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
