"""An object rebuilt from its files: base file plus journal records, in version order.

:func:`replay` gives the object's :class:`IndexEntry` (versions and sizes, all the store keeps
in memory for it) and its decoded data for the LRU. Run when an object is loaded (at start-up,
or found on disk later), it also repairs what a crash may leave: a torn last journal record is
cut off, and a journal whose records all predate the base file (a base rewrite that crashed
before removing it) is removed. Run again after the LRU evicted the object, it reads only the
journal bytes already acknowledged. :func:`convert_deltas` turns the one-file-per-patch folder
of homes written by earlier versions into a journal.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from flame_agents._logging import get_logger
from flame_agents._wire.cache.keys import CacheKey
from flame_agents.errors import CacheError
from flame_agents.runtime.cache.files import TMP_SUFFIX, StoredFile, fsync_dir, read_stored
from flame_agents.runtime.cache.journal import (
    JOURNAL_MAGIC,
    KIND_BASE,
    KIND_PATCH,
    encode_record,
    read_journal,
)
from flame_agents.runtime.cache.lru import LoadedObject
from flame_agents.runtime.cache.values import ObjectInfo

__all__ = ["IndexEntry", "PatchMeta", "convert_deltas", "replay"]

_log = get_logger(__name__)


@dataclass
class PatchMeta:
    """Version and size of one patch."""

    version: int
    size: int


@dataclass
class IndexEntry:
    """What the store keeps in memory about one object."""

    key: CacheKey
    base_version: int
    base_size: int
    native_schema: pa.Schema | None
    patches: list[PatchMeta] = field(default_factory=list)
    journal_size: int = 0
    """Acknowledged bytes of the journal (0 = none): reads never look past them."""

    @property
    def version(self) -> int:
        """The object's current version (its last patch's, else its base's)."""
        return self.patches[-1].version if self.patches else self.base_version

    @property
    def size(self) -> int:
        """Bytes of the base and every patch."""
        return self.base_size + sum(p.size for p in self.patches)

    def info(self) -> ObjectInfo:
        """The object's facts for list_flights and get_flight_info."""
        return ObjectInfo(str(self.key), self.version, self.size, self.native_schema)


def replay(
    key: CacheKey, base: StoredFile, journal_path: Path, *, limit: int | None
) -> tuple[IndexEntry, LoadedObject]:
    """Base file + journal records = the object. ``limit``: acknowledged journal bytes
    (None at load time, which also repairs the journal)."""
    entry = IndexEntry(
        key=key,
        base_version=base.version,
        base_size=base.size,
        native_schema=base.table.schema if base.table is not None else None,
    )
    loaded = LoadedObject(_body_of(base))
    if limit == 0 or (limit is None and not journal_path.exists()):
        return entry, loaded
    journal = read_journal(journal_path, limit=limit)
    if limit is None and journal.torn_bytes:
        _log.warning("cache_torn_record_dropped", path=str(journal_path), bytes=journal.torn_bytes)
    live = [r for r in journal.records if r.version > base.version]
    if limit is None and (not live or journal.torn_bytes):
        if not live:
            # Every record predates the base file (a rewrite crashed before removing it).
            journal_path.unlink()
            return entry, loaded
        os.truncate(journal_path, journal.good_size)
    for record in live:
        if record.version != entry.version + 1:
            raise CacheError(
                f"corrupted object cache: journal {journal_path} has version {record.version} but "
                f"{entry.version + 1} was expected; restore the file from a backup, or "
                "move it away to keep only the base",
                path=str(journal_path),
            )
        if record.kind == KIND_BASE:
            entry.base_version, entry.base_size = record.version, len(record.data)
            entry.native_schema, entry.patches = None, []
            loaded = LoadedObject(record.data)
        elif entry.native_schema is not None:
            raise CacheError(
                f"corrupted object cache: journal {journal_path} patches a native Arrow table",
                path=str(journal_path),
            )
        else:
            entry.patches.append(PatchMeta(record.version, len(record.data)))
            loaded.patches.append(record.data)
    entry.journal_size = journal.good_size
    return entry, loaded


def convert_deltas(key: CacheKey, base_version: int, deltas: Path, journal: Path) -> None:
    """Turn an earlier version's ``<id>.deltas/<n>.arrow`` files into the journal."""
    if not journal.exists():  # else a conversion finished but crashed before cleaning up
        found: list[tuple[int, Path, bytes]] = []
        for path in deltas.iterdir():
            if path.name.endswith(TMP_SUFFIX):
                continue
            stem = path.name[:-6] if path.name.endswith(".arrow") else ""
            if not stem.isdigit():
                raise CacheError(
                    f"unexpected file {path} among patches: move it out of {deltas}",
                    path=str(path),
                )
            stored = read_stored(path)
            if stored.data is None:
                raise CacheError(
                    f"corrupted object cache file {path}: a patch must be opaque data",
                    path=str(path),
                )
            if stored.version > base_version:
                found.append((stored.version, path, stored.data))
        found.sort(key=lambda item: item[0])
        parts = [JOURNAL_MAGIC]
        expected = base_version + 1
        for version, path, data in found:
            if version != expected:
                raise CacheError(
                    f"corrupted object cache: patch file {path} has version {version} but "
                    f"{expected} was expected (a patch is missing); restore the missing "
                    f"file or remove {deltas} to keep only the base",
                    path=str(path),
                )
            parts.extend(encode_record(KIND_PATCH, version, data))
            expected += 1
        if found:
            # A one-off conversion: always flushed, then atomically renamed in.
            tmp = journal.with_name(f".{journal.name}.{uuid.uuid4().hex}{TMP_SUFFIX}")
            with open(tmp, "wb") as f:
                f.write(b"".join(parts))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, journal)
            fsync_dir(journal.parent)
    shutil.rmtree(deltas)
    fsync_dir(deltas.parent)
    _log.info("cache_patches_converted", key=str(key))


def _body_of(stored: StoredFile) -> bytes | pa.Table:
    return stored.data if stored.data is not None else stored.table
