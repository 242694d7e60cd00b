"""Self-checking base files of the object cache: one Arrow IPC file per object base.

A base file is replaced atomically: the bytes go to a temporary file in the target directory
(in one ``write`` when small) and are renamed over the target, so a kill at any moment leaves
the old file or the new one, never a torn one. With :class:`Durability` ``fsync`` on, the file
and then its directory are also flushed before the write is acknowledged, so it survives an OS
crash or power loss too. Opaque files carry a CRC32 of their data so a damaged file is reported
(naming it) instead of served.
"""

from __future__ import annotations

import os
import threading
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from flame_agents._wire.cache.schemas import (
    FORMAT_ARROW_TABLE,
    FORMAT_KEY,
    OPAQUE_SCHEMA,
    VERSION_KEY,
)
from flame_agents.errors import CacheError
from flame_agents.runtime.cache.journal import GroupSync, fsync_path

__all__ = [
    "TMP_SUFFIX",
    "Durability",
    "StoredFile",
    "fsync_dir",
    "read_stored",
    "with_version",
    "write_native",
    "write_opaque",
]

_FORMAT_OPAQUE = b"opaque-v1"
_CRC_KEY = b"flame.cache.crc32"
TMP_SUFFIX = ".tmp"
"""Suffix of in-flight temporary files; left-overs of a crash are removed at start-up."""


@dataclass
class StoredFile:
    """What one file holds: an opaque blob or a native Arrow table, and its version."""

    version: int
    data: bytes | None
    table: pa.Table | None

    @property
    def size(self) -> int:
        """Payload size in bytes (what the memory budget counts)."""
        if self.data is not None:
            return len(self.data)
        return int(self.table.nbytes) if self.table is not None else 0


def fsync_dir(path: Path) -> None:
    """Make a rename/create/unlink inside ``path`` durable."""
    fsync_path(path)


class Durability:
    """When a cache write counts as durable: in the page cache (default) or flushed to disk.

    Without ``fsync`` an acknowledged write survives a kill of any process (the data is in the
    OS page cache, and every replacement is an atomic rename or a checked append), not an OS
    crash. With ``fsync`` every write is flushed before its acknowledgement; directory flushes
    of concurrent writers in one directory are shared (group commit).
    """

    def __init__(self, *, fsync: bool = False) -> None:
        self.fsync = fsync
        self._group = GroupSync()

    def file(self, fd: int) -> None:
        """Flush an open file's data (``fsync`` mode only)."""
        if self.fsync:
            os.fsync(fd)

    def directory(self, path: Path) -> None:
        """Make entries created, renamed or removed in ``path`` durable (``fsync`` mode only)."""
        if self.fsync:
            self._group.sync(str(path), lambda: fsync_path(path))


_SMALL_WRITE = 1024 * 1024
"""Files up to this size are serialized in memory and written with one ``write`` call."""


