"""Our task fast path, served next to Flame's Frontend on the same port.

``/flame_agents.v1.Tasks/RunTask`` takes Flame's ``CreateTaskRequest`` and streams Flame ``Task``
messages: first the created task (id and state, no input echo), then the terminal task (output,
and events only when it failed). One call replaces CreateTask + WatchTask, and the input travels
once instead of three times.

A Flame 0.6 cluster has no such service and answers UNIMPLEMENTED: our client then remembers
that for the connection and uses the plain Frontend calls. The method is defined with gRPC's
generic handlers over the existing Flame messages, so it needs no generated code of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from flame_agents._wire.flame_v1 import frontend_pb2, types_pb2

__all__ = ["RUN_TASK", "SERVICE", "add_to_server", "run_task_callable"]

SERVICE = "flame_agents.v1.Tasks"
RUN_TASK = f"/{SERVICE}/RunTask"


def add_to_server(run_task: Callable[..., Any], server: Any) -> None:
    """Serve ``run_task`` (an async generator ``(request, context)``) as RunTask on ``server``."""
    handler = grpc.unary_stream_rpc_method_handler(
        run_task,
        request_deserializer=frontend_pb2.CreateTaskRequest.FromString,
        response_serializer=types_pb2.Task.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"RunTask": handler}),)
    )


def run_task_callable(channel: grpc.Channel) -> Any:
    """The client-side RunTask callable of ``channel`` (``callable(request, timeout=...)``)."""
    return channel.unary_stream(
        RUN_TASK,
        request_serializer=frontend_pb2.CreateTaskRequest.SerializeToString,
        response_deserializer=types_pb2.Task.FromString,
    )
