"""The published flamepy 0.6.0 client, pointed at our runtime, doing the same calls as ours.

flamepy keeps process-wide singletons (its connection, its config context, its pool of Flight
clients), created from FLAME_ENDPOINT / FLAME_CACHE_ENDPOINT on first use. :func:`load` drops
them so flamepy talks to the runtime of this run even if something in the process used it
before. Imported by name: flamepy is only in the dev extra and ships no type hints.
"""

from __future__ import annotations

import contextlib
import importlib
from types import ModuleType
from typing import Any

__all__ = ["load", "reset"]


def reset() -> None:
    """Forget flamepy's cached connection, config and Flight clients (it re-reads the env)."""
    client: Any = importlib.import_module("flamepy.core.client")
    cache: Any = importlib.import_module("flamepy.core.cache")
    with client.ConnectionInstance._lock:
        conn = client.ConnectionInstance._connection
        client.ConnectionInstance._connection = None
        client.ConnectionInstance._context = None
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()
    with cache._client_pool_lock:
        for flight_client in cache._client_pool.values():
            with contextlib.suppress(Exception):
                flight_client.close()
        cache._client_pool.clear()
    cache._context_cache = None


def load() -> ModuleType | None:
    """``flamepy`` reset to the current environment, or None when it is not installed."""
    try:
        flamepy = importlib.import_module("flamepy")
        importlib.import_module("flamepy.service")
    except ImportError:
        return None
    reset()
    return flamepy
