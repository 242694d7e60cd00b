"""Helpers of the runtime tests: raw Frontend stubs, app registration, condition waits."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc

from flame_agents._wire import frontend_pb2 as fpb
from flame_agents._wire import frontend_pb2_grpc, types_pb2
from flame_agents.config import grpc_target

SERVICES = Path(__file__).resolve().parent / "services"
DEADLINE = 60.0
"""Generous bound for conditions that normally hold within milliseconds."""

T = TypeVar("T")


class Frontend:
    """A raw ``flame.v1.Frontend`` stub with small conveniences; closes its channel."""

    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.insecure_channel(grpc_target(endpoint).target)
        self.stub = frontend_pb2_grpc.FrontendStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Frontend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def register(self, name: str, service: str = "behave", **fields: Any) -> types_pb2.Result:
        """Register ``services/<service>.py`` as application ``name``."""
        spec = types_pb2.ApplicationSpec(
            command=sys.executable, arguments=[str(SERVICES / f"{service}.py")], **fields
        )
        return self.stub.RegisterApplication(
            fpb.RegisterApplicationRequest(name=name, application=spec)
        )

    def create_session(self, sid: str, app: str, **fields: Any) -> types_pb2.Session:
        return self.stub.CreateSession(
            fpb.CreateSessionRequest(
                session_id=sid, session=types_pb2.SessionSpec(application=app, **fields)
            )
        )

    def create_task(self, sid: str, data: bytes | None) -> types_pb2.Task:
        spec = types_pb2.TaskSpec(session_id=sid)
        if data is not None:
            spec.input = data
        return self.stub.CreateTask(fpb.CreateTaskRequest(task=spec))

    def watch(self, sid: str, tid: str, timeout: float = DEADLINE) -> list[types_pb2.Task]:
        """Every message of a WatchTask stream until it ends."""
        return list(
            self.stub.WatchTask(fpb.WatchTaskRequest(task_id=tid, session_id=sid), timeout=timeout)
        )

    def run(self, sid: str, data: bytes | None) -> types_pb2.Task:
        """Create a task and return the last (terminal) message of its watch."""
        task = self.create_task(sid, data)
        return self.watch(sid, task.metadata.id)[-1]

    def get_task(self, sid: str, tid: str) -> types_pb2.Task:
        return self.stub.GetTask(fpb.GetTaskRequest(task_id=tid, session_id=sid))

    def get_session(self, sid: str) -> types_pb2.Session:
        return self.stub.GetSession(fpb.GetSessionRequest(session_id=sid))

    def close_session(self, sid: str) -> types_pb2.Session:
        return self.stub.CloseSession(fpb.CloseSessionRequest(session_id=sid), timeout=DEADLINE)

    def executors(self, sid: str | None = None) -> list[types_pb2.Executor]:
        found = self.stub.ListExecutor(fpb.ListExecutorRequest()).executors
        return [e for e in found if sid is None or e.status.session_id == sid]


def wait_until(predicate: Callable[[], T], *, timeout: float = DEADLINE, what: str = "") -> T:
    """Poll ``predicate`` until it returns a truthy value (returned) or fail after ``timeout``."""
    end = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not reached within {timeout}s: {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def read_pid(folder: Path) -> int:
    """The pid a ``block:<folder>`` task wrote, waiting until it exists."""
    marker = folder / "pid"
    wait_until(marker.exists, what=f"{marker} written")
    return int(marker.read_text())


class Watcher:
    """A WatchTask stream consumed on a thread (to watch while the test acts)."""

    def __init__(self, fe: Frontend, sid: str, tid: str) -> None:
        self.messages: list[types_pb2.Task] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fe, sid, tid), daemon=True)
        self._thread.start()

    def _run(self, fe: Frontend, sid: str, tid: str) -> None:
        try:
            self.messages.extend(fe.watch(sid, tid))
        except BaseException as exc:  # reported by result()
            self.error = exc

    def result(self, timeout: float = DEADLINE) -> list[types_pb2.Task]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "watch stream did not end"
        if self.error is not None:
            raise self.error
        return self.messages


def events(task: types_pb2.Task) -> list[tuple[int, str]]:
    return [(e.code, e.message) for e in task.status.events]


def iter_codes(session: types_pb2.Session) -> Iterator[int]:
    return (e.code for e in session.status.events)
