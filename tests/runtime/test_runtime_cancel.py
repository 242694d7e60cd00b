"""Task cancellation in the runtime (our CancelTask), through real instance processes.

A Pending task ends Cancelled at once; a Running one ends Cancelled once its service stops it
(the instance stays), at once by stopping the instance when the service cannot stop a task
(a handler without ``on_task_cancel``, flamepy's services), or by stopping the instance after
the grace period (1 s here) when the service does not stop it. Never Failed, never dispatched
again; watchers (WatchTask, RunTask) see Cancelled.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from runtime_support import DEADLINE, Frontend, Watcher, events, read_pid, wait_until

from flame_agents._wire import fastpath, types_pb2
from flame_agents._wire import frontend_pb2 as fpb
from flame_agents._wire.cancel import cancel_task_callable
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

STOPPABLE = "cx-stoppable"
BEHAVE = "cx-behave"
FLAMEPY = "cx-flamepy"
CANCELLED = int(types_pb2.Cancelled)


@pytest.fixture(scope="module")
def runtime() -> Iterator[LocalRuntime]:
    """A runtime that gives a cancelled task 1 s before it stops the instance."""
    with LocalRuntime(extra_args=["--cancel-grace", "1"]) as rt:
        yield rt


@pytest.fixture(scope="module")
def fe(runtime: LocalRuntime) -> Iterator[Frontend]:
    with Frontend(runtime.endpoint) as frontend:
        assert frontend.register(STOPPABLE, service="stoppable").return_code == 0
        assert frontend.register(BEHAVE).return_code == 0
        assert frontend.register(FLAMEPY, service="flamepy_raw").return_code == 0
        yield frontend


def _cancel(fe: Frontend, sid: str, tid: str = "") -> list[types_pb2.Task]:
    request = fpb.GetTaskRequest(session_id=sid, task_id=tid)
    return list(cancel_task_callable(fe.channel)(request, timeout=DEADLINE))


def _cancel_events(task: types_pb2.Task) -> list[str]:
    return [text for code, text in events(task) if code == CANCELLED]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_pending_and_running_tasks_end_cancelled(fe: Frontend, tmp_path: Path) -> None:
    """A Pending task is Cancelled at once (event 4) and its watcher ends; a Running task whose
    service stops it ends Cancelled on every watch (WatchTask, RunTask), its instance stays and
    serves the next task, and nothing is dispatched again."""
    sid = "cx-both"
    fe.create_session(sid, STOPPABLE, max_instances=1)
    run_task = fastpath.run_task_callable(fe.channel)
    request = fpb.CreateTaskRequest(
        task=types_pb2.TaskSpec(session_id=sid, input=f"wait:{tmp_path}".encode())
    )
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(lambda: list(run_task(request, timeout=DEADLINE)))
        pid = read_pid(tmp_path)
        pending = fe.create_task(sid, b"echo:b")
        pending_watch = Watcher(fe, sid, pending.metadata.id)
        running_watch = Watcher(fe, sid, "1")
        (answer,) = _cancel(fe, sid, pending.metadata.id)
        assert answer.status.state == types_pb2.Cancelled
        assert _cancel_events(answer) == ["Task was cancelled: it had not started"]
        assert pending_watch.result()[-1].status.state == types_pb2.Cancelled
        (answer,) = _cancel(fe, sid, "1")
        assert answer.status.state == types_pb2.Running
        assert running.result(DEADLINE)[-1].status.state == types_pb2.Cancelled
    assert running_watch.result()[-1].status.state == types_pb2.Cancelled
    assert (tmp_path / "cancelled").exists()
    task = fe.get_task(sid, "1")
    assert [code for code, _ in events(task)] == [0, 1, CANCELLED]
    assert _cancel_events(task)[0].startswith("Cancelled: stopped by the test service")
    assert fe.run(sid, b"pid").spec.output == str(pid).encode()
    status = fe.get_session(sid).status
    assert (status.cancelled, status.succeed, status.failed) == (2, 1, 0)
    fe.close_session(sid)


def test_cancel_of_every_task_in_flight(fe: Frontend, tmp_path: Path) -> None:
    """With no task id, every task of the session that has not ended is cancelled; ended ones
    are left as they are."""
    sid = "cx-all"
    fe.create_session(sid, STOPPABLE, max_instances=1)
    assert fe.run(sid, b"echo:done").status.state == types_pb2.Succeed
    fe.create_task(sid, f"wait:{tmp_path}".encode())
    read_pid(tmp_path)
    fe.create_task(sid, b"echo:3")
    fe.create_task(sid, b"echo:4")
    answers = _cancel(fe, sid)
    assert [(t.metadata.id, t.status.state) for t in answers] == [
        ("2", types_pb2.Running),
        ("3", types_pb2.Cancelled),
        ("4", types_pb2.Cancelled),
    ]
    assert fe.watch(sid, "2")[-1].status.state == types_pb2.Cancelled
    assert fe.get_task(sid, "1").status.state == types_pb2.Succeed
    assert _cancel(fe, sid) == []
    fe.close_session(sid)


def test_a_service_that_cannot_stop_a_task_loses_its_instance(fe: Frontend, tmp_path: Path) -> None:
    """A handler without on_task_cancel: the instance is stopped at once and the task ends
    Cancelled (not Failed, not re-dispatched); a fresh instance serves the next task."""
    sid = "cx-plain"
    fe.create_session(sid, BEHAVE)
    fe.create_task(sid, f"block:{tmp_path}".encode())
    pid = read_pid(tmp_path)
    _cancel(fe, sid, "1")
    task = fe.watch(sid, "1")[-1]
    assert task.status.state == types_pb2.Cancelled
    assert "cannot stop a running task" in _cancel_events(fe.get_task(sid, "1"))[0]
    assert [code for code, _ in events(fe.get_task(sid, "1"))] == [0, 1, CANCELLED]
    wait_until(lambda: _gone(pid), what="the instance stopped")
    assert fe.run(sid, b"pid").spec.output != str(pid).encode()
    fe.close_session(sid)


def test_flamepy_service_is_stopped_to_cancel(fe: Frontend, tmp_path: Path) -> None:
    """flamepy's services have no CancelTask (UNIMPLEMENTED): their instance is stopped and the
    task ends Cancelled."""
    sid = "cx-flamepy"
    fe.create_session(sid, FLAMEPY)
    fe.create_task(sid, f"block:{tmp_path}".encode())
    pid = read_pid(tmp_path)
    _cancel(fe, sid, "1")
    assert fe.watch(sid, "1")[-1].status.state == types_pb2.Cancelled
    assert "cannot stop a running task" in _cancel_events(fe.get_task(sid, "1"))[0]
    wait_until(lambda: _gone(pid), what="the instance stopped")
    fe.close_session(sid)


def test_a_task_not_stopped_within_the_grace_period_loses_its_instance(
    fe: Frontend, tmp_path: Path
) -> None:
    """A service that accepts the cancel but does not stop the task: after the grace period
    the instance is killed and the task ends Cancelled, saying so."""
    sid = "cx-ignore"
    fe.create_session(sid, STOPPABLE)
    fe.create_task(sid, f"ignore:{tmp_path}".encode())
    pid = read_pid(tmp_path)
    (answer,) = _cancel(fe, sid, "1")
    assert answer.status.state == types_pb2.Running
    assert fe.watch(sid, "1")[-1].status.state == types_pb2.Cancelled
    (text,) = _cancel_events(fe.get_task(sid, "1"))
    assert "did not stop it within 1s and was stopped" in text
    assert _gone(pid)
    assert fe.run(sid, b"echo:next").spec.output == b"next"
    fe.close_session(sid)


def test_ended_and_unknown_tasks(fe: Frontend) -> None:
    """Cancelling an ended task answers it unchanged; an unknown session or task is NOT_FOUND,
    a task id that is not a number INVALID_ARGUMENT."""
    sid = "cx-ended"
    fe.create_session(sid, STOPPABLE)
    assert fe.run(sid, b"echo:x").status.state == types_pb2.Succeed
    (answer,) = _cancel(fe, sid, "1")
    assert answer.status.state == types_pb2.Succeed and not answer.spec.HasField("input")
    for args, code in [
        (("cx-missing", ""), grpc.StatusCode.NOT_FOUND),
        ((sid, "9"), grpc.StatusCode.NOT_FOUND),
        ((sid, "x"), grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            _cancel(fe, *args)
        err: Any = info.value
        assert err.code() == code
    fe.close_session(sid)
    (answer,) = _cancel(fe, sid, "1")  # a closed session's tasks are still answered
    assert answer.status.state == types_pb2.Succeed
