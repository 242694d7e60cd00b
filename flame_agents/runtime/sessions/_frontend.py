"""The ``flame.v1.Frontend`` servicer (grpc.aio): Flame 0.6 session-manager semantics.

Follows flame-wire §2 with the recommended fixes: duplicate session -> ALREADY_EXISTS, unknown
application -> NOT_FOUND, CreateTask in a closed session -> FAILED_PRECONDITION, unknown session
or task -> NOT_FOUND (WatchTask included, instead of a silent end), non-numeric task id ->
INVALID_ARGUMENT. Application Register/Unregister/Update report domain errors as
``Result{return_code=-1}`` with gRPC OK, as Flame does. The checks themselves are in
:mod:`._checks`.

This module serves the session, application, executor and node RPCs; the task RPCs (CreateTask,
WatchTask, GetTask, ListTask, and our RunTask and CancelTask) are :mod:`._task_rpcs`'s, a base
of the servicer. Sessions and tasks are the :class:`~._board.TaskBoard`'s: the Frontend asks it
to open and close sessions and to create tasks, and reads them through it; applications it reads
and writes in the store. CloseSession waits for running tasks (see :meth:`Scheduler.drain`).
"""

from __future__ import annotations

import sqlite3

import grpc
import grpc.aio

from flame_agents._wire import closing, frontend_pb2, frontend_pb2_grpc, types_pb2
from flame_agents._wire.cache.aliases import RefAliases
from flame_agents.runtime.sessions import _protos
from flame_agents.runtime.sessions._board import TaskBoard
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
)
from flame_agents.runtime.sessions._resources import resolved_spec
from flame_agents.runtime.sessions._rows import SessionRow
from flame_agents.runtime.sessions._scheduler import Scheduler
from flame_agents.runtime.sessions._store import Store
from flame_agents.runtime.sessions._task_rpcs import TaskRpcs
from flame_agents.types import SessionState, TaskState

__all__ = ["DEFAULT_MAX_ID_BYTES", "FrontendServicer", "session_id_error"]


class FrontendServicer(TaskRpcs, frontend_pb2_grpc.FrontendServicer):  # type: ignore[misc]
    """All 18 Frontend RPCs over the store and the scheduler (the task ones: :class:`TaskRpcs`)."""

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
