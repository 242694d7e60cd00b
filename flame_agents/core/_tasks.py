"""Task operations: create, get, list, and watching a task to its end over WatchTask.

A watch never polls: it reads the server's WatchTask stream. Flame ends that stream without a
message in some cases (unknown task, internal error) and sends no snapshot for a task that is
still pending, so when a stream ends before a terminal state we ask GetTask once and, if the
task is still running, watch again after a short back-off. A waiter therefore never hangs
silently: it gets the terminal task, an error, or its timeout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import grpc

from flame_agents._logging import get_logger
from flame_agents._wire import frontend_pb2, types_pb2
from flame_agents._wire.convert import task_from_proto
from flame_agents._wire.errors import rpc_status
from flame_agents._wire.failures import is_cancellation, parse_failure
from flame_agents.errors import (
    Cancelled,
    FlameAgentsError,
    InstanceLostError,
    InvalidStateError,
    InvocationTimeoutError,
    LimitExceededError,
    TaskFailedError,
)
from flame_agents.types import Task, TaskState

if TYPE_CHECKING:
    from flame_agents.core._transport import Transport

__all__ = [
    "cancelled_error",
    "create_task",
    "failure_error",
    "get_task",
    "list_tasks",
    "result_of",
    "timeout_error",
    "wait_task",
    "watch_task",
]

_log = get_logger(__name__)

_BACKOFF_START = 0.05
_BACKOFF_MAX = 1.0
_pause = time.sleep
"""How the client waits between re-watches (a seam for tests that check the back-off)."""
_FAILED_EVENT = int(TaskState.FAILED)
_CANCELLED_EVENT = int(TaskState.CANCELLED)
_CANCELLED_PREFIXES = ("Task was cancelled: ", f"{Cancelled.__name__}: ")


def create_task(conn: Transport, session_id: str, input: bytes | None) -> Task:
    """Create a task in ``session_id`` with ``input``; it starts PENDING."""
    request = frontend_pb2.CreateTaskRequest(
        task=types_pb2.TaskSpec(session_id=session_id, input=input)
    )
    reply = conn.call("create_task", conn.stub.CreateTask, request, session_id=session_id)
    task = task_from_proto(reply, session_id=session_id)
    if task.input is None and input is not None:
        # Flame echoes the spec, but a minimal reply without it still describes our task.
        task = replace(task, input=input)
    return task


def get_task(conn: Transport, session_id: str, task_id: str) -> Task:
    """The current state of a task, with its events."""
    request = frontend_pb2.GetTaskRequest(task_id=task_id, session_id=session_id)
    reply = conn.call(
        "get_task", conn.stub.GetTask, request, session_id=session_id, task_id=task_id
    )
    return task_from_proto(reply, session_id=session_id)


def list_tasks(conn: Transport, session_id: str) -> list[Task]:
    """Every task of a session (order as the server streams them)."""
    request = frontend_pb2.ListTaskRequest(session_id=session_id)
    conn.check_open("list_tasks")
    stream = conn.stub.ListTask(request, timeout=conn.rpc_timeout)
    conn.track(stream)
    try:
        return [task_from_proto(msg, session_id=session_id) for msg in stream]
    except grpc.RpcError as exc:
        raise conn.error(exc, op="list_tasks", session_id=session_id) from exc
    finally:
        conn.untrack(stream)


def watch_task(
    conn: Transport, session_id: str, task_id: str, *, timeout: float | None = None
) -> Iterator[Task]:
    """Yield each new state of a task until (and including) its terminal state.

    Raises :class:`InvocationTimeoutError` when ``timeout`` seconds pass first. Closing the
    iterator early cancels the underlying stream.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    backoff = _BACKOFF_START
    last_state: TaskState | None = None
    fields = {"session_id": session_id, "task_id": task_id}
    while True:
        remaining = _remaining(deadline, timeout, **fields)
        request = frontend_pb2.WatchTaskRequest(task_id=task_id, session_id=session_id)
        conn.check_open("watch_task")
        stream = conn.stub.WatchTask(request, timeout=remaining)
        conn.track(stream)
        try:
            for message in stream:
                task = task_from_proto(message, session_id=session_id)
                last_state = task.state
                backoff = _BACKOFF_START
                yield task
                if task.is_completed():
                    return
        except grpc.RpcError as exc:
            code, _ = rpc_status(exc)
            if code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                raise timeout_error(timeout, **fields) from exc
            if code != grpc.StatusCode.UNAVAILABLE:
                raise conn.error(exc, op="watch_task", **fields) from exc
            # UNAVAILABLE mid-stream: the GetTask below tells a lost stream from a lost runtime.
        except KeyboardInterrupt:
            # Ctrl-C while waiting: the stream is cancelled below; no gRPC frames in the trace.
            raise KeyboardInterrupt from None
        finally:
            stream.cancel()
            conn.untrack(stream)
        # The stream ended without a terminal task: ask directly instead of hanging.
        _remaining(deadline, timeout, **fields)
        task = get_task(conn, session_id, task_id)
        if task.state != last_state:
            last_state = task.state
            yield task
        if task.is_completed():
            return
        _log.debug("watch_ended_early", session_id=session_id, task_id=task_id, state=task.state)
        pause = backoff if deadline is None else min(backoff, max(deadline - time.monotonic(), 0))
        _pause(pause)
        backoff = min(backoff * 2, _BACKOFF_MAX)


