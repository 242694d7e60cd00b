"""Running a task over our RunTask fast path, with the plain Flame calls as the fallback.

:func:`start_task` submits a task and returns once the runtime has created it (so a closed
session or a bad input fails at once, as with CreateTask); :meth:`StartedTask.wait` then reads
the terminal task from the same stream. One call instead of CreateTask + WatchTask (see
``flame_agents._wire.fastpath``). When the stream breaks after the task was created (a
restarting runtime, a dropped connection), the wait continues with the plain watch by task id,
so a task is never submitted twice by this module. A Frontend without the fast path (a Flame
0.6 cluster) answers UNIMPLEMENTED once; the connection remembers it and callers use the plain
calls from then on. Ctrl-C while waiting cancels the stream and raises KeyboardInterrupt from
here, without gRPC's frames; Ctrl-C once the task exists asks the runtime to cancel it, even
before its first message was read (``invoke`` learns the id from the call's headers, which the
runtime sends at the task's creation; Ctrl-C again gives up on that).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import grpc

from flame_agents._wire import fastpath, frontend_pb2, types_pb2
from flame_agents._wire.convert import task_from_proto
from flame_agents._wire.errors import rpc_status
from flame_agents.core import _cancel, _tasks
from flame_agents.types import Task

if TYPE_CHECKING:
    from flame_agents.core._transport import Transport

__all__ = ["StartedTask", "start_task"]

_STREAM_BROKEN = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
"""Codes of a stream lost on the way (the task lives on), not of a refused call."""


class StartedTask:
    """A task created over RunTask; :meth:`wait` returns it in its terminal state."""

    def __init__(
        self,
        conn: Transport,
        task: Task,
        stream: Any,
        deadline: float | None,
        timeout: float | None,
    ) -> None:
        self.task = task
        """The task as first reported, without its input: Pending or Running, or already
        terminal when a quick invoke asked for the terminal task first."""
        self._conn = conn
        self._stream = stream
        self._deadline = deadline
        self._timeout = timeout

    def wait(self) -> Task:
        """Block until the task is terminal and return it (failed tasks carry their events)."""
        conn, task = self._conn, self.task
        fields = {"session_id": task.session_id, "task_id": task.id}
        try:
            if task.is_completed():  # the terminal task came first (a quick invoke)
                return task
            for message in self._stream:
                done = task_from_proto(message, session_id=task.session_id)
                if done.is_completed():
                    return done
        except grpc.RpcError as exc:
            code, _ = rpc_status(exc)
            if code == grpc.StatusCode.DEADLINE_EXCEEDED and self._deadline is not None:
                raise _tasks.timeout_error(self._timeout, **fields) from exc
            closed_by_us = code == grpc.StatusCode.CANCELLED and conn.closed
            if code not in _STREAM_BROKEN or closed_by_us:
                raise conn.error(exc, op="invoke", **fields) from exc
            # The stream broke, the task lives on: follow it by id below.
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None
        finally:
            self._stream.cancel()
            conn.untrack(self._stream)
        remaining = None if self._deadline is None else self._deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise _tasks.timeout_error(self._timeout, **fields)
        return _tasks.wait_task(conn, task.session_id, task.id, timeout=remaining)


def _cancel_unread(conn: Transport, session_id: str, stream: Any) -> None:
    """Ctrl-C before the created task was read: ask for its cancel, by the id the runtime sent
    in the call's headers (``_wire.fastpath.TASK_ID_HEADER``) at its creation."""
    try:
        task_id = fastpath.task_id_from(stream.initial_metadata())
    except (grpc.RpcError, KeyboardInterrupt):
        task_id = None  # no task, or Ctrl-C again: give up
    finally:
        stream.cancel()
        conn.untrack(stream)
    if task_id is not None:
        _cancel.cancel_quietly(conn, session_id, task_id)


def start_task(
    conn: Transport,
    session_id: str,
    input: bytes | None,
    *,
    timeout: float | None = None,
    terminal_first: bool = False,
) -> StartedTask | None:
    """Create a task over RunTask; None when the Frontend has no fast path (use the plain calls).

    ``timeout`` bounds the whole call, creation included (``None`` = wait as long as it takes).
    ``terminal_first``: a quick task's end may be the first (and only) message, so this returns
    later but the whole call is one message shorter (for callers that wait for the result).
    """
    if conn.fast_path is False:
        return None
    conn.check_open("invoke")
    deadline = None if timeout is None else time.monotonic() + timeout
    request = frontend_pb2.CreateTaskRequest(
        task=types_pb2.TaskSpec(session_id=session_id, input=input)
    )
    metadata = fastpath.TERMINAL_FIRST if terminal_first else None
    stream = conn.run_task(request, timeout=timeout, metadata=metadata)
    conn.track(stream)
    try:
        first = next(stream)
    except StopIteration:  # a Frontend that ends the call without a reply: not ours
        stream.cancel()
        conn.untrack(stream)
        conn.fast_path = False
        return None
    except grpc.RpcError as exc:
        conn.untrack(stream)
        code, _ = rpc_status(exc)
        if code == grpc.StatusCode.UNIMPLEMENTED:
            conn.fast_path = False
            return None
        raise conn.error(exc, op="invoke", session_id=session_id) from exc
    except KeyboardInterrupt:
        _cancel_unread(conn, session_id, stream)
        raise KeyboardInterrupt from None
    conn.fast_path = True
    return StartedTask(
        conn, task_from_proto(first, session_id=session_id), stream, deadline, timeout
    )
