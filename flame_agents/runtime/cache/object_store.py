"""The object cache's store: versioned objects, each a base plus append-only patches.

Layout under ``root``: ``<app>/<session>/<id>.arrow`` is the base file (flame-wire §4.3's
format) and ``<app>/<session>/<id>.journal`` the object's journal (:mod:`cache_journal`): every
patch, and every replacement of a small opaque base, is one record appended to it, so a write
costs one append of O(write) bytes and never rewrites the base. A large or native base is
written as a new base file (atomic rename, :mod:`cache_files`) and the journal removed; a base
replacement also goes to a new base file when the journal has grown past
``_JOURNAL_MAX`` bytes, which bounds it. Homes written by earlier versions (one file per patch
in ``<id>.deltas/<n>.arrow``) are converted to a journal when the object is first loaded.

Durability (:class:`~flame_agents.runtime.cache.files.Durability`): by default a write is
acknowledged once it is in the OS page cache, which survives a kill of any process but not an
OS crash; with ``fsync`` it is flushed first. Only an index of versions and sizes stays in
memory; decoded data lives in a byte-bounded LRU and is read back from disk when evicted.
Operations on one key are serialised by a striped lock; different keys proceed in parallel.

Crash safety of a base rewrite: the new base file (higher version) is renamed in first and the
journal removed after; journal records left behind by a crash in between have versions at or
below the base and are discarded when the object loads. A torn last journal record (a write
interrupted by a kill, never acknowledged) is dropped and the file cut back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from flame_agents._logging import get_logger
from flame_agents._wire.cache.keys import CacheKey, parse_key
from flame_agents._wire.cache.schemas import ROW_BASE, ROW_PATCH
from flame_agents.errors import (
    CacheError,
    CommitConflictError,
    InvalidArgumentError,
    LimitExceededError,
    ObjectNotFoundError,
)
from flame_agents.runtime.cache.files import (
    TMP_SUFFIX,
    Durability,
    StoredFile,
    fsync_dir,
    read_stored,
    with_version,
    write_native,
    write_opaque,
)
from flame_agents.runtime.cache.journal import (
    JOURNAL_MAGIC,
    KIND_BASE,
    KIND_PATCH,
    append_records,
    encode_record,
    read_journal,
)
from flame_agents.runtime.cache.lru import LoadedObject, ObjectLRU

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "DEFAULT_MAX_PATCHES",
    "NativeBody",
    "NativeReply",
    "NotModified",
    "ObjectInfo",
    "ObjectStore",
    "ReadReply",
    "RowsReply",
]

DEFAULT_MAX_MEMORY = 256 * 1024 * 1024
"""Default budget of the in-memory LRU of decoded objects."""

DEFAULT_MAX_PATCHES = 1000
"""Patches per object before a patch is refused (Flame's disk-storage limit)."""

_JOURNAL_BASE_MAX = 64 * 1024
"""Largest opaque base replacement appended to the journal (larger ones get a new base file)."""

_JOURNAL_MAX = 1024 * 1024
"""A base replacement that would grow the journal past this rewrites the base file instead."""

_JOURNAL_SUFFIX = ".journal"
_STRIPES = 64
_log = get_logger(__name__)


@dataclass(frozen=True)
class NativeBody:
    """A native Arrow table as uploaded: schema (with ``flame.cache.*`` metadata) and batches."""

    schema: pa.Schema
    batches: list[pa.RecordBatch]


@dataclass(frozen=True)
class NotModified:
    """The caller already holds ``version``."""

    version: int


@dataclass(frozen=True)
class NativeReply:
    """A native Arrow object; ``table``'s metadata carries ``flame.cache.version``."""

    version: int
    table: pa.Table


@dataclass(frozen=True)
class RowsReply:
    """Rows ``(version, kind, data)``: a full reply starts with the base row, else patches only."""

    version: int
    rows: list[tuple[int, str, bytes]]


ReadReply = NotModified | NativeReply | RowsReply


@dataclass(frozen=True)
class ObjectInfo:
    """What list_flights and get_flight_info report about an object."""

    key: str
    version: int
    size: int
    native_schema: pa.Schema | None


@dataclass
class _PatchMeta:
    version: int
    size: int


@dataclass
class _Entry:
    key: CacheKey
    base_version: int
    base_size: int
    native_schema: pa.Schema | None
    patches: list[_PatchMeta] = field(default_factory=list)
    journal_size: int = 0
    """Acknowledged bytes of the journal (0 = none): reads never look past them."""

    @property
    def version(self) -> int:
        return self.patches[-1].version if self.patches else self.base_version

    @property
    def size(self) -> int:
        return self.base_size + sum(p.size for p in self.patches)

    def info(self) -> ObjectInfo:
        return ObjectInfo(str(self.key), self.version, self.size, self.native_schema)


def _conflict(expected: int, current: int, key: str) -> CommitConflictError:
    return CommitConflictError(
        f"version conflict (expected {expected}, current {current}) on {key}: "
        "re-read the object and retry",
        key=key,
        expected_version=expected,
        current_version=current,
    )


class ObjectStore:
    """Versioned objects under ``root``; loads and checks everything on open.

    Raises CacheError naming the file if a stored file is damaged, rather than dropping data.
    ``fsync``: flush every write to disk before acknowledging it (power-loss safe) instead of
    leaving it in the OS page cache (safe against a kill of any process).
    """

    def __init__(
        self,
        root: Path,
        *,
        max_memory: int = DEFAULT_MAX_MEMORY,
        max_patches: int = DEFAULT_MAX_PATCHES,
        fsync: bool = False,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._max_patches = max_patches
        self._durability = Durability(fsync=fsync)
        self._lru = ObjectLRU(max_memory)
        self._index: dict[str, _Entry] = {}
        self._index_lock = threading.Lock()
        self._dir_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._scan()

    @property
    def fsync(self) -> bool:
        """Whether writes are flushed to disk before they are acknowledged."""
        return self._durability.fsync

    # -- paths and locks ------------------------------------------------------------------

    def _session_dir(self, key: CacheKey) -> Path:
        return self.root / key.app / key.session

    def _base_path(self, key: CacheKey) -> Path:
        return self._session_dir(key) / f"{key.object_id}.arrow"

    def _journal_path(self, key: CacheKey) -> Path:
        return self._session_dir(key) / f"{key.object_id}{_JOURNAL_SUFFIX}"

    def _deltas_dir(self, key: CacheKey) -> Path:
        """Where earlier versions kept one file per patch (converted when loaded)."""
        return self._session_dir(key) / f"{key.object_id}.deltas"

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        with self._stripes[zlib.crc32(key.encode()) % _STRIPES]:
            yield

    # -- start-up -------------------------------------------------------------------------

    def _scan(self) -> None:
        """Index every object on disk, checking each file; clean up crash left-overs."""
        for app_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for ssn_dir in sorted(p for p in app_dir.iterdir() if p.is_dir()):
                for path in sorted(ssn_dir.iterdir()):
                    if path.name.endswith(TMP_SUFFIX):
                        path.unlink()  # an unacknowledged write interrupted by a crash
                    elif path.is_file() and path.name.endswith(".arrow"):
                        try:
                            key = parse_key(f"{app_dir.name}/{ssn_dir.name}/{path.name[:-6]}")
                        except InvalidArgumentError:
                            _log.warning("cache_file_ignored", path=str(path))
                            continue
                        self._load_entry(key, warm=True)
                    elif (
                        path.is_dir()
                        and path.name.endswith(".deltas")
                        and not (ssn_dir / f"{path.name[:-7]}.arrow").exists()
                    ):
                        # Its base was deleted and a crash came before the patches went.
                        shutil.rmtree(path)
                    elif (
                        path.name.endswith(_JOURNAL_SUFFIX)
                        and not (ssn_dir / f"{path.name[: -len(_JOURNAL_SUFFIX)]}.arrow").exists()
                    ):
                        path.unlink()  # the same, for a journal
        _log.info(
            "cache_store_opened", root=str(self.root), objects=len(self._index), fsync=self.fsync
        )

    def _load_entry(self, key: CacheKey, *, warm: bool) -> _Entry | None:
        """Read the object's files from disk into the index (and the LRU if ``warm``).

        Also repairs what a crash may leave: converts a legacy ``.deltas`` folder, cuts a torn
        journal record, removes a journal superseded by a newer base file.
        """
        base_path = self._base_path(key)
        if not base_path.exists():
            return None
        base = read_stored(base_path)
        if self._deltas_dir(key).is_dir():
            self._convert_deltas(key, base.version)
        entry, loaded = self._replay(key, base, limit=None)
        with self._index_lock:
            self._index[str(key)] = entry
        if warm:
            self._lru.put(str(key), loaded)
        return entry

    def _replay(
        self, key: CacheKey, base: StoredFile, *, limit: int | None
    ) -> tuple[_Entry, LoadedObject]:
        """Base file + journal records = the object. ``limit``: acknowledged journal bytes
        (None at load time, which also repairs the journal)."""
        entry = _Entry(
            key=key,
            base_version=base.version,
            base_size=base.size,
            native_schema=base.table.schema if base.table is not None else None,
        )
        loaded = LoadedObject(_body_of(base))
        path = self._journal_path(key)
        if limit == 0 or (limit is None and not path.exists()):
            return entry, loaded
        journal = read_journal(path, limit=limit)
        if limit is None and journal.torn_bytes:
            _log.warning("cache_torn_record_dropped", path=str(path), bytes=journal.torn_bytes)
        live = [r for r in journal.records if r.version > base.version]
        if limit is None and (not live or journal.torn_bytes):
            if not live:
                # Every record predates the base file (a rewrite crashed before removing it).
                path.unlink()
                return entry, loaded
            os.truncate(path, journal.good_size)
        for record in live:
            if record.version != entry.version + 1:
                raise CacheError(
                    f"corrupted object cache: journal {path} has version {record.version} but "
                    f"{entry.version + 1} was expected; restore the file from a backup, or "
                    "move it away to keep only the base",
                    path=str(path),
                )
            if record.kind == KIND_BASE:
                entry.base_version, entry.base_size = record.version, len(record.data)
                entry.native_schema, entry.patches = None, []
                loaded = LoadedObject(record.data)
            elif entry.native_schema is not None:
                raise CacheError(
                    f"corrupted object cache: journal {path} patches a native Arrow table",
                    path=str(path),
                )
            else:
                entry.patches.append(_PatchMeta(record.version, len(record.data)))
                loaded.patches.append(record.data)
        entry.journal_size = journal.good_size
        return entry, loaded

    def _convert_deltas(self, key: CacheKey, base_version: int) -> None:
        """Turn an earlier version's ``<id>.deltas/<n>.arrow`` files into the journal."""
        deltas = self._deltas_dir(key)
        journal = self._journal_path(key)
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

    # -- lookups --------------------------------------------------------------------------

    def _lookup(self, key: CacheKey) -> _Entry | None:
        """The entry of ``key``; also picks up files another writer put straight on disk
        (flamepy's client-side local-storage mode). Caller holds the key's lock."""
        with self._index_lock:
            entry = self._index.get(str(key))
        if entry is None:
            entry = self._load_entry(key, warm=False)
        return entry

    def _loaded(self, entry: _Entry) -> LoadedObject:
        """Decoded data of ``entry`` from the LRU, or from disk. Caller holds the key's lock."""
        skey = str(entry.key)
        item = self._lru.get(skey)
        if item is not None:
            return item
        base = read_stored(self._base_path(entry.key))
        _, item = self._replay(entry.key, base, limit=entry.journal_size)
        self._lru.put(skey, item)
        return item

    # -- operations -----------------------------------------------------------------------

    def put(
        self, target: CacheKey, body: bytes | NativeBody, *, expected: int | None = None
    ) -> tuple[str, int]:
        """Create (prefix target: new UUID id) or replace (full key) an object's base.

        Replacing drops every patch and bumps the version; with ``expected`` the replace
        happens only if the current version (0 = absent) equals it. Returns (key, version).
        """
        if target.object_id is None:
            if expected is not None:
                raise InvalidArgumentError(
                    f"a conditional put needs a full key, not the prefix {target}", key=str(target)
                )
            target = target.with_object(str(uuid.uuid4()))
            fresh = True
        else:
            fresh = False
        skey = str(target)
        with self._locked(skey):
            entry = None if fresh else self._lookup(target)  # a new UUID cannot be on disk
            current = entry.version if entry is not None else 0
            if expected is not None and expected != current:
                raise _conflict(expected, current, skey)
            version = current + 1
            if (
                entry is not None
                and isinstance(body, bytes)
                and len(body) <= _JOURNAL_BASE_MAX
                and entry.journal_size + len(body) + 64 <= _JOURNAL_MAX
            ):
                self._append(entry, KIND_BASE, version, body)
                entry.base_version, entry.base_size = version, len(body)
                entry.native_schema, entry.patches = None, []
                self._lru.put(skey, LoadedObject(body))
                return skey, version
            self._write_base(target, version, body)
            if entry is not None:
                # Only now that the new base file is in place may the old journal go.
                self._journal_path(target).unlink(missing_ok=True)
                self._durability.directory(self._session_dir(target))
            loaded = (
                LoadedObject(body)
                if isinstance(body, bytes)
                else LoadedObject(
                    pa.Table.from_batches(body.batches, schema=body.schema).replace_schema_metadata(
                        body.schema.metadata
                    )
                )
            )
            schema = body.schema if isinstance(body, NativeBody) else None
            new_entry = _Entry(target, version, loaded.size, schema)
            with self._index_lock:
                self._index[skey] = new_entry
            self._lru.put(skey, loaded)
        return skey, version

    def _write_base(self, key: CacheKey, version: int, body: bytes | NativeBody) -> None:
        path = self._base_path(key)
        if isinstance(body, NativeBody):
            write_native(
                path,
                version,
                body.schema,
                body.batches,
                dir_lock=self._dir_lock,
                durability=self._durability,
            )
        else:
            write_opaque(path, version, body, dir_lock=self._dir_lock, durability=self._durability)

    def _append(self, entry: _Entry, kind: int, version: int, data: bytes) -> None:
        """Append one record to ``entry``'s journal (one write; flushed in ``fsync`` mode)."""
        parts = encode_record(kind, version, data)
        created = append_records(
            self._journal_path(entry.key),
            entry.journal_size,
            parts,
            sync=self._durability.fsync,
        )
        if created:
            entry.journal_size = len(JOURNAL_MAGIC)
            self._durability.directory(self._session_dir(entry.key))
        entry.journal_size += sum(len(part) for part in parts)

    def patch(self, key: CacheKey, data: bytes, *, expected: int | None = None) -> int:
        """Append a patch to ``key``; with ``expected``, only if the version equals it.

        Returns the new version. Appends only the patch (O(len(data)) bytes on disk).
        """
        skey = str(key)
        with self._locked(skey):
            entry = self._lookup(key)
            if entry is None:
                raise ObjectNotFoundError(f"object not found: {skey}", key=skey)
            if entry.native_schema is not None:
                raise InvalidArgumentError(
                    f"cannot patch {skey}: it is a native Arrow table; update it instead",
                    key=skey,
                )
            if expected is not None and expected != entry.version:
                raise _conflict(expected, entry.version, skey)
            if len(entry.patches) >= self._max_patches:
                raise LimitExceededError(
                    f"object {skey} already has {len(entry.patches)} patches (the limit); "
                    "update the object to compact it",
                    key=skey,
                    limit=self._max_patches,
                )
            version = entry.version + 1
            self._append(entry, KIND_PATCH, version, data)
            entry.patches.append(_PatchMeta(version, len(data)))
            self._lru.append_patch(skey, data)
        return version

    def read(self, key: CacheKey, since: int = 0) -> ReadReply:
        """The reply to ticket ``key:since`` (flame-wire §4.2 do_get rules)."""
        skey = str(key)
        with self._locked(skey):
            entry = self._lookup(key)
            if entry is None:
                raise ObjectNotFoundError(f"object not found: {skey}", key=skey)
            version = entry.version
            if since != 0 and since == version:
                return NotModified(version)
            loaded = self._loaded(entry)
            if isinstance(loaded.base, pa.Table):
                table = loaded.base
                return NativeReply(
                    version,
                    table.replace_schema_metadata(with_version(table.schema, version).metadata),
                )
            patches = [
                (meta.version, ROW_PATCH, data)
                for meta, data in zip(entry.patches, loaded.patches, strict=True)
            ]
            if since != 0 and entry.base_version <= since < version:
                # The caller holds the base and the patches up to `since`: send only the rest.
                return RowsReply(version, [row for row in patches if row[0] > since])
            return RowsReply(version, [(entry.base_version, ROW_BASE, loaded.base), *patches])

    def info(self, key: CacheKey) -> ObjectInfo | None:
        """Version, size and native schema of ``key``, or None if absent."""
        with self._locked(str(key)):
            entry = self._lookup(key)
            return entry.info() if entry is not None else None

    def objects(self) -> list[ObjectInfo]:
        """Every stored object, ordered by key."""
        with self._index_lock:
            entries = list(self._index.values())
        return sorted((e.info() for e in entries), key=lambda i: i.key)

    def delete(self, pattern: CacheKey) -> int:
        """Delete the object, the session prefix or the ``<app>/*`` pattern; return the count."""
        with self._index_lock:
            keys = {k: e.key for k, e in self._index.items() if pattern.matches(e.key)}
        for key in self._keys_on_disk(pattern):
            keys.setdefault(str(key), key)
        deleted = 0
        for skey, key in sorted(keys.items()):
            with self._locked(skey):
                base = self._base_path(key)
                # Base first: patches without a base are cleaned at start-up, whereas a base
                # without its patches would silently come back as an older object.
                if base.exists():
                    base.unlink()
                    deleted += 1
                self._journal_path(key).unlink(missing_ok=True)
                shutil.rmtree(self._deltas_dir(key), ignore_errors=True)
                with self._index_lock:
                    self._index.pop(skey, None)
                self._lru.drop(skey)
        self._remove_empty_dirs(pattern)
        return deleted

    def _keys_on_disk(self, pattern: CacheKey) -> list[CacheKey]:
        app_dir = self.root / pattern.app
        if not app_dir.is_dir():
            return []
        sessions = (
            [p for p in app_dir.iterdir() if p.is_dir()]
            if pattern.is_wildcard
            else [app_dir / pattern.session]
        )
        keys: list[CacheKey] = []
        for ssn_dir in sessions:
            if not ssn_dir.is_dir():
                continue
            for path in ssn_dir.glob("*.arrow"):
                try:
                    key = parse_key(f"{pattern.app}/{ssn_dir.name}/{path.name[:-6]}")
                except InvalidArgumentError:
                    continue
                if pattern.matches(key):
                    keys.append(key)
        return keys

    def _remove_empty_dirs(self, pattern: CacheKey) -> None:
        app_dir = self.root / pattern.app
        with self._dir_lock:
            if not app_dir.is_dir():
                return
            sessions = (
                [p for p in app_dir.iterdir() if p.is_dir()]
                if pattern.is_wildcard
                else [app_dir / pattern.session]
            )
            for path in [*sessions, app_dir]:
                # Not empty (other objects, or a write in flight) or already gone: keep it.
                with contextlib.suppress(OSError):
                    path.rmdir()
            for path in [*sessions, app_dir, self.root]:
                if path.is_dir():
                    self._durability.directory(path)

    def close(self) -> None:
        """Release memory; everything acknowledged is already written."""
        self._lru = ObjectLRU(0)
        with self._index_lock:
            self._index.clear()


def _body_of(stored: StoredFile) -> bytes | pa.Table:
    return stored.data if stored.data is not None else stored.table