def wait_task(
    conn: Transport, session_id: str, task_id: str, *, timeout: float | None = None
) -> Task:
    """Block until the task is terminal and return it (with its failure events, if failed)."""
    updates = list(watch_task(conn, session_id, task_id, timeout=timeout))
    task = updates[-1]  # watch_task yields the terminal task last, or raises
    if task.is_failed() and not any(e.code == _FAILED_EVENT for e in task.events):
        # Flame's watch messages usually carry no events; GetTask has the service's error text.
        task = get_task(conn, session_id, task_id)
    return task


def result_of(task: Task) -> bytes | None:
    """The output of a terminal task, or the error its state calls for."""
    if task.state == TaskState.SUCCEED:
        return task.output
    if task.state == TaskState.FAILED:
        raise failure_error(task)
    if task.state == TaskState.CANCELLED:
        raise cancelled_error(task)
    raise InvalidStateError(
        f"task {task.id} of session {task.session_id} is not finished ({task.state.name})",
        task_id=task.id,
        session_id=task.session_id,
    )


def failure_error(task: Task) -> FlameAgentsError:
    """The error of a failed task: :class:`TaskFailedError` with the service's error text.

    Its ``remote_type``, ``remote_traceback`` and ``remote_fields`` fields hold the class, the
    innermost frames and the fields of the service's exception when the message names them (our
    services do, see ``flame_agents._wire.failures``). A reply or request over the runtime's
    message limit raises :class:`LimitExceededError` instead, with the remote fields: the handler
    is not run again, so no retry can help. A task the runtime gave up on because its instance
    kept dying (``--max-task-attempts``) raises :class:`InstanceLostError`, which is retryable.
    """
    text = task.error_message() or "task failed without an error message"
    if is_cancellation(text):  # a Flame cluster ends a cancelled task Failed with this text
        return cancelled_error(task, text)
    remote = parse_failure(text)
    message = remote.message
    fields = {
        "task_id": task.id,
        "session_id": task.session_id,
        "remote_type": remote.type,
        "remote_traceback": remote.traceback,
    }
    if remote.type == LimitExceededError.__name__:
        return LimitExceededError(message.partition(": ")[2], **{**remote.fields, **fields})
    if remote.type == InstanceLostError.__name__ and remote.traceback is None:
        # The runtime's own failure (no service frames): the task's instances kept dying.
        return InstanceLostError(message.partition(": ")[2], **fields)
    return TaskFailedError(message, remote_fields=remote.fields, **fields)


def cancelled_error(task: Task, text: str | None = None) -> Cancelled:
    """The error of a cancelled task (``session_id``, ``task_id`` and ``reason`` fields).

    ``text``: the failure text that reports the cancel (a Flame cluster's Failed task); by
    default the task's cancel event, if it has one.
    """
    if text is None:
        text = next((e.message for e in reversed(task.events) if e.code == _CANCELLED_EVENT), "")
    reason = _cancel_reason(text) if text else "its session was closed before the task ran"
    return Cancelled(
        f"task {task.id} of session {task.session_id} was cancelled: {reason}",
        session_id=task.session_id,
        task_id=task.id,
        reason=reason,
    )


def _cancel_reason(text: str) -> str:
    """The why of a cancel event or failure text, without its class prefix, frames or document."""
    line = parse_failure(text).message.split("\n", 1)[0]
    for prefix in _CANCELLED_PREFIXES:
        if line.startswith(prefix):
            return line[len(prefix) :]
    return line


def _remaining(deadline: float | None, timeout: float | None, **fields: Any) -> float | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise timeout_error(timeout, **fields)
    return remaining


def timeout_error(timeout: float | None, **fields: Any) -> InvocationTimeoutError:
    """The error of a wait that ran out of time (fields: ``session_id``, ``task_id``)."""
    return InvocationTimeoutError(
        f"task {fields['task_id']} of session {fields['session_id']} did not finish within "
        f"{timeout} s (it keeps running; wait again with get_task/watch_task)",
        timeout=timeout,
        **fields,
    )
