"""The ``flame.v1.Frontend`` servicer (grpc.aio): Flame 0.6 session-manager semantics.

Follows flame-wire §2 with the recommended fixes: duplicate session -> ALREADY_EXISTS, unknown
application -> NOT_FOUND, CreateTask in a closed session -> FAILED_PRECONDITION, unknown session
or task -> NOT_FOUND (WatchTask included, instead of a silent end), non-numeric task id ->
INVALID_ARGUMENT. Application Register/Unregister/Update report domain errors as
``Result{return_code=-1}`` with gRPC OK, as Flame does.

WatchTask sends the task on every state change and always ends with a terminal task (at once
when it already is terminal); each message carries the task's events, so a failed task shows
the service's error text (event code 3). CloseSession waits for running tasks (see
:meth:`Scheduler.close_session`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
import grpc.aio

from flame_agents._wire import closing, fastpath, frontend_pb2, frontend_pb2_grpc, types_pb2
from flame_agents._wire.cache_aliases import RefAliases
from flame_agents.runtime import _protos
from flame_agents.runtime import _store as st
from flame_agents.runtime._apps import (
    SpecError,
    name_error,
    with_defaults,
    working_directory_error,
)
from flame_agents.runtime._resources import resolved_spec
from flame_agents.runtime._scheduler import Scheduler
from flame_agents.runtime._store import SessionRow, Store

__all__ = ["DEFAULT_MAX_ID_BYTES", "FrontendServicer", "session_id_error"]

Ctx = grpc.aio.ServicerContext[Any, Any]

DEFAULT_MAX_ID_BYTES = 512
"""Longest session id accepted (UTF-8 bytes); ``--max-id-bytes`` changes it."""

_SHOWN_CHARS = 128


def _show(value: str) -> str:
    """``value`` for an error message: as is when short and printable, else a cut repr.

    Error messages travel in a gRPC trailer, which is small: echoing a client's megabyte-long
    or binary field would turn a clear INVALID_ARGUMENT into a broken reply.
    """
    if len(value) <= _SHOWN_CHARS and value.isprintable():
        return value
    return f"{value[: _SHOWN_CHARS // 2]!r}... ({len(value)} characters)"


def session_id_error(sid: str, *, max_bytes: int = DEFAULT_MAX_ID_BYTES) -> str | None:
    """Why ``sid`` is not an acceptable session id, or None if it is.

    The rule is the core client's (no path separators, NUL or ``..``: Flame's fs engine makes
    a directory of the id) plus a length cap and no control characters (ids end up in logs).
    """
    if not sid:
        return "session id must not be empty"
    size = len(sid.encode("utf-8"))
    if size > max_bytes:
        return f"session id is {size} bytes long; the limit is {max_bytes} bytes (--max-id-bytes)"
    if any(c in sid for c in "/\\") or ".." in sid or not sid.isprintable():
        return (
            f"invalid session id {_show(sid)}: it must not contain '/', '\\', '..', "
            "NUL or other control characters"
        )
    return None


def _spec_error(spec: types_pb2.ApplicationSpec) -> str | None:
    """A problem no launch could get past (NUL in an argv or env string, unknown shim), or None."""
    if spec.shim not in types_pb2.Shim.values():
        return f"unknown shim {spec.shim}: expected one of {sorted(types_pb2.Shim.keys())}"
    if spec.HasField("delay_release") and spec.delay_release < 0:
        return f"delay_release must be >= 0 seconds, got {spec.delay_release}"
    texts = [("command", spec.command), ("working_directory", spec.working_directory)]
    texts += [("arguments", a) for a in spec.arguments]
    texts += [("environments", e.name + e.value) for e in spec.environments]
    for field, text in texts:
        if "\x00" in text:
            return f"{field} must not contain NUL characters"
    for env in spec.environments:
        if not env.name or "=" in env.name:
            return f"invalid environment variable name {_show(env.name)}: empty or contains '='"
    return None


async def _abort(ctx: Ctx, code: grpc.StatusCode, message: str) -> NoReturn:
    await ctx.abort(code, message)
    raise AssertionError("unreachable")  # ctx.abort always raises


_TASK_NUMBER = re.compile(r"[+-]?[0-9]{1,19}")
_I64_MAX = 2**63 - 1


def _task_number(task_id: str) -> int | None:
    """The task id parsed as Flame parses it (an i64, ASCII digits only), or None."""
    if not _TASK_NUMBER.fullmatch(task_id):
        return None
    number = int(task_id)
    return number if -_I64_MAX - 1 <= number <= _I64_MAX else None


def _app_name_error(name: str) -> str | None:
    if len(name) > 253:  # checked first so the message does not echo a huge name
        return f"invalid application name {_show(name)}: longer than 253 characters"
    return name_error(name)


async def _checked_spec(spec: types_pb2.ApplicationSpec, ctx: Ctx) -> types_pb2.ApplicationSpec:
    """``spec`` validated and with Flame's defaults, or INVALID_ARGUMENT saying what is wrong.

    Beyond Flame's checks, a given working_directory must exist on this machine: Flame would
    accept it and fail every launch later (and clients such as flamepy register directly, so
    the CLI cannot be the only check).
    """
    if problem := _spec_error(spec):
        await _abort(ctx, grpc.StatusCode.INVALID_ARGUMENT, problem)
    try:
        checked = with_defaults(spec)
    except SpecError as exc:
        await _abort(ctx, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    if checked.HasField("working_directory") and (
        problem := working_directory_error(checked.working_directory)
    ):
        await _abort(ctx, grpc.StatusCode.INVALID_ARGUMENT, problem)
    return checked


def _result(message: str | None = None) -> types_pb2.Result:
    if message is None:
        return types_pb2.Result(return_code=0)
    return types_pb2.Result(return_code=-1, message=message)


def _given_spec(spec: types_pb2.SessionSpec) -> types_pb2.SessionSpec:
    """The spec as stored: batch_size 1, resreq only when the client gave one.

    Whether resreq was given matters: only a given one is accounted (see ``_resources``);
    clients are shown Flame's default in its place (``_protos.session``).
    """
    out = types_pb2.SessionSpec()
    out.CopyFrom(spec)
    out.batch_size = 1
    return out


def _resolve_spec(spec: types_pb2.SessionSpec) -> types_pb2.SessionSpec:
    return resolved_spec(_given_spec(spec))


def _mismatch(sid: str, have: types_pb2.SessionSpec, want: types_pb2.SessionSpec) -> str | None:
    """The first differing field as Flame words it, or None when the specs agree."""

    def rr(r: types_pb2.ResourceRequirement) -> str:
        return f"cpu={r.cpu},mem={r.memory},gpu={r.gpu}"

    def mx(s: types_pb2.SessionSpec) -> str:
        return str(s.max_instances) if s.HasField("max_instances") else "unlimited"

    checks = [
        ("application", have.application, want.application),
        ("resreq", rr(have.resreq), rr(want.resreq)),
        ("min_instances", str(have.min_instances), str(want.min_instances)),
        ("max_instances", mx(have), mx(want)),
        ("priority", str(have.priority), str(want.priority)),
    ]
    for name, expected, got in checks:
        if expected != got:
            return (
                f"session {sid} spec mismatch: {name} differs "
                f"(expected {_show(expected)}, got {_show(got)})"
            )
    return None


class FrontendServicer(frontend_pb2_grpc.FrontendServicer):  # type: ignore[misc]
    """All 18 Frontend RPCs over the store and the scheduler."""

    def __init__(
        self,
        store: Store,
        scheduler: Scheduler,
        *,
        max_id_bytes: int = DEFAULT_MAX_ID_BYTES,
        refs: RefAliases | None = None,
    ) -> None:
        self._store = store
        self._sched = scheduler
        self._max_id_bytes = max_id_bytes
        self._refs = refs

    # -- helpers ----------------------------------------------------------------------------

    def _session_msg(self, row: SessionRow) -> types_pb2.Session:
        msg = _protos.session(row, self._store.counters(row.id), self._store.events(row.id))
        if self._refs is not None and msg.spec.HasField("common_data"):
            # A context ref made before a restart on new ports names this cache's old address.
            msg.spec.common_data = self._refs.retarget(msg.spec.common_data)
        return msg

    async def _session(self, sid: str, ctx: Ctx) -> SessionRow:
        row = self._store.get_session(sid)
        if row is None:
            await _abort(ctx, grpc.StatusCode.NOT_FOUND, f"session {_show(sid)} not found")
        return row

    async def _task(self, sid: str, task_id: str, ctx: Ctx) -> st.TaskRow:
        tid = _task_number(task_id)
        if tid is None:
            await _abort(
                ctx,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid task id {_show(task_id)}: expected a decimal number (a 64-bit integer)",
            )
        await self._session(sid, ctx)
        row = self._store.get_task(sid, tid)
        if row is None:
            await _abort(
                ctx,
                grpc.StatusCode.NOT_FOUND,
                f"task {_show(task_id)} of session {_show(sid)} not found",
            )
        return row

    def _task_msg(self, row: st.TaskRow) -> types_pb2.Task:
        return _protos.task(row, self._store.events(row.session_id, row.id))

    # -- applications -----------------------------------------------------------------------

    async def RegisterApplication(
        self, request: frontend_pb2.RegisterApplicationRequest, context: Ctx
    ) -> types_pb2.Result:
        """Register a new application (duplicate or bad name -> return_code -1)."""
        if err := _app_name_error(request.name):
            return _result(err)
        spec = await _checked_spec(request.application, context)
        if self._store.get_app(request.name) is not None:
            return _result(f"application {_show(request.name)} already exists")
        self._store.put_app(request.name, spec)
        return _result()

    async def UnregisterApplication(
        self, request: frontend_pb2.UnregisterApplicationRequest, context: Ctx
    ) -> types_pb2.Result:
        """Remove an application with no open sessions (and its closed sessions)."""
        if self._store.get_app(request.name) is None:
            return _result(f"application {_show(request.name)} not found")
        if n := self._store.open_sessions_of(request.name):
            return _result(
                f"application {_show(request.name)} has {n} open session(s); close them first"
            )
        for row in self._store.list_sessions(state=st.SESSION_CLOSED):
            if row.application == request.name:
                self._sched.session_deleted(row.id)
        self._store.delete_app(request.name)
        return _result()

    async def UpdateApplication(
        self, request: frontend_pb2.UpdateApplicationRequest, context: Ctx
    ) -> types_pb2.Result:
        """Replace the spec of an application with no open sessions."""
        if err := _app_name_error(request.name):
            return _result(err)
        spec = await _checked_spec(request.application, context)
        if self._store.get_app(request.name) is None:
            return _result(f"application {_show(request.name)} not found")
        if n := self._store.open_sessions_of(request.name):
            return _result(
                f"application {_show(request.name)} has {n} open session(s); close them first"
            )
        self._store.put_app(request.name, spec)
        return _result()

    async def GetApplication(
        self, request: frontend_pb2.GetApplicationRequest, context: Ctx
    ) -> types_pb2.Application:
        """One application, or NOT_FOUND."""
        row = self._store.get_app(request.name)
        if row is None:
            await _abort(
                context, grpc.StatusCode.NOT_FOUND, f"application {_show(request.name)} not found"
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
            await _abort(
                context, grpc.StatusCode.NOT_FOUND, f"node {_show(request.name)} not found"
            )
        return frontend_pb2.GetNodeResponse(node=node)

    # -- sessions ---------------------------------------------------------------------------

    async def _create(
        self, sid: str, spec: types_pb2.SessionSpec, context: Ctx
    ) -> types_pb2.Session:
        if problem := session_id_error(sid, max_bytes=self._max_id_bytes):
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        if self._store.get_app(spec.application) is None:
            await _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"application {_show(spec.application)} not found; register it first",
            )
        if spec.HasField("max_instances") and spec.max_instances < spec.min_instances:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"min_instances ({spec.min_instances}) exceeds max_instances "
                f"({spec.max_instances})",
            )
        if spec.HasField("resreq") and (problem := self._sched.resources.never_fits(spec.resreq)):
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            row = self._store.create_session(sid, spec)
        except sqlite3.IntegrityError:
            await _abort(
                context, grpc.StatusCode.ALREADY_EXISTS, f"session {_show(sid)} already exists"
            )
        self._sched.session_opened(row)
        return self._session_msg(row)

    async def CreateSession(
        self, request: frontend_pb2.CreateSessionRequest, context: Ctx
    ) -> types_pb2.Session:
        """Create an open session with the client's id (batch_size 1, default resreq)."""
        if not request.HasField("session"):
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "session spec is required")
        return await self._create(request.session_id, _given_spec(request.session), context)

    async def OpenSession(
        self, request: frontend_pb2.OpenSessionRequest, context: Ctx
    ) -> types_pb2.Session:
        """Create-or-get: an existing open session must match the given spec."""
        sid = request.session_id
        row = self._store.get_session(sid)
        if row is None:
            if not request.HasField("session"):
                await _abort(context, grpc.StatusCode.NOT_FOUND, f"session {_show(sid)} not found")
            return await self._create(sid, _given_spec(request.session), context)
        if row.state != st.SESSION_OPEN:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"session {_show(sid)} is not open: it was closed, and a closed session cannot "
                "be reopened; create a new session (the closed one's context stays readable: "
                f"flame-agents view -s {_show(sid)})",
            )
        if request.HasField("session"):
            problem = _mismatch(sid, resolved_spec(row.spec), _resolve_spec(request.session))
            if problem:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        return self._session_msg(row)

    async def CloseSession(
        self, request: frontend_pb2.CloseSessionRequest, context: Ctx
    ) -> types_pb2.Session:
        """Close (idempotent): pending tasks are cancelled, running ones finish first.

        With our ``_wire.closing.CANCEL_RUNNING`` metadata, running tasks are stopped instead.
        """
        row = await self._session(request.session_id, context)
        cancel_running = closing.wants_cancel_running(context.invocation_metadata())
        if row.state == st.SESSION_OPEN or cancel_running:
            await self._sched.close_session(row.id, cancel_running=cancel_running)
        return self._session_msg(await self._session(request.session_id, context))

    async def DeleteSession(
        self, request: frontend_pb2.DeleteSessionRequest, context: Ctx
    ) -> types_pb2.Session:
        """Delete a closed session with its tasks and events; returns it as it was."""
        row = await self._session(request.session_id, context)
        if row.state != st.SESSION_CLOSED:
            await _abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"session {row.id} is open; close it before deleting it",
            )
        counters = self._store.counters(row.id)
        if counters.get(st.RUNNING, 0):
            await _abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"session {row.id} still has running tasks",
            )
        msg = self._session_msg(row)
        self._sched.session_deleted(row.id)
        self._store.delete_session(row.id)
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
        counters = self._store.all_counters()
        return types_pb2.SessionList(
            sessions=[
                _protos.session(r, counters.get(r.id, {}), self._store.events(r.id))
                for r in self._store.list_sessions()
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
            remaining = context.time_remaining()
            wait = fastpath.TERMINAL_FIRST_WAIT
            if remaining is not None:
                wait = min(wait, remaining / 2)  # leave the caller time to learn the task id
            row = await self._until_terminal(row, context, timeout=wait)
        if row.state not in st.TERMINAL:
            yield _protos.task(row, [], with_input=False)
            row = await self._until_terminal(row, context)
        events = self._store.events(sid, tid) if row.state != st.SUCCEED else []
        yield _protos.task(row, events, with_input=False)

    async def _until_terminal(
        self, row: st.TaskRow, context: Ctx, *, timeout: float | None = None
    ) -> st.TaskRow:
        """The task once terminal, or as it is after ``timeout`` seconds."""
        sid, tid = row.session_id, row.id
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            row, changed = await self._read_and_listen(sid, tid, context)
            if row.state in st.TERMINAL:
                return row
            if row.state == st.PENDING and (paused := self._sched.paused_reason(sid)):
                # Flame keeps the task Pending; our caller is told at once instead of waiting.
                await _abort(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"task {tid} stays Pending: its session {_show(sid)} starts no instances. "
                    f"{paused}",
                )
            if deadline is None:
                await changed.wait()
                continue
            left = deadline - loop.time()
            if left <= 0:
                return row
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), left)

    async def _read_and_listen(
        self, sid: str, tid: int, context: Ctx
    ) -> tuple[st.TaskRow, asyncio.Event]:
        """The task as stored now, and an event set at its next change (NOT_FOUND if deleted).

        The event is registered *before* the read: a change that lands while the caller is
        suspended (a stream sending to a slow client) then sets it, instead of being missed and
        leaving the caller waiting forever.
        """
        changed = self._sched.task_changed(sid, tid)
        row = self._store.get_task(sid, tid)
        if row is None:  # deleted under us
            await _abort(context, grpc.StatusCode.NOT_FOUND, f"task {tid} was deleted")
        return row, changed

    async def _create_task(
        self, request: frontend_pb2.CreateTaskRequest, context: Ctx
    ) -> st.TaskRow:
        if not request.HasField("task"):
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "task spec is required")
        sid = request.task.session_id
        row = await self._session(sid, context)
        if row.state != st.SESSION_OPEN:
            await _abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Cannot create task in closed session {_show(sid)}",
            )
        data = request.task.input if request.task.HasField("input") else None
        task = self._store.create_task(sid, data)
        self._sched.task_created(sid, task.id)
        return task

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
        while row.state not in st.TERMINAL:
            row, changed = await self._read_and_listen(sid, tid, context)
            if row.state in st.TERMINAL:
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
        for row in self._store.list_tasks(request.session_id):
            yield self._task_msg(row)