def _mkdirs(path: Path, durability: Durability) -> None:
    """Create ``path`` and missing parents; durably so in ``fsync`` mode."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for new in reversed(missing):
        try:
            new.mkdir()
        except FileExistsError:
            continue
        durability.directory(new.parent)


def _atomic_write(
    path: Path,
    fill: Callable[[pa.NativeFile], None],
    *,
    dir_lock: threading.Lock,
    durability: Durability,
    size_hint: int,
) -> int:
    """Atomically replace ``path`` with what ``fill`` writes; return the bytes written."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TMP_SUFFIX}")
    payload: pa.Buffer | None = None
    if size_hint <= _SMALL_WRITE:
        buffer = pa.BufferOutputStream()
        fill(buffer)
        payload = buffer.getvalue()
    # Creating the temporary file under the directory lock keeps a concurrent DELETE from
    # removing the (then non-empty) directory between our mkdir and our rename.
    with dir_lock:
        _mkdirs(path.parent, durability)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            if payload is not None:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                size = int(payload.size)
            else:
                with pa.OSFile(str(tmp), "wb") as sink:  # the same (uniquely named) file
                    fill(sink)
                size = os.fstat(fd).st_size
            durability.file(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    durability.directory(path.parent)
    return size


def write_opaque(
    path: Path,
    version: int,
    data: bytes,
    *,
    dir_lock: threading.Lock,
    durability: Durability | None = None,
) -> int:
    """Atomically write an opaque blob (a base or a patch) at ``version``; return its size."""
    schema = OPAQUE_SCHEMA.with_metadata(
        {FORMAT_KEY: _FORMAT_OPAQUE, _CRC_KEY: str(zlib.crc32(data)).encode()}
    )
    batch = pa.RecordBatch.from_arrays(
        [pa.array([version], pa.uint64()), pa.array([data], pa.binary())], schema=schema
    )

    def fill(sink: pa.NativeFile) -> None:
        with pa.ipc.new_file(sink, schema) as writer:
            writer.write_batch(batch)

    return _atomic_write(
        path,
        fill,
        dir_lock=dir_lock,
        durability=durability or Durability(),
        size_hint=len(data) + 1024,
    )


def with_version(schema: pa.Schema, version: int) -> pa.Schema:
    """``schema`` with ``flame.cache.version`` set to ``version`` (other metadata kept)."""
    metadata = dict(schema.metadata or {})
    metadata[VERSION_KEY] = str(version).encode()
    return schema.with_metadata(metadata)


def write_native(
    path: Path,
    version: int,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    *,
    dir_lock: threading.Lock,
    durability: Durability | None = None,
) -> int:
    """Atomically write a native Arrow table as-is, recording ``version`` in its metadata."""
    stored = with_version(schema, version)
    batches = list(batches)

    def fill(sink: pa.NativeFile) -> None:
        with pa.ipc.new_file(sink, stored) as writer:
            for batch in batches:
                writer.write_batch(batch.replace_schema_metadata(stored.metadata))

    return _atomic_write(
        path,
        fill,
        dir_lock=dir_lock,
        durability=durability or Durability(),
        size_hint=sum(b.nbytes for b in batches) + 4096,
    )


def _corrupt(path: Path, why: str) -> CacheError:
    return CacheError(
        f"corrupted object cache file {path}: {why}. Restore it from a backup, or move it away "
        "to start without that object",
        path=str(path),
    )


def read_stored(path: Path) -> StoredFile:
    """Read and check one stored file; raise CacheError naming the file if it is damaged.

    Files without a version (flamepy's client-side "local storage" writes version 0) count as
    version 1, the version a server-side put would have given them.
    """
    try:
        with pa.OSFile(str(path), "rb") as source:
            table = pa.ipc.open_file(source).read_all()
        table.validate(full=True)
    except (OSError, pa.ArrowException) as exc:
        raise _corrupt(path, f"not a readable Arrow IPC file ({exc})") from exc
    metadata = table.schema.metadata or {}
    if metadata.get(FORMAT_KEY) == FORMAT_ARROW_TABLE:
        try:
            version = int(metadata.get(VERSION_KEY, b"0").decode())
        except ValueError as exc:
            raise _corrupt(path, "flame.cache.version is not an integer") from exc
        return StoredFile(version=max(version, 1), data=None, table=table)
    if table.num_columns < 2 or table.num_rows < 1:
        raise _corrupt(path, "expected columns (version, data) and at least one row")
    version_col, data_col = table.column(0), table.column(1)
    if not pa.types.is_integer(version_col.type) or not (
        pa.types.is_binary(data_col.type) or pa.types.is_large_binary(data_col.type)
    ):
        raise _corrupt(path, f"unexpected column types {table.schema.types[:2]}")
    data = b"".join(value or b"" for value in data_col.to_pylist())
    crc = metadata.get(_CRC_KEY)
    if crc is not None and int(crc) != zlib.crc32(data):
        raise _corrupt(path, "data checksum mismatch")
    return StoredFile(version=max(int(version_col[0].as_py() or 0), 1), data=data, table=None)
