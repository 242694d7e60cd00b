"""A byte-bounded LRU of decoded cache objects, so server memory stays bounded.

Everything here is also on disk: an evicted object is simply read again on its next access.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import pyarrow as pa

__all__ = ["LoadedObject", "ObjectLRU"]


@dataclass
class LoadedObject:
    """A decoded object: its base (bytes or a native table) and its patches' data in order."""

    base: bytes | pa.Table
    patches: list[bytes] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Bytes this object holds in memory (approximately, for native tables)."""
        base = len(self.base) if isinstance(self.base, bytes) else int(self.base.nbytes)
        return base + sum(len(p) for p in self.patches)


class ObjectLRU:
    """Least-recently-used objects up to ``max_bytes``; an object larger than that is not kept."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._items: OrderedDict[str, LoadedObject] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._total = 0
        self._lock = threading.Lock()

    @property
    def total_bytes(self) -> int:
        """Bytes currently held."""
        return self._total

    def get(self, key: str) -> LoadedObject | None:
        """The object under ``key`` (marking it recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: str, item: LoadedObject) -> None:
        """Keep ``item`` under ``key``, evicting least-recently-used objects to fit."""
        size = item.size
        with self._lock:
            self._drop(key)
            if size > self._max:
                return
            self._items[key] = item
            self._sizes[key] = size
            self._total += size
            self._evict()

    def append_patch(self, key: str, data: bytes) -> None:
        """Append a patch to the cached object under ``key``, if it is cached."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return
            item.patches.append(data)
            self._sizes[key] += len(data)
            self._total += len(data)
            self._items.move_to_end(key)
            self._evict()

    def drop(self, key: str) -> None:
        """Forget ``key``."""
        with self._lock:
            self._drop(key)

    def _drop(self, key: str) -> None:
        if self._items.pop(key, None) is not None:
            self._total -= self._sizes.pop(key)

    def _evict(self) -> None:
        while self._total > self._max and self._items:
            key, _ = self._items.popitem(last=False)
            self._total -= self._sizes.pop(key)
