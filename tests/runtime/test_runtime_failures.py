"""Failure handling: lost instances, repeated deaths, bind failures, socket timeouts."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_support import Frontend, Watcher, events, iter_codes, read_pid, wait_until

from flame_agents._wire import frontend_pb2 as fpb
from flame_agents._wire import types_pb2
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

APP = "fail-app"


@pytest.fixture(scope="module")
def fe(runtime: LocalRuntime) -> Iterator[Frontend]:
    with Frontend(runtime.endpoint) as frontend:
        assert frontend.register(APP).return_code == 0
        yield frontend


def paused_session(fe: Frontend, sid: str) -> types_pb2.Session:
    """The session once it carries the retry-limit event 1002."""

    def probe() -> types_pb2.Session | None:
        s = fe.get_session(sid)
        return s if 1002 in set(iter_codes(s)) else None

    return wait_until(probe, what=f"retry limit event of {sid}")


def test_killed_instance_task_is_redispatched(fe: Frontend, tmp_path: Path) -> None:
    """kill -9 of an instance mid-task puts the task back to Pending and a fresh one runs it."""
    fe.create_session("f-kill", APP)
    task = fe.create_task("f-kill", f"block:{tmp_path}".encode())
    watcher = Watcher(fe, "f-kill", task.metadata.id)
    pid = read_pid(tmp_path)
    os.kill(pid, signal.SIGKILL)
    final = watcher.result()[-1]
    assert final.status.state == types_pb2.Succeed and final.spec.output == b"done"
    got = fe.get_task("f-kill", task.metadata.id)
    requeued = [m for c, m in events(got) if c == 0 and "lost" in m]
    assert len(requeued) == 1 and "signal 9" in requeued[0] and "attempt 2 of 3" in requeued[0]
    # The dead instance does not fail later tasks.
    assert fe.run("f-kill", b"echo:after").spec.output == b"after|cd=<none>"
    fe.close_session("f-kill")


def test_repeated_deaths_fail_the_task_clearly(fe: Frontend) -> None:
    """A task whose instance dies three times fails with a message naming the losses."""
    fe.create_session("f-die", APP)
    final = fe.run("f-die", b"die")
    assert final.status.state == types_pb2.Failed
    failure = [m for c, m in events(final) if c == 3]
    assert failure and failure[0].startswith(
        "InstanceLostError: instance lost 3 times while running task 1"
    )
    assert "signal 9" in failure[0]
    assert fe.run("f-die", b"echo:fine").status.state == types_pb2.Succeed
    fe.close_session("f-die")


def test_enter_failure_records_bind_events(fe: Frontend) -> None:
    """OnSessionEnter failures give five 1001 events, then one 1002; tasks stay Pending."""
    fe.create_session("f-refuse", APP, common_data=b"refuse")
    task = fe.create_task("f-refuse", b"echo:x")
    for _ in range(3):  # more demand = instances bind (and fail) in parallel: a faster test
        fe.create_task("f-refuse", b"echo:y")
    session = paused_session(fe, "f-refuse")
    codes = list(iter_codes(session))
    assert codes.count(1001) == 5 and codes.count(1002) == 1
    first = session.status.events[0].message
    assert "failed to bind session with return_code 12" in first
    assert "on_session_enter failed: this service refuses the session" in first
    assert fe.get_task("f-refuse", task.metadata.id).status.state == types_pb2.Pending
    wait_until(lambda: not fe.executors("f-refuse"), what="failed instances stopped")
    closed = fe.close_session("f-refuse")
    assert closed.status.cancelled == 4


def test_missing_command_is_a_bind_failure(fe: Frontend) -> None:
    """A command that cannot start is bind failure code 11, never a hang."""
    fe.stub.RegisterApplication(
        fpb.RegisterApplicationRequest(
            name="f-nocmd",
            application=types_pb2.ApplicationSpec(command="/nonexistent/service-binary"),
        )
    )
    fe.create_session("f-nocmd-s", "f-nocmd")
    fe.create_task("f-nocmd-s", b"x")
    session = paused_session(fe, "f-nocmd-s")
    assert "return_code 11" in session.status.events[0].message
    fe.close_session("f-nocmd-s")


def test_socket_timeout_then_close(tmp_path: Path) -> None:
    """A service that never binds times out (1001 x5, 1002); closing ends the pending watch."""
    with (
        LocalRuntime(set_env=False, extra_args=["--bind-timeout", "0.3"]) as rt,
        Frontend(rt.endpoint) as fe,
    ):
        fe.stub.RegisterApplication(
            fpb.RegisterApplicationRequest(
                name="sleeper",
                application=types_pb2.ApplicationSpec(
                    command=sys.executable, arguments=["-c", "import time; time.sleep(300)"]
                ),
            )
        )
        fe.create_session("f-sleep", "sleeper")
        task = fe.create_task("f-sleep", b"x")
        watcher = Watcher(fe, "f-sleep", task.metadata.id)
        session = paused_session(fe, "f-sleep")
        assert list(iter_codes(session)).count(1001) == 5
        assert "within 0.3s" in session.status.events[0].message
        assert fe.get_task("f-sleep", task.metadata.id).status.state == types_pb2.Pending
        wait_until(lambda: not rt.instance_pids(), what="timed-out services stopped")
        fe.close_session("f-sleep")
        assert watcher.result()[-1].status.state == types_pb2.Cancelled


def test_idle_instance_death_is_noticed(fe: Frontend) -> None:
    """An idle instance killed by SIGKILL is replaced at once and costs no task an attempt."""
    fe.create_session("f-idle", APP, min_instances=1)
    pid = int(fe.run("f-idle", b"pid").spec.output)
    old = {e.metadata.id for e in fe.executors("f-idle")}
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: {e.metadata.id for e in fe.executors("f-idle")} - old,
        what="replacement instance for min_instances",
    )
    after = fe.run("f-idle", b"pid")
    assert after.status.state == types_pb2.Succeed and int(after.spec.output) != pid
    assert not [m for c, m in events(after) if c == 0 and "lost" in m]
    fe.close_session("f-idle")
