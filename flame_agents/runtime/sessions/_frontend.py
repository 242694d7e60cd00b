"""The ``flame.v1.Frontend`` servicer (grpc.aio): Flame 0.6 session-manager semantics.

Follows flame-wire §2 with the recommended fixes: duplicate session -> ALREADY_EXISTS, unknown
application -> NOT_FOUND, CreateTask in a closed session -> FAILED_PRECONDITION, unknown session
or task -> NOT_FOUND (WatchTask included, instead of a silent end), non-numeric task id ->
INVALID_ARGUMENT. Application Register/Unregister/Update report domain errors as
``Result{return_code=-1}`` with gRPC OK, as Flame does. The checks themselves are in
:mod:`._checks`.

Sessions and tasks are the :class:`~._board.TaskBoard`'s: the Frontend asks it to open and close
sessions and to create tasks, and reads them through it; applications it reads and writes in
the store. WatchTask sends the task on every state change and always ends with a terminal task
(at once when it already is terminal); each message carries the task's events, so a failed task
shows the service's error text (event code 3). CloseSession waits for running tasks (see
:meth:`Scheduler.drain`). Our RunTask and CancelTask (``_wire.fastpath``, ``_wire.cancel``) are
served next to them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import grpc
import grpc.aio

from flame_agents._wire import closing, fastpath, frontend_pb2, frontend_pb2_grpc, types_pb2
from flame_agents._wire.cache.aliases import RefAliases
from flame_agents.runtime.sessions import _protos
from flame_agents.runtime.sessions._board import TaskBoard
from flame_agents.runtime.sessions._cancel import CANCELLED_PENDING
from flame_agents.runtime.sessions._checks import (
    DEFAULT_MAX_ID_BYTES,
    Ctx,
    abort,
    app_name_error,
    checked_spec,
    given_spec,
    mismatch,
    resolve_spec,
    result,
    session_id_error,
    show,
    task_number,
)
from flame_agents.runtime.sessions._resources import resolved_spec
from flame_agents.runtime.sessions._rows import SessionRow, TaskRow
from flame_agents.runtime.sessions._scheduler import Scheduler
from flame_agents.runtime.sessions._store import Store
from flame_agents.runtime.sessions._waits import read_and_listen, until_terminal
from flame_agents.types import SessionState, TaskState

__all__ = ["DEFAULT_MAX_ID_BYTES", "FrontendServicer", "session_id_error"]


class FrontendServicer(frontend_pb2_grpc.FrontendServicer):  # type: ignore[misc]
    """All 18 Frontend RPCs over the store and the scheduler."""

    def __init__(
        self,
        store: Store,
        board: TaskBoard,
        scheduler: Scheduler,
        *,
        max_id_bytes: int = DEFAULT_MAX_ID_BYTES,
        refs: RefAliases | None = None,
    ) -> None:
        self._store = store
        self._board = board
        self._sched = scheduler
        self._max_id_bytes = max_id_bytes
        self._refs = refs

    # -- helpers ----------------------------------------------------------------------------

    def _session_msg(self, row: SessionRow) -> types_pb2.Session:
        board = self._board
        msg = _protos.session(row, board.counters(row.id), board.session_events(row.id))
        if self._refs is not None and msg.spec.HasField("common_data"):
            # A context ref made before a restart on new ports names this cache's old address.
            msg.spec.common_data = self._refs.retarget(msg.spec.common_data)
        return msg

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

    # -- applications -----------------------------------------------------------------------

    async def RegisterApplication(
        self, request: frontend_pb2.RegisterApplicationRequest, context: Ctx
    ) -> types_pb2.Result:
        """Register a new application (duplicate or bad name -> return_code -1)."""
        if err := app_name_error(request.name):
            return result(err)
        spec = await checked_spec(request.application, context)
        if self._store.get_app(request.name) is not None:
            return result(f"application {show(request.name)} already exists")
        self._store.put_app(request.name, spec)
        return result()

    async def UnregisterApplication(
        self, request: frontend_pb2.UnregisterApplicationRequest, context: Ctx
    ) -> types_pb2.Result:
        """Remove an application with no open sessions (and its closed sessions)."""
        if self._store.get_app(request.name) is None:
            return result(f"application {show(request.name)} not found")
        if n := self._board.open_sessions_of(request.name):
            return result(
                f"application {show(request.name)} has {n} open session(s); close them first"
            )
        self._board.delete_app(request.name)
        return result()

    async def UpdateApplication(
        self, request: frontend_pb2.UpdateApplicationRequest, context: Ctx
    ) -> types_pb2.Result:
        """Replace the spec of an application with no open sessions."""
        if err := app_name_error(request.name):
            return result(err)
        spec = await checked_spec(request.application, context)
        if self._store.get_app(request.name) is None:
            return result(f"application {show(request.name)} not found")
        if n := self._board.open_sessions_of(request.name):
            return result(
                f"application {show(request.name)} has {n} open session(s); close them first"
            )
        self._store.put_app(request.name, spec)
        return result()

    async def GetApplication(
        self, request: frontend_pb2.GetApplicationRequest, context: Ctx
    ) -> types_pb2.Application:
        """One application, or NOT_FOUND."""
        row = self._store.get_app(request.name)
        if row is None:
            await abort(
                context, grpc.StatusCode.NOT_FOUND, f"application {show(request.name)} not found"
            )
        return _protos.application(row)

    async def ListApplication(
        self, request: frontend_pb2.ListApplicationRequest, context: Ctx
    ) -> types_pb2.ApplicationList:
        """Every application."""
        return types_pb2.ApplicationList(
            applications=[_protos.application(r) for r in self._store.list_apps()]
        )

    # -- executors and nodes ----------------------------------------------------------------

    async def ListExecutor(
        self, request: frontend_pb2.ListExecutorRequest, context: Ctx
    ) -> types_pb2.ExecutorList:
        """The live instances."""
        return types_pb2.ExecutorList(
            executors=[_protos.executor(v) for v in self._sched.executors()]
        )

    async def ListNodes(
        self, request: frontend_pb2.ListNodesRequest, context: Ctx
    ) -> types_pb2.NodeList:
        """The single node: this machine."""
        return types_pb2.NodeList(nodes=[_protos.node(self._sched.resources)])

    async def GetNode(
        self, request: frontend_pb2.GetNodeRequest, context: Ctx
    ) -> frontend_pb2.GetNodeResponse:
        """This machine's node by name (its hostname), or NOT_FOUND."""
        node = _protos.node(self._sched.resources)
        if request.name and request.name != node.metadata.name:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"node {show(request.name)} not found")
        return frontend_pb2.GetNodeResponse(node=node)

    # -- sessions ---------------------------------------------------------------------------

    async def _create(
        self, sid: str, spec: types_pb2.SessionSpec, context: Ctx
    ) -> types_pb2.Session:
        if problem := session_id_error(sid, max_bytes=self._max_id_bytes):
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        if self._store.get_app(spec.application) is None:
            await abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"application {show(spec.application)} not found; register it first",
            )
        if spec.HasField("max_instances") and spec.max_instances < spec.min_instances:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"min_instances ({spec.min_instances}) exceeds max_instances "
                f"({spec.max_instances})",
            )
        if spec.HasField("resreq") and (problem := self._sched.resources.never_fits(spec.resreq)):
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            row = self._board.open_session(sid, spec)
        except sqlite3.IntegrityError:
            await abort(
                context, grpc.StatusCode.ALREADY_EXISTS, f"session {show(sid)} already exists"
            )
        return self._session_msg(row)

    async def CreateSession(
        self, request: frontend_pb2.CreateSessionRequest, context: Ctx
    ) -> types_pb2.Session:
        """Create an open session with the client's id (batch_size 1, default resreq)."""
        if not request.HasField("session"):
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "session spec is required")
        return await self._create(request.session_id, given_spec(request.session), context)

    async def OpenSession(
        self, request: frontend_pb2.OpenSessionRequest, context: Ctx
    ) -> types_pb2.Session:
        """Create-or-get: an existing open session must match the given spec."""
        sid = request.session_id
        row = self._board.get_session(sid)
        if row is None:
            if not request.HasField("session"):
                await abort(context, grpc.StatusCode.NOT_FOUND, f"session {show(sid)} not found")
            return await self._create(sid, given_spec(request.session), context)
        if row.state != SessionState.OPEN:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"session {show(sid)} is not open: it was closed, and a closed session cannot "
                "be reopened; create a new session (the closed one's context stays readable: "
                f"flame-agents view -s {show(sid)})",
            )
        if request.HasField("session"):
            problem = mismatch(sid, resolved_spec(row.spec), resolve_spec(request.session))
            if problem:
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        return self._session_msg(row)

    async def CloseSession(
        self, request: frontend_pb2.CloseSessionRequest, context: Ctx
    ) -> types_pb2.Session:
        """Close (idempotent): pending tasks are cancelled, running ones finish first.

        With our ``_wire.closing.CANCEL_RUNNING`` metadata, running tasks are stopped instead.
        """
        row = await self._session(request.session_id, context)
        cancel_running = closing.wants_cancel_running(context.invocation_metadata())
        if row.state == SessionState.OPEN:
            self._board.close_session(row.id)
        if row.state == SessionState.OPEN or cancel_running:
            await self._sched.drain(row.id, cancel_running=cancel_running)
        return self._session_msg(await self._session(request.session_id, context))

    async def DeleteSession(
        self, request: frontend_pb2.DeleteSessionRequest, context: Ctx
    ) -> types_pb2.Session:
        """Delete a closed session with its tasks and events; returns it as it was."""
        row = await self._session(request.session_id, context)
        if row.state != SessionState.CLOSED:
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"session {row.id} is open; close it before deleting it",
            )
        if self._board.counters(row.id).get(TaskState.RUNNING, 0):
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"session {row.id} still has running tasks",
            )
        msg = self._session_msg(row)
        self._board.delete_session(row.id)
        return msg

    async def GetSession(
        self, request: frontend_pb2.GetSessionRequest, context: Ctx
    ) -> types_pb2.Session:
        """One session with live counters and session events."""
        return self._session_msg(await self._session(request.session_id, context))

    async def ListSession(
        self, request: frontend_pb2.ListSessionRequest, context: Ctx
    ) -> types_pb2.SessionList:
        """Every session (oldest first)."""
        board = self._board
        counters = board.all_counters()
        return types_pb2.SessionList(
            sessions=[
                _protos.session(r, counters.get(r.id, {}), board.session_events(r.id))
                for r in board.list_sessions()
            ]
        )

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
            # message (Ctrl-C) still learns which task to cancel.
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
