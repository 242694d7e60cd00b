"""Our task cancellation, on two hops: client -> Frontend, and runtime -> instance.

Flame 0.6 cannot cancel one task (only closing the session cancels its pending tasks), so our
runtime serves two methods of its own, defined like RunTask (``_wire.fastpath``) with gRPC's
generic handlers over existing Flame messages, so they need no generated code (and a service
process, which serves only the second, never loads the Frontend's messages):

``/flame_agents.v1.Tasks/CancelTask`` (on the Frontend's port) takes Flame's ``GetTaskRequest``
(``task_id`` empty = every task of the session that has not ended) and streams one Flame ``Task``
per task concerned, as it is once the request is recorded: a Pending task is Cancelled at once;
a Running one is still Running (its instance was asked to stop it; it ends Cancelled when the
instance answers so, or when the runtime stops the instance after its grace period); a task
that had ended already is sent as it is. An unknown session or task is NOT_FOUND. A Flame
cluster answers UNIMPLEMENTED.

``/flame_agents.v1.Instance/CancelTask`` (on the instance's Unix socket) takes the shim's
``TaskContext`` (task id and session id, no input) and answers a Flame ``Result``:
``return_code`` 0 when the service will stop the task (its handler has ``on_task_cancel``), else
non-zero with the reason; flamepy's services answer UNIMPLEMENTED. Either of the latter tells
the runtime to stop the instance at once instead of waiting.

A task that ends because it was cancelled is reported by the service as a failure whose error
document names :data:`CANCELLED` (``_wire.failures``): our runtime ends the task Cancelled; a
Flame cluster ends it Failed with that text, and our client raises ``Cancelled`` for both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from flame_agents._wire.flame_v1 import shim_pb2, types_pb2

__all__ = [
    "CANCELLED",
    "CANCEL_TASK",
    "INSTANCE_CANCEL_TASK",
    "INSTANCE_SERVICE",
    "SERVICE",
    "add_instance_cancel",
    "add_to_server",
    "cancel_task_callable",
    "instance_cancel_callable",
]

SERVICE = "flame_agents.v1.Tasks"
CANCEL_TASK = f"/{SERVICE}/CancelTask"
INSTANCE_SERVICE = "flame_agents.v1.Instance"
INSTANCE_CANCEL_TASK = f"/{INSTANCE_SERVICE}/CancelTask"
CANCELLED = "Cancelled"
"""The class named by the error document of a task that was cancelled (``errors.Cancelled``)."""


def add_to_server(cancel_task: Callable[..., Any], server: Any) -> None:
    """Serve ``cancel_task`` (an async generator ``(request, context)``) as the Frontend's
    CancelTask on ``server``."""
    from flame_agents._wire.flame_v1 import frontend_pb2

    handler = grpc.unary_stream_rpc_method_handler(
        cancel_task,
        request_deserializer=frontend_pb2.GetTaskRequest.FromString,
        response_serializer=types_pb2.Task.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"CancelTask": handler}),)
    )


def cancel_task_callable(channel: grpc.Channel) -> Any:
    """The client-side CancelTask callable of ``channel`` (``callable(request, timeout=...)``,
    an iterator of ``Task``)."""
    from flame_agents._wire.flame_v1 import frontend_pb2

    return channel.unary_stream(
        CANCEL_TASK,
        request_serializer=frontend_pb2.GetTaskRequest.SerializeToString,
        response_deserializer=types_pb2.Task.FromString,
    )


def add_instance_cancel(cancel_task: Callable[..., Any], server: Any) -> None:
    """Serve ``cancel_task`` (``(request, context) -> Result``) as the instance's CancelTask."""
    handler = grpc.unary_unary_rpc_method_handler(
        cancel_task,
        request_deserializer=shim_pb2.TaskContext.FromString,
        response_serializer=types_pb2.Result.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(INSTANCE_SERVICE, {"CancelTask": handler}),)
    )


def instance_cancel_callable(channel: Any) -> Any:
    """The runtime-side callable of an instance's CancelTask (``channel``: a grpc.aio channel
    to its socket)."""
    return channel.unary_unary(
        INSTANCE_CANCEL_TASK,
        request_serializer=shim_pb2.TaskContext.SerializeToString,
        response_deserializer=types_pb2.Result.FromString,
    )
