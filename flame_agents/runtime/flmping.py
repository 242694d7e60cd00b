"""The built-in ``flmping`` service: a no-op Instance shim that echoes each task's input.

Launched by the runtime as ``python -m flame_agents.runtime.flmping`` with
``FLAME_INSTANCE_ENDPOINT`` set; used to check that sessions, dispatch and instances work.
"""

from __future__ import annotations

import sys
from typing import Any

from flame_agents._wire import shim_pb2_grpc, types_pb2
from flame_agents.runtime._builtin_service import serve_instance

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
    return serve_instance("flmping", PingServicer())


if __name__ == "__main__":
    sys.exit(main())
