"""A tiny in-memory Frontend servicer for unit tests of the core client (not the runtime).

Tasks complete on a worker thread so watchers see real state changes. Task input decides the
outcome: ``b"hang"`` never finishes, ``b"fail:<text>"`` fails with ``<text>`` as event code 3
(not included in watch messages, like Flame), anything else succeeds with ``b"echo:" + input``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc

from flame_agents._wire import frontend_pb2_grpc, types_pb2
from flame_agents.core import Connection

_NOW_MS = 1_700_000_000_000


class FakeFrontend(frontend_pb2_grpc.FrontendServicer):  # type: ignore[misc]
    """In-memory Frontend with Flame 0.6 semantics for the calls the client makes."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.apps: dict[str, Any] = {}
        self.sessions: dict[str, Any] = {}
        self.tasks: dict[tuple[str, str], Any] = {}
        self.requests: list[tuple[str, Any]] = []
        self.watch_eof_first = False
        """When set, every task's first WatchTask ends at once without a message."""
        self.watch_eof_always = False
        """When set, every WatchTask ends at once without a message (a broken server)."""
        self.watch_calls = 0
        self._eof_done: set[tuple[str, str]] = set()
        self._events: dict[tuple[str, str], list[Any]] = {}
        self._work: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run_worker, daemon=True)
        self._worker.start()

    def stop(self) -> None:
        self._work.put(None)
        self._worker.join(timeout=5)

    # -- worker ----------------------------------------------------------------------------

    def _run_worker(self) -> None:
        while (key := self._work.get()) is not None:
            with self.cond:
                task = self.tasks[key]
                if task.status.state != types_pb2.Pending:
                    continue
                data = task.spec.input if task.spec.HasField("input") else None
                if data == b"hang":
                    continue
                task.status.state = types_pb2.Running
                self.cond.notify_all()
            time.sleep(0.005)
            with self.cond:
                if data is not None and data.startswith(b"fail:"):
                    task.status.state = types_pb2.Failed
                    self._events[key].append(
                        types_pb2.Event(code=3, message=data[5:].decode(), creation_time=_NOW_MS)
                    )
                else:
                    task.status.state = types_pb2.Succeed
                    if data is not None:
                        task.spec.output = b"echo:" + data
                task.status.completion_time = _NOW_MS
                self.cond.notify_all()

    # -- applications ------------------------------------------------------------------------

    def RegisterApplication(self, request: Any, context: Any) -> Any:
        self.requests.append(("RegisterApplication", request))
        with self.cond:
            if request.name in self.apps:
                return types_pb2.Result(
                    return_code=-1, message=f"application {request.name} already exists"
                )
            self.apps[request.name] = types_pb2.Application(
                metadata=types_pb2.Metadata(id=request.name, name=request.name),
                spec=request.application,
                status=types_pb2.ApplicationStatus(state=0, creation_time=_NOW_MS),
            )
        return types_pb2.Result(return_code=0)

    def _open_sessions_of(self, name: str) -> bool:
        return any(
            s.spec.application == name and s.status.state == types_pb2.Open
            for s in self.sessions.values()
        )

    def UpdateApplication(self, request: Any, context: Any) -> Any:
        with self.cond:
            if request.name not in self.apps:
                return types_pb2.Result(
                    return_code=-1, message=f"application {request.name} not found"
                )
            if self._open_sessions_of(request.name):
                return types_pb2.Result(
                    return_code=-1, message=f"application {request.name} has open sessions"
                )
            self.apps[request.name].spec.CopyFrom(request.application)
        return types_pb2.Result(return_code=0)

    def UnregisterApplication(self, request: Any, context: Any) -> Any:
        with self.cond:
            if request.name not in self.apps:
                return types_pb2.Result(
                    return_code=-1, message=f"application {request.name} not found"
                )
            if self._open_sessions_of(request.name):
                return types_pb2.Result(
                    return_code=-1, message=f"application {request.name} has open sessions"
                )
            del self.apps[request.name]
        return types_pb2.Result(return_code=0)

    def GetApplication(self, request: Any, context: Any) -> Any:
        with self.cond:
            app = self.apps.get(request.name)
        if app is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"application {request.name} not found")
        return app

    def ListApplication(self, request: Any, context: Any) -> Any:
        with self.cond:
            return types_pb2.ApplicationList(applications=list(self.apps.values()))

    # -- sessions ----------------------------------------------------------------------------

    def _new_session(self, sid: str, spec: Any, context: Any) -> Any:
        if spec.application not in self.apps:
            context.abort(grpc.StatusCode.NOT_FOUND, f"application {spec.application} not found")
        session = types_pb2.Session(
            metadata=types_pb2.Metadata(id=sid, name=sid),
            spec=spec,
            status=types_pb2.SessionStatus(state=types_pb2.Open, creation_time=_NOW_MS),
        )
        session.spec.batch_size = 1
        if not session.spec.HasField("resreq"):
            session.spec.resreq.CopyFrom(
                types_pb2.ResourceRequirement(cpu=1, memory=1024**3, gpu=0)
            )
        self.sessions[sid] = session
        return session

    def CreateSession(self, request: Any, context: Any) -> Any:
        self.requests.append(("CreateSession", request))
        with self.cond:
            if request.session_id in self.sessions:
                context.abort(
                    grpc.StatusCode.ALREADY_EXISTS, f"session {request.session_id} already exists"
                )
            return self._new_session(request.session_id, request.session, context)

    def OpenSession(self, request: Any, context: Any) -> Any:
        self.requests.append(("OpenSession", request))
        sid = request.session_id
        with self.cond:
            session = self.sessions.get(sid)
            if session is None:
                if not request.HasField("session"):
                    context.abort(grpc.StatusCode.NOT_FOUND, f"session {sid} not found")
                return self._new_session(sid, request.session, context)
            if session.status.state != types_pb2.Open:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"session {sid} is not open")
            if (
                request.HasField("session")
                and request.session.application != session.spec.application
            ):
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"session {sid} spec mismatch: application differs",
                )
            return self._with_counters(session)

    def _with_counters(self, session: Any) -> Any:
        out = types_pb2.Session()
        out.CopyFrom(session)
        sid = session.metadata.id
        states = [t.status.state for (s, _), t in self.tasks.items() if s == sid]
        out.status.pending = states.count(types_pb2.Pending)
        out.status.running = states.count(types_pb2.Running)
        out.status.succeed = states.count(types_pb2.Succeed)
        out.status.failed = states.count(types_pb2.Failed)
        out.status.cancelled = states.count(types_pb2.Cancelled)
        return out

    def GetSession(self, request: Any, context: Any) -> Any:
        with self.cond:
            session = self.sessions.get(request.session_id)
            if session is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"session {request.session_id} not found")
            return self._with_counters(session)

    def ListSession(self, request: Any, context: Any) -> Any:
        with self.cond:
            return types_pb2.SessionList(
                sessions=[self._with_counters(s) for s in self.sessions.values()]
            )

    def CloseSession(self, request: Any, context: Any) -> Any:
        sid = request.session_id
        with self.cond:
            session = self.sessions.get(sid)
            if session is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"session {sid} not found")
            for (s, _), task in self.tasks.items():
                if s == sid and task.status.state == types_pb2.Pending:
                    task.status.state = types_pb2.Cancelled
                    task.status.completion_time = _NOW_MS
            if session.status.state == types_pb2.Open:
                session.status.state = types_pb2.Closed
                session.status.completion_time = _NOW_MS
            self.cond.notify_all()
            return self._with_counters(session)

    # -- tasks -------------------------------------------------------------------------------

    def CreateTask(self, request: Any, context: Any) -> Any:
        self.requests.append(("CreateTask", request))
        sid = request.task.session_id
        with self.cond:
            session = self.sessions.get(sid)
            if session is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"session {sid} not found")
            if session.status.state != types_pb2.Open:
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION, "Cannot create task in closed session"
                )
            tid = str(1 + sum(1 for s, _ in self.tasks if s == sid))
            task = types_pb2.Task(
                metadata=types_pb2.Metadata(id=tid, name=tid),
                spec=request.task,
                status=types_pb2.TaskStatus(state=types_pb2.Pending, creation_time=_NOW_MS),
            )
            self.tasks[(sid, tid)] = task
            self._events.setdefault((sid, tid), []).append(
                types_pb2.Event(code=0, message="created", creation_time=_NOW_MS)
            )
            self._work.put((sid, tid))
            out = types_pb2.Task()
            out.CopyFrom(task)
            return out

    def _task(self, request: Any, context: Any) -> Any:
        task = self.tasks.get((request.session_id, request.task_id))
        if task is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"task {request.task_id} not found")
        return task

    def GetTask(self, request: Any, context: Any) -> Any:
        with self.cond:
            out = types_pb2.Task()
            out.CopyFrom(self._task(request, context))
            out.status.events.extend(self._events[(request.session_id, request.task_id)])
            return out

    def ListTask(self, request: Any, context: Any) -> Iterator[Any]:
        with self.cond:
            tasks = [t for (s, _), t in self.tasks.items() if s == request.session_id]
            copies = []
            for t in tasks:
                c = types_pb2.Task()
                c.CopyFrom(t)
                copies.append(c)
        yield from copies

    def WatchTask(self, request: Any, context: Any) -> Iterator[Any]:
        key = (request.session_id, request.task_id)
        terminal = (types_pb2.Succeed, types_pb2.Failed, types_pb2.Cancelled)
        with self.cond:
            self.watch_calls += 1
            if key not in self.tasks or self.watch_eof_always:
                return  # Flame ends the stream silently for unknown tasks
            if self.watch_eof_first and key not in self._eof_done:
                self._eof_done.add(key)
                return
            task = self.tasks[key]
            state = task.status.state
        while True:
            # Never hold the lock across a yield: the worker needs it to make progress.
            with self.cond:
                if state not in terminal:
                    while task.status.state == state and context.is_active():
                        self.cond.wait(timeout=0.1)
                    if not context.is_active():
                        return
                state = task.status.state
                out = types_pb2.Task()
                out.CopyFrom(task)  # no events, as in Flame's watch messages
            yield out
            if state in terminal:
                return


def start_fake() -> tuple[FakeFrontend, Any, str]:
    """Start a fake Frontend on a free localhost port: (servicer, server, endpoint URL)."""
    fake = FakeFrontend()
    server = grpc.server(ThreadPoolExecutor(max_workers=32))
    frontend_pb2_grpc.add_FrontendServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return fake, server, f"http://127.0.0.1:{port}"


@dataclass
class FakeEnv:
    """A running fake Frontend and a client connection to it."""

    fake: FakeFrontend
    endpoint: str
    conn: Connection


def start_fake_tls(cert: bytes, key: bytes) -> tuple[FakeFrontend, Any, str]:
    """Like :func:`start_fake`, serving TLS with ``cert``/``key`` (endpoint ``https://``)."""
    fake = FakeFrontend()
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    frontend_pb2_grpc.add_FrontendServicer_to_server(fake, server)
    creds = grpc.ssl_server_credentials([(key, cert)])
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return fake, server, f"https://localhost:{port}"
