"""The built-in ``flmping`` service: a no-op Instance shim that echoes each task's input.

Launched by the runtime as ``python -m flame_agents.runtime.flmping`` with
``FLAME_INSTANCE_ENDPOINT`` set; used to check that sessions, dispatch and instances work.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from flame_agents._wire import shim_pb2_grpc, types_pb2
from flame_agents._wire.proctitle import set_instance_title
from flame_agents._wire.ready import notify_ready

__all__ = ["PingServicer", "main"]


class PingServicer(shim_pb2_grpc.InstanceServicer):  # type: ignore[misc]
    """Accepts any session and returns every task's input unchanged."""

    def OnSessionEnter(self, request: Any, context: Any) -> types_pb2.Result:
        """Accept the session."""
        return types_pb2.Result(return_code=0)

    def OnTaskInvoke(self, request: Any, context: Any) -> types_pb2.TaskResult:
        """Echo the input."""
        result = types_pb2.TaskResult(return_code=0)
        if request.HasField("input"):
            result.output = request.input
        return result

    def OnSessionLeave(self, request: Any, context: Any) -> types_pb2.Result:
        """Nothing to clean up."""
        return types_pb2.Result(return_code=0)


def main() -> int:
    """Serve on ``$FLAME_INSTANCE_ENDPOINT`` until SIGTERM; remove the socket on exit."""
    path = os.environ.get("FLAME_INSTANCE_ENDPOINT")
    if not path:
        print("flmping: FLAME_INSTANCE_ENDPOINT is not set", file=sys.stderr)
        return 1
    # One worker: the runtime never invokes an instance concurrently.
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    shim_pb2_grpc.add_InstanceServicer_to_server(PingServicer(), server)
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
    server.stop(grace=1).wait()
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
