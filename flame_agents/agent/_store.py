"""Where state objects live: the store protocol, the object-cache store and an in-memory one.

The agent layer needs these operations from a store: create an object, fetch it (optionally only
what changed since a version), append a patch and replace the base *conditionally* on the
current version, write/read the immutable history chunks, and delete an object that no session
will ever reference. :class:`CacheStore` maps them to the object cache's raw API;
:class:`MemoryStore` keeps them in a dict for tests and in-process runs, with exactly the same
version arithmetic.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from flame_agents.cache import ObjectRef, delete_objects, fetch_raw, patch_raw, put_raw, update_raw
from flame_agents.errors import CommitConflictError, ObjectNotFoundError

__all__ = ["CacheStore", "Fetched", "MemoryStore", "StateStore"]


@dataclass
class Fetched:
    """A fetch answer: ``base`` is None when only patches after ``since_version`` came back."""

    version: int
    base: bytes | None
    base_version: int
    patches: list[tuple[int, bytes]]


class StateStore(Protocol):
    """The operations a journal needs (versions follow the Flame object cache's arithmetic)."""

    def create(self, prefix: str, data: bytes) -> str:
        """Store a new object under ``prefix`` (``<app>/<session>``); returns its key (v1)."""
        ...

    def fetch(self, key: str, *, since_version: int = 0) -> Fetched:
        """The object, or only its patches after ``since_version`` when the store can tell."""
        ...

    def append(self, key: str, data: bytes, *, expected_version: int) -> int:
        """Append a patch iff the version is ``expected_version``; returns the new version."""
        ...

    def replace(self, key: str, data: bytes, *, expected_version: int) -> int:
        """Replace the base (dropping patches) iff the version is ``expected_version``."""
        ...

    def write(self, key: str, data: bytes) -> None:
        """Store ``data`` under the full ``key`` unconditionally (immutable history chunks)."""
        ...

    def read(self, key: str) -> bytes:
        """The base bytes stored under ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Delete the object at ``key`` (nothing happens when there is none)."""
        ...


@dataclass
class _Object:
    base: bytes
    base_version: int
    patches: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def version(self) -> int:
        return self.patches[-1][0] if self.patches else self.base_version


class MemoryStore:
    """A thread-safe in-process :class:`StateStore` that counts the bytes written to it."""

    def __init__(self) -> None:
        self._objects: dict[str, _Object] = {}
        self._lock = threading.Lock()
        self._ids = 0
        #: Total bytes of every base, patch and chunk written (for O(change) assertions).
        self.bytes_written = 0
        #: Size of each patch in write order.
        self.patch_sizes: list[int] = []

    def create(self, prefix: str, data: bytes) -> str:
        with self._lock:
            self._ids += 1
            key = f"{prefix}/state-{self._ids}"
            self._objects[key] = _Object(data, 1)
            self.bytes_written += len(data)
            return key

    def _get(self, key: str) -> _Object:
        obj = self._objects.get(key)
        if obj is None:
            raise ObjectNotFoundError(f"object {key} not found", key=key)
        return obj

    def fetch(self, key: str, *, since_version: int = 0) -> Fetched:
        with self._lock:
            obj = self._get(key)
            if since_version > 0 and obj.base_version <= since_version <= obj.version:
                patches = [(v, d) for v, d in obj.patches if v > since_version]
                return Fetched(obj.version, None, obj.base_version, patches)
            return Fetched(obj.version, obj.base, obj.base_version, list(obj.patches))

    def _check(self, key: str, obj: _Object, expected_version: int) -> None:
        if obj.version != expected_version:
            raise CommitConflictError(
                f"version conflict on {key}: expected {expected_version}, found {obj.version}",
                key=key,
                expected_version=expected_version,
                version=obj.version,
            )

    def append(self, key: str, data: bytes, *, expected_version: int) -> int:
        with self._lock:
            obj = self._get(key)
            self._check(key, obj, expected_version)
            obj.patches.append((obj.version + 1, data))
            self.bytes_written += len(data)
            self.patch_sizes.append(len(data))
            return obj.version

    def replace(self, key: str, data: bytes, *, expected_version: int) -> int:
        with self._lock:
            obj = self._get(key)
            self._check(key, obj, expected_version)
            self._objects[key] = _Object(data, obj.version + 1)
            self.bytes_written += len(data)
            return obj.version + 1

    def write(self, key: str, data: bytes) -> None:
        with self._lock:
            old = self._objects.get(key)
            self._objects[key] = _Object(data, old.version + 1 if old else 1)
            self.bytes_written += len(data)

    def read(self, key: str) -> bytes:
        with self._lock:
            return self._get(key).base

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)

    def patch_count(self, key: str) -> int:
        """Patches currently stored on ``key`` (after the last compaction)."""
        with self._lock:
            return len(self._get(key).patches)


class CacheStore:
    """A :class:`StateStore` over the object cache's raw API at ``endpoint``."""

    def __init__(self, endpoint: str | None = None) -> None:
        self.endpoint = endpoint

    def _ref(self, key: str, version: int = 0) -> ObjectRef:
        if self.endpoint is None:
            raise ValueError("CacheStore needs an endpoint for this operation")
        return ObjectRef(self.endpoint, key, version)

    def create(self, prefix: str, data: bytes) -> str:
        ref = put_raw(prefix, data, endpoint=self.endpoint)
        # Every later call must go to the endpoint the cache advertises, as flamepy does.
        self.endpoint = ref.endpoint
        key: str = ref.key
        return key

    def fetch(self, key: str, *, since_version: int = 0) -> Fetched:
        raw = fetch_raw(self._ref(key), since_version=since_version)
        return Fetched(raw.version, raw.base, raw.base_version, list(raw.patches))

    def append(self, key: str, data: bytes, *, expected_version: int) -> int:
        ref = patch_raw(self._ref(key, expected_version), data, expected_version=expected_version)
        version: int = ref.version
        return version

    def replace(self, key: str, data: bytes, *, expected_version: int) -> int:
        ref = update_raw(self._ref(key, expected_version), data, expected_version=expected_version)
        version: int = ref.version
        return version

    def write(self, key: str, data: bytes) -> None:
        put_raw(key, data, endpoint=self.endpoint)

    def read(self, key: str) -> bytes:
        raw = self.fetch(key)
        if raw.base is None:
            raise ObjectNotFoundError(f"object {key} has no base", key=key)
        return raw.base

    def delete(self, key: str) -> None:
        delete_objects(key, endpoint=self.endpoint)
