"""The process-wide client-side cache of decoded objects, so unchanged objects are not
downloaded again: reads send the cached version and get "not modified" or only new patches.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_ENTRIES", "Cached", "LocalCache"]

MAX_ENTRIES = 1000
"""Entries kept (least recently used dropped first), as flamepy keeps."""

Deserializer = Callable[[Any, list[Any]], Any]


@dataclass
class Cached:
    """A decoded object: base, patches ``(version, value)`` and per-deserializer results."""

    version: int
    base: Any
    patches: list[tuple[int, Any]] = field(default_factory=list)
    materialized: dict[Any, Any] = field(default_factory=dict)

    def materialize(self, deserializer: Deserializer | None) -> Any:
        """The base (no deserializer) or ``deserializer(base, [patch values])``, memoized."""
        if deserializer is None:
            return self.base
        try:
            memo_key: Any = ("fn", hash(deserializer), deserializer)
        except TypeError:
            memo_key = ("id", id(deserializer))
        if memo_key not in self.materialized:
            self.materialized[memo_key] = deserializer(self.base, [v for _, v in self.patches])
        return self.materialized[memo_key]


class LocalCache:
    """LRU of :class:`Cached` keyed by ``(endpoint, key)``; thread-safe."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        self._items: OrderedDict[tuple[str, str], Cached] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, endpoint: str, key: str) -> Cached | None:
        """The cached object, marked recently used."""
        with self._lock:
            item = self._items.get((endpoint, key))
            if item is not None:
                self._items.move_to_end((endpoint, key))
            return item

    def put(self, endpoint: str, key: str, item: Cached) -> None:
        """Cache ``item``, dropping the least recently used beyond the limit."""
        with self._lock:
            self._items[(endpoint, key)] = item
            self._items.move_to_end((endpoint, key))
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def apply_patches(
        self, endpoint: str, key: str, since: int, version: int, patches: list[tuple[int, Any]]
    ) -> Cached | None:
        """Extend the cached object if it is still at ``since``; None means "fetch in full"."""
        with self._lock:
            item = self._items.get((endpoint, key))
            if item is None or item.version != since or version <= since:
                return None
            item.patches.extend(patches)
            item.version = version
            item.materialized.clear()
            self._items.move_to_end((endpoint, key))
            return item

    def remove(self, endpoint: str, key: str) -> None:
        """Forget one object."""
        with self._lock:
            self._items.pop((endpoint, key), None)

    def remove_matching(self, pattern: str) -> None:
        """Forget every object a delete pattern (key, ``app/session`` or ``app/*``) selects."""
        app, _, rest = pattern.partition("/")
        with self._lock:
            for endpoint, key in list(self._items):
                k_app, _, k_rest = key.partition("/")
                if k_app != app:
                    continue
                if rest == "*" or k_rest == rest or k_rest.startswith(rest + "/"):
                    del self._items[(endpoint, key)]

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()
