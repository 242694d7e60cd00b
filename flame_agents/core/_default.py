"""The process-wide default connection behind the module-level functions of ``core``.

It is created on first use from ``embedded.current_endpoints()`` (arguments/environment/
flame.yaml, or the embedded runtime), and re-created in a forked child because gRPC channels
must not cross ``fork()``.
"""

from __future__ import annotations

import os
import threading

from flame_agents import embedded
from flame_agents.core._connection import Connection

__all__ = ["connect", "default_connection", "reset_default_connection"]

_lock = threading.Lock()
_default: Connection | None = None
_default_pid: int | None = None


def connect(endpoint: str | None = None, *, cache_endpoint: str | None = None) -> Connection:
    """A new connection to ``endpoint``, or to the configured/embedded runtime when omitted.

    An explicit endpoint never starts the embedded runtime; without one, the endpoint comes from
    ``FLAME_ENDPOINT`` / ``~/.flame/flame.yaml``, or an embedded runtime is started or reused.
    """
    endpoints = embedded.current_endpoints(endpoint, cache_endpoint=cache_endpoint)
    return Connection.from_endpoints(endpoints)


def default_connection() -> Connection:
    """The shared connection of this process, created on first use."""
    global _default, _default_pid
    with _lock:
        if _default is not None and _default_pid != os.getpid():
            # Inherited across fork: unusable here, and closing it would hurt the parent.
            _default = None
        if _default is None or _default.closed:
            _default = connect()
            _default_pid = os.getpid()
        return _default


def reset_default_connection() -> None:
    """Close and forget the default connection; the next call reconnects (reads config anew)."""
    global _default, _default_pid
    with _lock:
        conn, pid = _default, _default_pid
        _default, _default_pid = None, None
    if conn is not None and pid == os.getpid():
        conn.close()
