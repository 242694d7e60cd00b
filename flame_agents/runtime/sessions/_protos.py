"""Build Flame wire messages from the runtime's stored rows (and the node description)."""

from __future__ import annotations

import platform
import socket
import time
from typing import Any

from flame_agents._wire import types_pb2
from flame_agents._wire.executor_process import ExecutorProcess, add_executor_process
from flame_agents.runtime.sessions._resources import Ledger, resolved_spec
from flame_agents.runtime.sessions._rows import AppRow, EventRow, SessionRow, TaskRow
from flame_agents.runtime.sessions._scheduler import ExecutorView
from flame_agents.types import TaskState

__all__ = ["application", "executor", "node", "node_name", "session", "task"]


def _enum(value: int) -> Any:
    """An enum number for a generated constructor (its stubs only accept the enum type)."""
    return value


def node_name() -> str:
    """This machine's node name (its hostname)."""
    return socket.gethostname()


def _events(rows: list[EventRow]) -> list[types_pb2.Event]:
    out = []
    for e in rows:
        ev = types_pb2.Event(code=e.code, creation_time=e.creation_time)
        if e.message is not None:
            ev.message = e.message
        out.append(ev)
    return out


def application(row: AppRow) -> types_pb2.Application:
    """The Application message of a stored application."""
    return types_pb2.Application(
        metadata=types_pb2.Metadata(id=row.name, name=row.name),
        spec=row.spec,
        status=types_pb2.ApplicationStatus(state=_enum(0), creation_time=row.creation_time),
    )


def session(
    row: SessionRow, counters: dict[TaskState, int], events: list[EventRow]
) -> types_pb2.Session:
    """The Session message with live counters and session events (and Flame's default resreq
    when the client gave none)."""
    status = types_pb2.SessionStatus(
        state=_enum(row.state),
        creation_time=row.creation_time,
        pending=counters.get(TaskState.PENDING, 0),
        running=counters.get(TaskState.RUNNING, 0),
        succeed=counters.get(TaskState.SUCCEED, 0),
        failed=counters.get(TaskState.FAILED, 0),
        cancelled=counters.get(TaskState.CANCELLED, 0),
        events=_events(events),
    )
    if row.completion_time is not None:
        status.completion_time = row.completion_time
    return types_pb2.Session(
        metadata=types_pb2.Metadata(id=row.id, name=row.id),
        spec=resolved_spec(row.spec),
        status=status,
    )


def task(row: TaskRow, events: list[EventRow], *, with_input: bool = True) -> types_pb2.Task:
    """The Task message (input, output and events included)."""
    spec = types_pb2.TaskSpec(session_id=row.session_id)
    if with_input and row.input is not None:
        spec.input = row.input
    if row.output is not None:
        spec.output = row.output
    status = types_pb2.TaskStatus(
        state=_enum(row.state), creation_time=row.creation_time, events=_events(events)
    )
    if row.completion_time is not None:
        status.completion_time = row.completion_time
    tid = str(row.id)
    return types_pb2.Task(metadata=types_pb2.Metadata(id=tid, name=tid), spec=spec, status=status)


def executor(view: ExecutorView) -> types_pb2.Executor:
    """The Executor message of a live instance (with its process: ``_wire.executor_process``)."""
    msg = types_pb2.Executor(
        metadata=types_pb2.Metadata(id=view.id, name=view.id),
        spec=types_pb2.ExecutorSpec(node=node_name(), resreq=view.resreq, shim=_enum(0)),
        status=types_pb2.ExecutorStatus(state=_enum(view.state), session_id=view.session_id),
    )
    if view.pid is not None and view.start_time is not None:
        add_executor_process(msg, ExecutorProcess(pid=view.pid, start_time=view.start_time))
    return msg


def node(resources: Ledger) -> types_pb2.Node:
    """This machine as the runtime's single Ready node: its capacity, and as allocatable what
    live instances do not hold."""
    name = node_name()
    cap = resources.capacity
    capacity = types_pb2.ResourceRequirement(cpu=cap.cpu, memory=cap.memory, gpu=cap.gpu)
    cpu, memory, gpu = resources.free
    allocatable = types_pb2.ResourceRequirement(cpu=cpu, memory=memory, gpu=gpu)
    return types_pb2.Node(
        metadata=types_pb2.Metadata(id=name, name=name),
        spec=types_pb2.NodeSpec(hostname=name),
        status=types_pb2.NodeStatus(
            state=_enum(1),
            capacity=capacity,
            allocatable=allocatable,
            info=types_pb2.NodeInfo(arch=platform.machine(), os=platform.system().lower()),
            addresses=[types_pb2.NodeAddress(type="Hostname", address=name)],
            last_heartbeat_time=int(time.time()),
        ),
    )
