"""Durable, self-checking files of the object cache: one Arrow IPC file per base or patch.

A write is acknowledged only once it is on disk: the bytes go to a temporary file in the target
directory, are fsynced, renamed over the target and the directory is fsynced, so a crash leaves
either the old file or the new one, never a torn one. Opaque files carry a CRC32 of their data
so a damaged file is reported (naming it) instead of served.
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

from flame_agents.errors import CacheError

__all__ = [
    "FORMAT_ARROW_TABLE",
    "FORMAT_KEY",
    "OPAQUE_SCHEMA",
    "TMP_SUFFIX",
    "VERSION_KEY",
    "StoredFile",
    "fsync_dir",
    "read_stored",
    "with_version",
    "write_native",
    "write_opaque",
]

FORMAT_KEY = b"flame.cache.format"
VERSION_KEY = b"flame.cache.version"
FORMAT_ARROW_TABLE = b"arrow-table-v1"
_FORMAT_OPAQUE = b"opaque-v1"
_CRC_KEY = b"flame.cache.crc32"
TMP_SUFFIX = ".tmp"
"""Suffix of in-flight temporary files; left-overs of a crash are removed at start-up."""

OPAQUE_SCHEMA = pa.schema([pa.field("version", pa.uint64()), pa.field("data", pa.binary())])


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
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkdirs(path: Path) -> None:
    """Create ``path`` and missing parents, fsyncing each new entry's parent."""
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
        fsync_dir(new.parent)


def _atomic_write(
    path: Path, fill: Callable[[pa.NativeFile], None], *, dir_lock: threading.Lock
) -> int:
    """Durably replace ``path`` with what ``fill`` writes; return the bytes written."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TMP_SUFFIX}")
    # Creating the temporary file under the directory lock keeps a concurrent DELETE from
    # removing the (then non-empty) directory between our mkdir and our rename.
    with dir_lock:
        _mkdirs(path.parent)
        sink = pa.OSFile(str(tmp), "wb")
    try:
        try:
            fill(sink)
        finally:
            sink.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        size = tmp.stat().st_size
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return size


def write_opaque(path: Path, version: int, data: bytes, *, dir_lock: threading.Lock) -> int:
    """Durably write an opaque blob (a base or a patch) at ``version``; return bytes written."""
    schema = OPAQUE_SCHEMA.with_metadata(
        {FORMAT_KEY: _FORMAT_OPAQUE, _CRC_KEY: str(zlib.crc32(data)).encode()}
    )
    batch = pa.RecordBatch.from_arrays(
        [pa.array([version], pa.uint64()), pa.array([data], pa.binary())], schema=schema
    )

    def fill(sink: pa.NativeFile) -> None:
        with pa.ipc.new_file(sink, schema) as writer:
            writer.write_batch(batch)

    return _atomic_write(path, fill, dir_lock=dir_lock)


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
) -> int:
    """Durably write a native Arrow table as-is, recording ``version`` in its schema metadata."""
    stored = with_version(schema, version)

    def fill(sink: pa.NativeFile) -> None:
        with pa.ipc.new_file(sink, stored) as writer:
            for batch in batches:
                writer.write_batch(batch.replace_schema_metadata(stored.metadata))

    return _atomic_write(path, fill, dir_lock=dir_lock)


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
