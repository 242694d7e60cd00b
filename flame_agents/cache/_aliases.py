"""Old cache addresses in object refs: which current cache an earlier endpoint now means.

A ref names the endpoint of the cache that stored its object. When the embedded runtime restarts
on other ports, refs made before (held by a client, stored in a task's output) name an address
nobody serves, or that another server took. On such a failure the client asks the cache it is
configured with for that cache's earlier endpoints (``_wire.cache.aliases``); if the ref's endpoint
is one of them, the call goes to the current cache, now and for the rest of the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pyarrow as pa
import pyarrow.flight as flight

from flame_agents._logging import get_logger
from flame_agents._wire.cache.aliases import FORMER_ENDPOINTS_ACTION, decode_former

__all__ = ["forget", "learn", "resolve"]

_log = get_logger(__name__)
_table: dict[str, str] = {}
_lock = threading.Lock()


def resolve(endpoint: str) -> str:
    """The endpoint to dial for a ref naming ``endpoint``."""
    return _table.get(endpoint, endpoint)


def forget() -> None:
    """Drop every learned alias (with the pooled clients, e.g. after a runtime restart)."""
    with _lock:
        _table.clear()


def learn(stale: str, ask: Callable[[str, flight.Action], list[bytes]]) -> str | None:
    """The current cache's endpoint if ``stale`` is one of its earlier ones, else None.

    ``ask(endpoint, action)`` runs a Flight action and returns its result bodies. The configured
    cache (environment, flame.yaml, or the embedded runtime's ``runtime.json``) is resolved
    afresh, so a restart since the last call is seen.
    """
    from flame_agents.embedded import current_endpoints

    try:
        current = current_endpoints().cache_endpoint
    except Exception:  # nothing reachable to ask: keep the original failure
        return None
    if current == stale:
        return None
    try:
        bodies = ask(current, flight.Action(FORMER_ENDPOINTS_ACTION, b""))
    except (pa.ArrowException, OSError):
        return None  # a Flame cache (no such action) or no cache at all: no aliases
    former = decode_former(bodies[0]) if bodies else ()
    if stale not in former:
        return None
    with _lock:
        for endpoint in former:
            _table[endpoint] = current
    _log.info("object ref names an earlier address of the cache", stale=stale, current=current)
    return current
