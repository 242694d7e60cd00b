"""Cancelling tasks over our runtime's CancelTask (``_wire.cancel``), and waits that cancel.

:func:`cancel_tasks` asks the runtime to cancel one task, or each task of a session that has not
ended: a Pending task ends Cancelled at once, a Running one once its service has stopped it (or
the runtime has stopped its instance, after a grace period); with ``wait`` the call returns the
tasks in their terminal states. A task that finished before the cancel reached it keeps its
result.

A Flame 0.6 cluster has no such call (UNIMPLEMENTED): the connection remembers it and every
cancel raises :class:`~flame_agents.errors.InvalidStateError` naming the limitation (its field
``grpc_code`` is ``"UNIMPLEMENTED"``); Flame cancels only the pending tasks of a session it closes.

:func:`wait_or_cancel` is how ``invoke`` waits: a timeout with ``cancel_on_timeout`` cancels the
task before the caller hears of it, and Ctrl-C asks for the cancel (without waiting for it)
before the KeyboardInterrupt goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from flame_agents._logging import get_logger
from flame_agents._wire import frontend_pb2
from flame_agents._wire.convert import task_from_proto
from flame_agents._wire.errors import rpc_status
from flame_agents.core import _tasks
from flame_agents.errors import FlameAgentsError, InvalidStateError, InvocationTimeoutError
from flame_agents.types import Task

if TYPE_CHECKING:
    from flame_agents.core._transport import Transport

__all__ = ["cancel_quietly", "cancel_tasks", "wait_or_cancel"]

_log = get_logger(__name__)


def cancel_tasks(
    conn: Transport,
    session_id: str,
    task_id: str | None,
    *,
    wait: bool = True,
    timeout: float | None = None,
) -> list[Task]:
    """Cancel task ``task_id`` of ``session_id`` (None: each task of it that has not ended).

    Returns the tasks concerned: as they were once the request was recorded, or with ``wait``
    in their terminal states (waiting at most ``timeout`` seconds in all, then
    InvocationTimeoutError). NotFoundError for an unknown session or task; InvalidStateError
    on a Frontend without task cancellation (a Flame cluster).
    """
    fields = (
        {"session_id": session_id}
        if task_id is None
        else {
            "session_id": session_id,
            "task_id": task_id,
        }
    )
    conn.check_open("cancel_task")
    if conn.cancel_supported is False:
        raise _unsupported(conn, **fields)
    deadline = None if timeout is None else time.monotonic() + timeout
    request = frontend_pb2.GetTaskRequest(session_id=session_id, task_id=task_id or "")
    stream = conn.cancel_task_rpc(request, timeout=conn.rpc_timeout)
    conn.track(stream)
    try:
        tasks = [task_from_proto(message, session_id=session_id) for message in stream]
    except grpc.RpcError as exc:
        if rpc_status(exc)[0] == grpc.StatusCode.UNIMPLEMENTED:
            conn.cancel_supported = False
            raise _unsupported(conn, **fields) from exc
        raise conn.error(exc, op="cancel_task", **fields) from exc
    except KeyboardInterrupt:
        stream.cancel()
        raise KeyboardInterrupt from None
    finally:
        conn.untrack(stream)
    conn.cancel_supported = True
    if not wait:
        return tasks
    done = []
    for task in tasks:
        if not task.is_completed():
            left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            task = _tasks.wait_task(conn, session_id, task.id, timeout=left)
        done.append(task)
    return done


def _unsupported(conn: Transport, **fields: str) -> InvalidStateError:
    return InvalidStateError(
        f"cancel_task: the Frontend at {conn.endpoint} cannot cancel a task (a Flame 0.6 "
        "cluster has no such call; it cancels only the pending tasks of a session it closes). "
        "Task cancellation needs the flame-agents runtime; on Flame, close the session instead",
        grpc_code=grpc.StatusCode.UNIMPLEMENTED.name,
        endpoint=conn.endpoint,
        **fields,
    )


def wait_or_cancel(
    conn: Transport,
    session_id: str,
    task_id: str,
    wait: Callable[[], Task],
    *,
    cancel_on_timeout: bool = False,
) -> Task:
    """``wait()`` for the task to end; on its timeout (with ``cancel_on_timeout``) cancel the
    task and return it as it ended, and on Ctrl-C ask for its cancel before re-raising."""
    try:
        return wait()
    except InvocationTimeoutError as timed_out:
        if not cancel_on_timeout:
            raise
        try:
            done = cancel_tasks(conn, session_id, task_id, timeout=conn.rpc_timeout)
        except FlameAgentsError as exc:  # a Flame cluster: the cancel is what failed
            raise exc from timed_out
        if not done:  # the session was deleted under us
            raise
        return done[0]
    except KeyboardInterrupt:
        cancel_quietly(conn, session_id, task_id)
        raise


def cancel_quietly(conn: Transport, session_id: str, task_id: str) -> None:
    """Ask for the cancel of a task on the way out of a Ctrl-C: without waiting for it, and
    without an error of its own (a failure is logged; Ctrl-C again stops asking)."""
    try:
        cancel_tasks(conn, session_id, task_id, wait=False)
    except FlameAgentsError as exc:
        _log.warning("cancel_failed", session_id=session_id, task_id=task_id, error=str(exc))
    except KeyboardInterrupt:
        pass
