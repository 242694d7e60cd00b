"""Our task fast path, served next to Flame's Frontend on the same port.

``/flame_agents.v1.Tasks/RunTask`` takes Flame's ``CreateTaskRequest`` and streams Flame ``Task``
messages: first the created task (id and state, no input echo), then the terminal task (output,
and events only when it failed). One call replaces CreateTask + WatchTask, and the input travels
once instead of three times. A caller that sends the metadata ``TERMINAL_FIRST`` gets only the
terminal task when the task ends within ``TERMINAL_FIRST_WAIT`` (half its remaining deadline at
most): one message instead of two for quick tasks; a slower task's first message is the task as
it is when that wait ends (Pending or Running). ``invoke()`` asks for it; ``run()`` does not,
since it returns as soon as the task exists. Such a call gets the created task's id at once in
its headers (:data:`TASK_ID_HEADER`), so a caller interrupted during that wait can cancel it.

A Flame 0.6 cluster has no such service and answers UNIMPLEMENTED: our client then remembers
that for the connection and uses the plain Frontend calls. The method is defined with gRPC's
generic handlers over the existing Flame messages, so it needs no generated code of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from flame_agents._wire.flame_v1 import frontend_pb2, types_pb2

__all__ = [
    "RUN_TASK",
    "SERVICE",
    "TASK_ID_HEADER",
    "TERMINAL_FIRST",
    "TERMINAL_FIRST_WAIT",
    "add_to_server",
    "run_task_callable",
    "task_id_from",
    "task_id_metadata",
    "wants_terminal_first",
]

SERVICE = "flame_agents.v1.Tasks"
RUN_TASK = f"/{SERVICE}/RunTask"
TERMINAL_FIRST = (("flame-agents-reply", "terminal-first"),)
"""Call metadata asking RunTask to skip the created message for a quick task."""
TERMINAL_FIRST_WAIT = 0.05
"""Seconds RunTask waits for the terminal state before sending the created task anyway."""


TASK_ID_HEADER = "flame-agents-task-id"
"""Initial metadata of a RunTask that asked for the terminal task first: the created task's
id, sent at once (before the wait), so a caller interrupted before the first message (Ctrl-C)
can still cancel the task."""


def task_id_metadata(task_id: int) -> tuple[tuple[str, str], ...]:
    """The initial metadata naming the created task."""
    return ((TASK_ID_HEADER, str(task_id)),)


def task_id_from(metadata: Any) -> str | None:
    """The task id in a RunTask's initial metadata, or None (not sent)."""
    return next((str(value) for key, value in metadata or () if key == TASK_ID_HEADER), None)


def wants_terminal_first(metadata: Any) -> bool:
    """Whether the call's metadata carries :data:`TERMINAL_FIRST`."""
    return any((key, value) == TERMINAL_FIRST[0] for key, value in metadata or ())


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
