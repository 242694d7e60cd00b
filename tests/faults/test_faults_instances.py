"""Faults of service instances: kill -9 mid-invocation, hung tasks, services that never bind."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from faultagents import Add, Tally, TallyAgent
from faults_support import (
    SERVICES,
    no_instances_left,
    register_behave,
    register_tally,
    rng_for,
    wait_until,
)

from flame_agents import core
from flame_agents.agent import AgentSession, RetryPolicy
from flame_agents.errors import InvalidArgumentError, InvalidStateError, TaskFailedError
from flame_agents.testing import LocalRuntime
from flame_agents.types import TaskState

pytestmark = pytest.mark.e2e

RETRY = RetryPolicy(max_attempts=20, max_delay=120.0, initial_backoff=0.1, max_backoff=1.0)


@pytest.fixture(scope="module")
def rt() -> Iterator[LocalRuntime]:
    """A runtime with the default limits and the tally agent registered."""
    with LocalRuntime() as runtime:
        register_tally("f-tally")
        yield runtime


@pytest.fixture(scope="module")
def strict_rt() -> Iterator[LocalRuntime]:
    """A runtime with short bind limits (2 s to bind, a session pauses after 2 failures)."""
    with LocalRuntime(extra_args=["--bind-timeout", "2", "--bind-retry-limit", "2"]) as runtime:
        yield runtime


def test_instance_kill_9_mid_invocation_applies_each_addition_once(
    rt: LocalRuntime, rep: int
) -> None:
    """kill -9 of the agent's instance at random moments: every invoke returns, each once."""
    rng = rng_for("instance-kill", rep)
    count = 20
    # Kill while chosen invocations run (by index, not by clock: a faster runtime must not
    # let the burst end before the first kill), a random moment into the handler's sleep.
    targets = sorted(rng.sample(range(1, count + 1), rng.randint(1, 3)))
    sleeps = [rng.uniform(0.02, 0.1) for _ in range(count + 1)]
    with AgentSession("f-tally", ctx=Tally(), agent=TallyAgent, retry=RETRY, timeout=60) as s:
        s.invoke(Add(n=0))  # an instance is up before the first kill
        errors: list[BaseException] = []
        started = {n: threading.Event() for n in targets}

        def client() -> None:
            try:
                for n in range(1, count + 1):
                    if n in started:
                        started[n].set()
                    s.invoke(Add(n=n, sleep=sleeps[n]))
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        killed = 0
        for n in targets:
            if not started[n].wait(60):
                break
            time.sleep(rng.uniform(0.0, sleeps[n]))
            pids = rt.instance_pids()
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed += 1 if pids else 0
        thread.join(120)
        events = core.get_session(s.id()).events
        assert not thread.is_alive() and not errors, (errors, events)
        ctx = s.context()
        assert sorted(ctx.added) == list(range(count + 1)), f"{killed} kills: {list(ctx.added)}"
        assert ctx.count == count * (count + 1) // 2
    assert killed >= 1, "the invocations ended before the first kill"
    print(f"faults: {killed} instance kill(s) during {count} invocations, nothing lost")
    no_instances_left(rt)


def test_hung_task_fails_after_the_application_timeout(rt: LocalRuntime, rep: int) -> None:
    """A task past its application's timeout fails with a clear message; the session goes on."""
    rng = rng_for("hung-task", rep)
    timeout = round(rng.uniform(0.3, 1.0), 2)
    app = f"f-hang-{rep}"
    register_behave(app, labels=[f"flame-agents.task-timeout={timeout}"])
    session = core.create_session(app)
    try:
        with pytest.raises(TaskFailedError) as failed:
            session.invoke(b"sleep:300")
        text = str(failed.value)
        assert f"timed out after {timeout:g}s" in text and "flame-agents.task-timeout" in text
        assert session.invoke(b"echo:after") == b"after|cd=<none>"
        tasks = session.list_tasks()
        assert [t.state for t in tasks] == [TaskState.FAILED, TaskState.SUCCEED]
    finally:
        session.close()
    no_instances_left(rt)


def test_runtime_default_timeout_and_label_override() -> None:
    """--task-timeout fails hung tasks of apps without the label; label 0 disables it."""
    with LocalRuntime(extra_args=["--task-timeout", "0.5"]):
        register_behave("f-default")
        register_behave("f-unlimited", labels=["flame-agents.task-timeout=0"])
        with (
            core.create_session("f-default") as session,
            pytest.raises(TaskFailedError, match=r"timed out after 0\.5s"),
        ):
            session.invoke(b"sleep:300")
        with core.create_session("f-unlimited") as session:
            assert session.invoke(b"sleep:1.5") == b"slept"


def test_malformed_timeout_label_is_refused(rt: LocalRuntime) -> None:
    """Registering a non-numeric task timeout is refused with a message naming the label."""
    with pytest.raises(InvalidArgumentError, match=r"flame-agents\.task-timeout=soon"):
        register_behave("f-bad-label", labels=["flame-agents.task-timeout=soon"])


def test_invoke_on_a_session_that_cannot_start_fails_with_the_reason(
    strict_rt: LocalRuntime,
) -> None:
    """invoke() on a session paused by bind failures raises at once, naming the last failure."""
    app = "f-exits-at-start"
    core.register_application(
        app,
        {
            "command": sys.executable,
            "arguments": [str(SERVICES / "hang_on_start.py"), "0", "3"],
        },
    )
    session = core.create_session(app)
    try:
        with pytest.raises(InvalidStateError, match="stays Pending") as info:
            session.invoke(b"echo:x", timeout=120)
        assert "exit code 3" in str(info.value)
        (task,) = session.list_tasks()
        assert task.state == TaskState.PENDING  # Flame's semantics: the task is kept
        with pytest.raises(InvalidStateError, match="retry limit"):
            session.invoke(b"echo:y", timeout=120)  # a later invoke is told at once too
    finally:
        session.close()
    no_instances_left(strict_rt)


def test_service_that_never_binds_pauses_the_session(strict_rt: LocalRuntime, rep: int) -> None:
    """A service exiting at start-up or never opening its socket: bind events, nothing hangs."""
    rng = rng_for("never-binds", rep)
    exits = rng.random() < 0.5
    sleep, code = (rng.uniform(0.0, 0.3), rng.randint(1, 5)) if exits else (300.0, 0)
    app = f"f-nobind-{rep}"
    core.register_application(
        app,
        {
            "command": sys.executable,
            "arguments": [str(SERVICES / "hang_on_start.py"), str(sleep), str(code)],
        },
    )
    session = core.create_session(app)
    try:
        task = session.create_task(b"echo:x")

        def paused() -> list[tuple[int, str]]:
            events = [(e.code, e.message or "") for e in core.get_session(session.id).events]
            return events if any(c == 1002 for c, _ in events) else []

        events = wait_until(paused, what="session paused after bind failures")
        bind_failures = [m for c, m in events if c == 1001]
        assert len(bind_failures) == 2
        expected = f"exit code {code}" if exits else "did not bind"
        assert all(expected in m for m in bind_failures), bind_failures
        assert session.get_task(task.id).state == TaskState.PENDING
    finally:
        session.close()
    assert session.get_task(task.id).state == TaskState.CANCELLED
    no_instances_left(strict_rt)
