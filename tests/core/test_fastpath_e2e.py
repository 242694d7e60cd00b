"""The RunTask fast path between our client and our runtime (real runtime, real service).

The plain-wire fallback is covered by tests/core/test_client_fake.py (a Frontend without
RunTask) and by the flamepy conformance suite (flamepy never calls RunTask).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from flame_agents import core
from flame_agents._wire import fastpath, frontend_pb2, types_pb2
from flame_agents.core._fastpath import start_task
from flame_agents.errors import (
    InvalidStateError,
    InvocationTimeoutError,
    NotFoundError,
    TaskFailedError,
)
from flame_agents.testing import LocalRuntime
from flame_agents.types import TaskState

pytestmark = pytest.mark.e2e

SERVICE = Path(__file__).resolve().parent / "services" / "raw_service.py"
APP = "core-fast"


@pytest.fixture(scope="module")
def app(runtime: LocalRuntime) -> Iterator[str]:
    """The raw flamepy service, registered once for the module."""
    core.register_application(
        APP, {"command": sys.executable, "arguments": [str(SERVICE)], "delay_release": 5}
    )
    yield APP


def test_invoke_uses_run_task_and_records_the_task(app: str, conn: core.Connection) -> None:
    """invoke() goes over RunTask, and the task is stored with input and output like any other."""
    assert conn.fast_path is None
    with conn.create_session(app) as ssn:
        assert ssn.invoke(b"x") == b"echo:x|cd=<none>"
        assert conn.fast_path is True
        (task,) = ssn.list_tasks()
        assert task.state == TaskState.SUCCEED
        assert task.input == b"x" and task.output == b"echo:x|cd=<none>"


def test_run_task_streams_created_then_terminal_without_input_echo(
    app: str, conn: core.Connection
) -> None:
    """RunTask sends two messages: the Pending task, then the terminal one, neither with input."""
    with conn.create_session(app) as ssn:
        request = frontend_pb2.CreateTaskRequest(
            task=types_pb2.TaskSpec(session_id=ssn.id, input=b"big" * 1000)
        )
        messages = list(conn.run_task(request, timeout=60))
        assert [m.status.state for m in messages] == [types_pb2.Pending, types_pb2.Succeed]
        assert not any(m.spec.HasField("input") for m in messages)
        assert messages[0].metadata.id == messages[1].metadata.id
        assert messages[1].spec.output.startswith(b"echo:big")
        assert not messages[1].status.events  # events only for failed tasks


def test_terminal_first_sends_a_quick_task_in_one_message(app: str, conn: core.Connection) -> None:
    """With the terminal-first metadata a quick task is one message; a slow one still two."""
    with conn.create_session(app) as ssn:
        ssn.invoke(b"warm")  # the instance is up, so the next task is quick

        def messages(data: bytes) -> list[types_pb2.Task]:
            request = frontend_pb2.CreateTaskRequest(
                task=types_pb2.TaskSpec(session_id=ssn.id, input=data)
            )
            return list(conn.run_task(request, timeout=60, metadata=fastpath.TERMINAL_FIRST))

        quick = messages(b"q")
        assert [m.status.state for m in quick] == [types_pb2.Succeed]
        assert quick[0].metadata.id and quick[0].spec.output == b"echo:q|cd=<none>"
        slow = messages(b"sleep:0.5")
        assert [m.status.state for m in slow][1:] == [types_pb2.Succeed]
        assert slow[0].status.state in (types_pb2.Pending, types_pb2.Running)


def test_failed_task_carries_the_service_text(app: str, conn: core.Connection) -> None:
    """A failing handler raises TaskFailedError with its own message over the fast path."""
    with conn.create_session(app) as ssn:
        with pytest.raises(TaskFailedError, match="boom here") as info:
            ssn.invoke(b"fail:boom here")
        assert info.value.fields["task_id"] == "1"
        assert conn.fast_path is True


def test_timeout_names_the_task_which_keeps_running(app: str, conn: core.Connection) -> None:
    """invoke(timeout=) raises InvocationTimeoutError with the task id; the task still finishes."""
    with conn.create_session(app) as ssn:
        with pytest.raises(InvocationTimeoutError) as info:
            ssn.invoke(b"sleep:1.5", timeout=0.5)
        task_id = info.value.fields["task_id"]
        done = core._tasks.wait_task(conn, ssn.id, task_id, timeout=60)
        assert done.output == b"echo:sleep:1.5|cd=<none>"


def test_closed_and_unknown_sessions_fail_at_creation(app: str, conn: core.Connection) -> None:
    """Creating over RunTask refuses a closed session and an unknown one, as CreateTask does."""
    ssn = conn.create_session(app)
    ssn.close()
    with pytest.raises(InvalidStateError, match="closed session"):
        ssn.invoke(b"x")
    with pytest.raises(NotFoundError):
        start_task(conn, "no-such-session", b"x", timeout=30)


def test_run_futures_resolve_over_the_fast_path(app: str, conn: core.Connection) -> None:
    """run() returns after creation and its futures resolve with each task's own output."""
    with conn.create_session(app, max_instances=2) as ssn:
        futures = [ssn.run(f"{i}".encode()) for i in range(8)]
        assert [f.result(timeout=60) for f in futures] == [
            f"echo:{i}|cd=<none>".encode() for i in range(8)
        ]
        assert len(ssn.list_tasks()) == 8


def test_wait_follows_the_task_by_id_when_the_runtime_restarts() -> None:
    """A stream broken by a runtime restart mid-task still ends with the task's output."""
    with LocalRuntime(set_env=False) as rt, core.connect(rt.endpoint) as conn:
        conn.register_application(
            APP, {"command": sys.executable, "arguments": [str(SERVICE)], "delay_release": 5}
        )
        ssn = conn.create_session(APP)
        started = start_task(conn, ssn.id, b"sleep:2", timeout=120)
        assert started is not None
        rt.restart()
        done = started.wait()
        assert done.state == TaskState.SUCCEED
        assert done.output == b"echo:sleep:2|cd=<none>"
        ssn.close()


def test_a_cancelled_stream_is_not_a_fast_path_refusal(app: str, conn: core.Connection) -> None:
    """Only UNIMPLEMENTED turns the fast path off; other errors leave it on."""
    with conn.create_session(app) as ssn:
        ssn.invoke(b"warm")
        request = frontend_pb2.CreateTaskRequest(task=types_pb2.TaskSpec(session_id="missing"))
        with pytest.raises(grpc.RpcError):
            next(conn.run_task(request, timeout=30))
        assert ssn.invoke(b"again") == b"echo:again|cd=<none>"
        assert conn.fast_path is True
