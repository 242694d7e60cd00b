"""Waiting for a task's next change on the board, for the Frontend's streams.

WatchTask and RunTask (and nothing else) wait for tasks: each reads the task and registers for
its next change in one step (:func:`read_and_listen`), so no change is ever missed between the
read and the wait.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from flame_agents.runtime.sessions._board import TaskBoard
from flame_agents.runtime.sessions._checks import Ctx, abort, show
from flame_agents.runtime.sessions._rows import TaskRow
from flame_agents.types import TaskState

__all__ = ["read_and_listen", "until_terminal"]


async def until_terminal(
    board: TaskBoard, row: TaskRow, context: Ctx, *, timeout: float | None = None
) -> TaskRow:
    """The task once terminal, or as it is after ``timeout`` seconds.

    A Pending task of a session that starts no instances aborts the call (FAILED_PRECONDITION)
    with the reason: Flame keeps such a task Pending, our caller is told at once instead.
    """
    sid, tid = row.session_id, row.id
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        row, changed = await read_and_listen(board, sid, tid, context)
        if row.state.is_terminal:
            return row
        if row.state == TaskState.PENDING and (paused := board.paused_reason(sid)):
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"task {tid} stays Pending: its session {show(sid)} starts no instances. {paused}",
            )
        if deadline is None:
            await changed.wait()
            continue
        left = deadline - loop.time()
        if left <= 0:
            return row
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(changed.wait(), left)


async def read_and_listen(
    board: TaskBoard, sid: str, tid: int, context: Ctx
) -> tuple[TaskRow, asyncio.Event]:
    """The task as stored now, and an event set at its next change (NOT_FOUND if deleted).

    The event is registered *before* the read: a change that lands while the caller is
    suspended (a stream sending to a slow client) then sets it, instead of being missed and
    leaving the caller waiting forever.
    """
    changed = board.watch(sid, tid)
    row = board.get_task(sid, tid)
    if row is None:  # deleted under us
        await abort(context, grpc.StatusCode.NOT_FOUND, f"task {tid} was deleted")
    return row, changed
