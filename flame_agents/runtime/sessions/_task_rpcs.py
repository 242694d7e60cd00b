"""The task RPCs of the ``flame.v1.Frontend`` servicer: CreateTask, GetTask, WatchTask and
ListTask, and our RunTask and CancelTask (``_wire.fastpath``, ``_wire.cancel``).

Tasks are the :class:`~._board.TaskBoard`'s: these RPCs ask it to create and cancel tasks, and
read them through it. WatchTask sends the task on every state change and always ends with a
terminal task (at once when it already is terminal); each message carries the task's events, so
a failed task shows the service's error text (event code 3). An unknown session or task is
NOT_FOUND (WatchTask included, instead of a silent end), a non-numeric task id
INVALID_ARGUMENT, CreateTask in a closed session FAILED_PRECONDITION.

:class:`TaskRpcs` is a base of :class:`~._frontend.FrontendServicer`, which serves the session,
application and node RPCs; it also holds the session and task look-ups both use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio

from flame_agents._wire import fastpath, frontend_pb2, types_pb2
from flame_agents.runtime.sessions import _protos
from flame_agents.runtime.sessions._board import TaskBoard
from flame_agents.runtime.sessions._cancel import CANCELLED_PENDING
from flame_agents.runtime.sessions._checks import Ctx, abort, show, task_number
from flame_agents.runtime.sessions._rows import SessionRow, TaskRow
from flame_agents.runtime.sessions._waits import read_and_listen, until_terminal
from flame_agents.types import SessionState, TaskState

__all__ = ["TaskRpcs"]


class TaskRpcs:
    """The Frontend's task RPCs over the board (the servicer sets ``_board``)."""

    _board: TaskBoard

    # -- look-ups ---------------------------------------------------------------------------

    async def _session(self, sid: str, ctx: Ctx) -> SessionRow:
        row = self._board.get_session(sid)
        if row is None:
            await abort(ctx, grpc.StatusCode.NOT_FOUND, f"session {show(sid)} not found")
        return row

    async def _task(self, sid: str, task_id: str, ctx: Ctx) -> TaskRow:
        tid = task_number(task_id)
        if tid is None:
            await abort(
                ctx,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid task id {show(task_id)}: expected a decimal number (a 64-bit integer)",
            )
        await self._session(sid, ctx)
        row = self._board.get_task(sid, tid)
        if row is None:
            await abort(
                ctx,
                grpc.StatusCode.NOT_FOUND,
                f"task {show(task_id)} of session {show(sid)} not found",
            )
        return row

    def _task_msg(self, row: TaskRow) -> types_pb2.Task:
        return _protos.task(row, self._board.task_events(row.session_id, row.id))

    # -- tasks ------------------------------------------------------------------------------

    async def CreateTask(
        self, request: frontend_pb2.CreateTaskRequest, context: Ctx
    ) -> types_pb2.Task:
        """Add a pending task to an open session and dispatch it at once."""
        return self._task_msg(await self._create_task(request, context))

    async def RunTask(
        self, request: frontend_pb2.CreateTaskRequest, context: Ctx
    ) -> AsyncIterator[types_pb2.Task]:
        """Our fast path (not Flame's): CreateTask, then the terminal task, in one stream.

        The first message is the created task without its input; the second the terminal task
        with its output, and its events only when it failed (see ``_wire.fastpath``). A caller
        that asks for the terminal task first gets a quick task's end as the only message.
        """
        row = await self._create_task(request, context)
        sid, tid = row.session_id, row.id
        if fastpath.wants_terminal_first(context.invocation_metadata()):
            # The id at once, in the headers: a caller interrupted before it read the first
            # message (Ctrl-C) still learns which task to cancel. A call that breaks leaves the
            # task running (a runtime restart, a lost connection: the client follows it by id).
            await context.send_initial_metadata(fastpath.task_id_metadata(tid))
            remaining = context.time_remaining()
            wait = fastpath.TERMINAL_FIRST_WAIT
            if remaining is not None:
                wait = min(wait, remaining / 2)  # leave the caller time to learn the task id
            row = await until_terminal(self._board, row, context, timeout=wait)
        if not row.state.is_terminal:
            yield _protos.task(row, [], with_input=False)
            row = await until_terminal(self._board, row, context)
        events = self._board.task_events(sid, tid) if row.state != TaskState.SUCCEED else []
        yield _protos.task(row, events, with_input=False)

    async def CancelTask(
        self, request: frontend_pb2.GetTaskRequest, context: Ctx
    ) -> AsyncIterator[types_pb2.Task]:
        """Our extension (not Flame's): cancel one task or, with no task id, each task of the
        session that has not ended; streams the tasks concerned as they are once the request is
        recorded (Pending ones are Cancelled, Running ones end later; see ``_wire.cancel``)."""
        sid = request.session_id
        tid: int | None = None
        if request.task_id:
            tid = (await self._task(sid, request.task_id, context)).id
        else:
            await self._session(sid, context)
        for row in self._board.cancel_tasks(sid, tid, message=CANCELLED_PENDING):
            events = self._board.task_events(sid, row.id)
            yield _protos.task(row, events, with_input=False)

    async def _create_task(self, request: frontend_pb2.CreateTaskRequest, context: Ctx) -> TaskRow:
        if not request.HasField("task"):
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "task spec is required")
        sid = request.task.session_id
        row = await self._session(sid, context)
        if row.state != SessionState.OPEN:
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Cannot create task in closed session {show(sid)}",
            )
        data = request.task.input if request.task.HasField("input") else None
        return self._board.create_task(sid, data)

    async def GetTask(self, request: frontend_pb2.GetTaskRequest, context: Ctx) -> types_pb2.Task:
        """One task with input, output and events."""
        return self._task_msg(await self._task(request.session_id, request.task_id, context))

    async def WatchTask(
        self, request: frontend_pb2.WatchTaskRequest, context: Ctx
    ) -> AsyncIterator[types_pb2.Task]:
        """Stream state changes; always ends with the terminal task."""
        row = await self._task(request.session_id, request.task_id, context)
        sid, tid = row.session_id, row.id
        last = row.state
        while not row.state.is_terminal:
            row, changed = await read_and_listen(self._board, sid, tid, context)
            if row.state.is_terminal:
                break
            if row.state != last:
                last = row.state
                yield self._task_msg(row)
            await changed.wait()
        yield self._task_msg(row)

    async def ListTask(
        self, request: frontend_pb2.ListTaskRequest, context: Ctx
    ) -> AsyncIterator[types_pb2.Task]:
        """Every task of a session, by id (with events)."""
        await self._session(request.session_id, context)
        for row in self._board.list_tasks(request.session_id):
            yield self._task_msg(row)
