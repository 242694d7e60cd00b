"""How a built-in application's instance serves: a gRPC Instance shim on its Unix socket.

The runtime launches ``flmping`` and ``flmexec`` as ``python -m flame_agents.runtime.<name>``
with ``FLAME_INSTANCE_ENDPOINT`` naming the socket. :func:`serve_instance` binds it (removing a
stale socket first), tells the launcher it is ready, serves until SIGTERM or SIGINT, and
removes the socket on the way out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from flame_agents._wire import shim_pb2_grpc
from flame_agents._wire.proctitle import set_instance_title
from flame_agents._wire.ready import notify_ready

__all__ = ["serve_instance"]


def serve_instance(
    name: str,
    servicer: Any,
    *,
    options: Sequence[tuple[str, Any]] = (),
    on_stop: Callable[[], None] | None = None,
) -> int:
    """Serve ``servicer`` on ``$FLAME_INSTANCE_ENDPOINT`` until SIGTERM; remove the socket on
    exit. ``on_stop`` runs when the signal came, before the server stops. Returns the exit
    status (1, with a line on stderr, when the variable is not set)."""
    path = os.environ.get("FLAME_INSTANCE_ENDPOINT")
    if not path:
        print(f"{name}: FLAME_INSTANCE_ENDPOINT is not set", file=sys.stderr)
        return 1
    # One worker: the runtime never invokes an instance concurrently.
    server = grpc.server(ThreadPoolExecutor(max_workers=1), options=list(options) or None)
    shim_pb2_grpc.add_InstanceServicer_to_server(servicer, server)
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()
    server.add_insecure_port(f"unix:{path}")
    server.start()
    notify_ready()
    set_instance_title()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    if on_stop is not None:
        on_stop()
    server.stop(grace=1).wait()
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()
    return 0
