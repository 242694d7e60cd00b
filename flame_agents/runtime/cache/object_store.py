"""The object cache's store: versioned objects, each a base plus append-only patches.

Layout under ``root``: ``<app>/<session>/<id>.arrow`` is the base file (flame-wire §4.3's
format) and ``<app>/<session>/<id>.journal`` the object's journal (:mod:`.journal`): every
patch, and every replacement of a small opaque base, is one record appended to it, so a write
costs one append of O(write) bytes and never rewrites the base. A large or native base is
written as a new base file (atomic rename, :mod:`.files`) and the journal removed; a base
replacement also goes to a new base file when the journal has grown past
``_JOURNAL_MAX`` bytes, which bounds it. Homes written by earlier versions (one file per patch
in ``<id>.deltas/<n>.arrow``) are converted to a journal when the object is first loaded.
Where the files live is :mod:`.layout`; how an object is read back from them, :mod:`.replay`.

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

import shutil
import threading
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from flame_agents._logging import get_logger
from flame_agents._wire.cache.keys import CacheKey
from flame_agents._wire.cache.schemas import ROW_BASE, ROW_PATCH
from flame_agents.errors import (
    CommitConflictError,
    InvalidArgumentError,
    LimitExceededError,
    ObjectNotFoundError,
)
from flame_agents.runtime.cache.files import (
    Durability,
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
)
from flame_agents.runtime.cache.layout import ObjectLayout
from flame_agents.runtime.cache.lru import LoadedObject, ObjectLRU
from flame_agents.runtime.cache.replay import IndexEntry, PatchMeta, convert_deltas, replay
from flame_agents.runtime.cache.values import (
    NativeBody,
    NativeReply,
    NotModified,
    ObjectInfo,
    ReadReply,
    RowsReply,
)

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

_STRIPES = 64
_log = get_logger(__name__)


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
        self._layout = ObjectLayout(self.root, self._durability)
        self._index: dict[str, IndexEntry] = {}
        self._index_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._scan()

    @property
    def fsync(self) -> bool:
        """Whether writes are flushed to disk before they are acknowledged."""
        return self._durability.fsync

    # -- locks and start-up ----------------------------------------------------------------

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        with self._stripes[zlib.crc32(key.encode()) % _STRIPES]:
            yield

    def _scan(self) -> None:
        """Index every object on disk, checking each file; clean up crash left-overs."""
        for key in self._layout.stored_keys():
            self._load_entry(key, warm=True)
        _log.info(
            "cache_store_opened", root=str(self.root), objects=len(self._index), fsync=self.fsync
        )

    def _load_entry(self, key: CacheKey, *, warm: bool) -> IndexEntry | None:
        """Read the object's files from disk into the index (and the LRU if ``warm``).

        Also repairs what a crash may leave: converts a legacy ``.deltas`` folder, cuts a torn
        journal record, removes a journal superseded by a newer base file.
        """
        base_path = self._layout.base_path(key)
        if not base_path.exists():
            return None
        base = read_stored(base_path)
        deltas = self._layout.deltas_dir(key)
        if deltas.is_dir():
            convert_deltas(key, base.version, deltas, self._layout.journal_path(key))
        entry, loaded = replay(key, base, self._layout.journal_path(key), limit=None)
        with self._index_lock:
            self._index[str(key)] = entry
        if warm:
            self._lru.put(str(key), loaded)
        return entry

    # -- lookups --------------------------------------------------------------------------

    def _lookup(self, key: CacheKey) -> IndexEntry | None:
        """The entry of ``key``; also picks up files another writer put straight on disk
        (flamepy's client-side local-storage mode). Caller holds the key's lock."""
        with self._index_lock:
            entry = self._index.get(str(key))
        if entry is None:
            entry = self._load_entry(key, warm=False)
        return entry

    def _loaded(self, entry: IndexEntry) -> LoadedObject:
        """Decoded data of ``entry`` from the LRU, or from disk. Caller holds the key's lock."""
        skey = str(entry.key)
        item = self._lru.get(skey)
        if item is not None:
            return item
        base = read_stored(self._layout.base_path(entry.key))
        _, item = replay(
            entry.key, base, self._layout.journal_path(entry.key), limit=entry.journal_size
        )
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
                self._layout.journal_path(target).unlink(missing_ok=True)
                self._durability.directory(self._layout.session_dir(target))
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
            new_entry = IndexEntry(target, version, loaded.size, schema)
            with self._index_lock:
                self._index[skey] = new_entry
            self._lru.put(skey, loaded)
        return skey, version

    def _write_base(self, key: CacheKey, version: int, body: bytes | NativeBody) -> None:
        path = self._layout.base_path(key)
        if isinstance(body, NativeBody):
            write_native(
                path,
                version,
                body.schema,
                body.batches,
                dir_lock=self._layout.dir_lock,
                durability=self._durability,
            )
        else:
            write_opaque(
                path, version, body, dir_lock=self._layout.dir_lock, durability=self._durability
            )

    def _append(self, entry: IndexEntry, kind: int, version: int, data: bytes) -> None:
        """Append one record to ``entry``'s journal (one write; flushed in ``fsync`` mode)."""
        parts = encode_record(kind, version, data)
        created = append_records(
            self._layout.journal_path(entry.key),
            entry.journal_size,
            parts,
            sync=self._durability.fsync,
        )
        if created:
            entry.journal_size = len(JOURNAL_MAGIC)
            self._durability.directory(self._layout.session_dir(entry.key))
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
            entry.patches.append(PatchMeta(version, len(data)))
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
        for key in self._layout.keys_on_disk(pattern):
            keys.setdefault(str(key), key)
        deleted = 0
        for skey, key in sorted(keys.items()):
            with self._locked(skey):
                base = self._layout.base_path(key)
                # Base first: patches without a base are cleaned at start-up, whereas a base
                # without its patches would silently come back as an older object.
                if base.exists():
                    base.unlink()
                    deleted += 1
                self._layout.journal_path(key).unlink(missing_ok=True)
                shutil.rmtree(self._layout.deltas_dir(key), ignore_errors=True)
                with self._index_lock:
                    self._index.pop(skey, None)
                self._lru.drop(skey)
        self._layout.remove_empty_dirs(pattern)
        return deleted

    def close(self) -> None:
        """Release memory; everything acknowledged is already written."""
        self._lru = ObjectLRU(0)
        with self._index_lock:
            self._index.clear()
