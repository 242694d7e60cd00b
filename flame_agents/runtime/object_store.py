"""The object cache's durable store: versioned objects, each a base plus append-only patches.

Layout under ``root`` (flame-wire §4.3): ``<app>/<session>/<id>.arrow`` holds the base and
``<app>/<session>/<id>.deltas/<n>.arrow`` one file per patch, so a patch costs O(patch) bytes on
disk and never rewrites the base. Every write is durable before it is acknowledged
(:mod:`cache_files`). Only an index of versions and sizes stays in memory; decoded data lives in
a byte-bounded LRU and is read back from disk when evicted. Operations on one key are serialised
by a striped lock; different keys proceed in parallel.

Crash safety of a replace (compaction): the new base (higher version) is made durable first and
the old patch files removed after; patch files left behind by a crash in between have versions
at or below the base and are discarded when the store opens.
"""

from __future__ import annotations

import contextlib
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
from flame_agents.errors import (
    CacheError,
    CommitConflictError,
    InvalidArgumentError,
    LimitExceededError,
    ObjectNotFoundError,
)
from flame_agents.runtime.cache_files import (
    TMP_SUFFIX,
    StoredFile,
    fsync_dir,
    read_stored,
    with_version,
    write_native,
    write_opaque,
)
from flame_agents.runtime.cache_keys import CacheKey, parse_key
from flame_agents.runtime.cache_lru import LoadedObject, ObjectLRU

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
    n: int
    size: int


@dataclass
class _Entry:
    key: CacheKey
    base_version: int
    base_size: int
    native_schema: pa.Schema | None
    patches: list[_PatchMeta] = field(default_factory=list)
    next_n: int = 0

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
    """Durable versioned objects under ``root``; loads and checks everything on open.

    Raises CacheError naming the file if a stored file is damaged, rather than dropping data.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_memory: int = DEFAULT_MAX_MEMORY,
        max_patches: int = DEFAULT_MAX_PATCHES,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._max_patches = max_patches
        self._lru = ObjectLRU(max_memory)
        self._index: dict[str, _Entry] = {}
        self._index_lock = threading.Lock()
        self._dir_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._scan()

    # -- paths and locks ------------------------------------------------------------------

    def _session_dir(self, key: CacheKey) -> Path:
        return self.root / key.app / key.session

    def _base_path(self, key: CacheKey) -> Path:
        return self._session_dir(key) / f"{key.object_id}.arrow"

    def _deltas_dir(self, key: CacheKey) -> Path:
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
        _log.info("cache_store_opened", root=str(self.root), objects=len(self._index))

    def _load_entry(self, key: CacheKey, *, warm: bool) -> _Entry | None:
        """Read the object's files from disk into the index (and the LRU if ``warm``)."""
        base_path = self._base_path(key)
        if not base_path.exists():
            return None
        base = read_stored(base_path)
        entry = _Entry(
            key=key,
            base_version=base.version,
            base_size=base.size,
            native_schema=base.table.schema if base.table is not None else None,
        )
        patch_data = self._load_patches(entry)
        with self._index_lock:
            self._index[str(key)] = entry
        if warm:
            self._lru.put(str(key), LoadedObject(_body_of(base), patch_data))
        return entry

    def _load_patches(self, entry: _Entry) -> list[bytes]:
        deltas = self._deltas_dir(entry.key)
        if not deltas.is_dir():
            return []
        found: list[tuple[int, int, Path, StoredFile]] = []
        for path in deltas.iterdir():
            if path.name.endswith(TMP_SUFFIX):
                path.unlink()
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
            found.append((stored.version, int(stem), path, stored))
        found.sort(key=lambda item: item[0])
        data: list[bytes] = []
        expected = entry.base_version + 1
        for version, n, path, stored in found:
            entry.next_n = max(entry.next_n, n + 1)
            if version <= entry.base_version:
                path.unlink()  # superseded by a compaction that crashed before cleaning up
                continue
            if version != expected:
                raise CacheError(
                    f"corrupted object cache: patch file {path} has version {version} but "
                    f"{expected} was expected (a patch is missing); restore the missing file "
                    f"or remove {deltas} to keep only the base",
                    path=str(path),
                )
            entry.patches.append(_PatchMeta(version, n, stored.size))
            data.append(stored.data or b"")
            expected += 1
        return data

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
        patches: list[bytes] = []
        for meta in entry.patches:
            stored = read_stored(self._deltas_dir(entry.key) / f"{meta.n}.arrow")
            patches.append(stored.data or b"")
        item = LoadedObject(_body_of(base), patches)
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
        skey = str(target)
        with self._locked(skey):
            entry = self._lookup(target)
            current = entry.version if entry is not None else 0
            if expected is not None and expected != current:
                raise _conflict(expected, current, skey)
            version = current + 1
            path = self._base_path(target)
            if isinstance(body, NativeBody):
                write_native(path, version, body.schema, body.batches, dir_lock=self._dir_lock)
                table = pa.Table.from_batches(body.batches, schema=body.schema)
                loaded = LoadedObject(table.replace_schema_metadata(body.schema.metadata))
                schema: pa.Schema | None = body.schema
            else:
                write_opaque(path, version, body, dir_lock=self._dir_lock)
                loaded, schema = LoadedObject(body), None
            deltas = self._deltas_dir(target)
            if deltas.exists():
                # Only now that the new base is durable may the old patches go.
                shutil.rmtree(deltas)
                fsync_dir(deltas.parent)
            new_entry = _Entry(target, version, loaded.size, schema)
            with self._index_lock:
                self._index[skey] = new_entry
            self._lru.put(skey, loaded)
        return skey, version

    def patch(self, key: CacheKey, data: bytes, *, expected: int | None = None) -> int:
        """Append a patch to ``key``; with ``expected``, only if the version equals it.

        Returns the new version. Writes only the patch (O(len(data)) bytes on disk).
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
            n = entry.next_n
            write_opaque(
                self._deltas_dir(key) / f"{n}.arrow", version, data, dir_lock=self._dir_lock
            )
            entry.patches.append(_PatchMeta(version, n, len(data)))
            entry.next_n = n + 1
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
                (meta.version, "patch", data)
                for meta, data in zip(entry.patches, loaded.patches, strict=True)
            ]
            if since != 0 and entry.base_version <= since < version:
                # The caller holds the base and the patches up to `since`: send only the rest.
                return RowsReply(version, [row for row in patches if row[0] > since])
            return RowsReply(version, [(entry.base_version, "base", loaded.base), *patches])

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
            fsync_dir(self.root)

    def close(self) -> None:
        """Release memory; everything acknowledged is already on disk."""
        self._lru = ObjectLRU(0)
        with self._index_lock:
            self._index.clear()


def _body_of(stored: StoredFile) -> bytes | pa.Table:
    return stored.data if stored.data is not None else stored.table
