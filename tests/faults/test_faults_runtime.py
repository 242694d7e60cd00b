"""Faults of the runtime process: kill -9 during a burst, damaged files at start-up."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultagents import Add, Tally, TallyAgent
from faults_support import no_instances_left, register_behave, register_tally, rng_for, wait_until

from flame_agents import cache, core
from flame_agents.agent import AgentSession, RetryPolicy
from flame_agents.embedded import start_runtime, stop_runtime
from flame_agents.errors import FlameAgentsError
from flame_agents.testing import LocalRuntime
from flame_agents.types import TaskState

pytestmark = pytest.mark.e2e

RETRY = RetryPolicy(max_attempts=60, max_delay=120.0, initial_backoff=0.1, max_backoff=1.0)
AGENT_INVOCATIONS = 70
"""More than the 64 patches after which the agent compacts: a kill may land in a compaction."""
ECHO_TASKS = 60


def _reset_clients() -> None:
    core.reset_default_connection()
    cache.reset_clients()


@pytest.fixture
def env_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRuntime]:
    """A runtime on a kept home whose endpoints stay in the environment across restarts."""
    with LocalRuntime(tmp_path / "home", set_env=False) as rt:
        for key, value in rt.env().items():
            monkeypatch.setenv(key, value)
        _reset_clients()
        try:
            yield rt
        finally:
            _reset_clients()


def test_runtime_kill_9_during_a_burst_loses_nothing(
    env_runtime: LocalRuntime, rep: int, tmp_path: Path
) -> None:
    """kill -9 of a busy runtime: the kill lands while a chosen agent invocation and a chosen
    echo task run; the same client objects carry on after the restart; acknowledged tasks
    survive and re-run; every agent invocation, the one in flight included, applies once."""
    rt = env_runtime
    rng = rng_for("runtime-kill", rep)
    # The invocation in flight at the kill: early, or (every other repetition) at the commit
    # that compacts the journal (64 patches).
    held_invocation = rng.randint(2, 20) if rep % 2 == 0 else 64
    held_task = rng.randint(5, ECHO_TASKS - 5)
    agent_hold, echo_hold = tmp_path / "agent-hold", tmp_path / "echo-hold"
    agent_hold.mkdir()
    echo_hold.mkdir()
    register_tally("r-tally")
    register_behave("r-echo")
    echo = core.create_session("r-echo", max_instances=2)
    acked: dict[str, int] = {}
    errors: list[BaseException] = []
    replies: dict[int, int] = {}
    stop = threading.Event()

    def echo_input(i: int) -> bytes:
        return f"block:{echo_hold}".encode() if i == held_task else f"echo:{i}".encode()

    def echo_client() -> None:
        for i in range(ECHO_TASKS):
            while not stop.is_set():
                try:
                    acked[echo.create_task(echo_input(i)).id] = i
                    break
                except FlameAgentsError as exc:  # runtime down: not acknowledged, try again
                    if not exc.retryable:
                        errors.append(exc)
                        return
                    time.sleep(0.05)

    with AgentSession("r-tally", ctx=Tally(), agent=TallyAgent, retry=RETRY) as agent:

        def agent_client() -> None:
            try:
                for n in range(1, AGENT_INVOCATIONS + 1):
                    hold = str(agent_hold) if n == held_invocation else ""
                    replies[n] = agent.invoke(Add(n=n, hold=hold)).entries
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=f, daemon=True) for f in (echo_client, agent_client)]
        for thread in threads:
            thread.start()
        wait_until(lambda: (agent_hold / "held").exists(), what="the held invocation runs")
        wait_until(lambda: (echo_hold / "pid").exists(), what="the held echo task runs")
        states = [t.state for t in echo.list_tasks()]
        assert TaskState.RUNNING in states, "no echo task was in flight at the kill"
        assert held_invocation not in replies, "the held invocation finished before the kill"
        before = {t.id: t.output for t in echo.list_tasks() if t.state == TaskState.SUCCEED}
        rt.restart(kill=True)  # same client objects from here on: nothing is reset
        for thread in threads:
            thread.join(150)
        stop.set()
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)
        ctx = agent.context()
        assert sorted(ctx.added) == list(range(1, AGENT_INVOCATIONS + 1)), list(ctx.added)
        assert ctx.count == AGENT_INVOCATIONS * (AGENT_INVOCATIONS + 1) // 2
        # The invocation in flight at the kill completed once, in its turn.
        assert replies[held_invocation] == held_invocation

    def all_done() -> bool:
        return all(echo.get_task(tid).state == TaskState.SUCCEED for tid in acked)

    wait_until(all_done, what="every acknowledged task succeeded after the restart")
    assert len(acked) == ECHO_TASKS
    for tid, i in acked.items():
        expected = b"done" if i == held_task else f"{i}|cd=<none>".encode()
        assert echo.get_task(tid).output == expected
    for tid, output in before.items():
        assert echo.get_task(tid).output == output
    echo.close()
    no_instances_left(rt)


def _corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"\x00garbage" * (len(data) // 8 + 1))


@pytest.mark.parametrize("target", ["sqlite", "cache"])
@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_damaged_file_at_start_up_is_named(tmp_path: Path, target: str, how: str) -> None:
    """A truncated or overwritten database or cache file stops the start-up naming the file."""
    home = tmp_path / "home"
    with LocalRuntime(home):
        register_behave("d-echo")
        with core.create_session("d-echo", max_instances=1) as session:
            for i in range(20):
                session.create_task(f"echo:{i}".encode())
            assert session.invoke(b"echo:last") == b"last|cd=<none>"
        ref = cache.put_raw("d-echo/objects", b"x" * 100_000)
    if target == "sqlite":
        damaged = home / "flame.db"
    else:
        damaged = next(
            p for p in (home / "cache").rglob("*.arrow") if ref.key.split("/")[-1] in p.name
        )
    _corrupt(damaged, how)
    kept = damaged.read_bytes()
    with pytest.raises(FlameAgentsError) as failed:
        proc, _ = start_runtime(home, timeout=30)
        # Started after all: stop it before failing the test.
        stop_runtime(home, kill=True)
        proc.wait(30)
    assert str(damaged) in str(failed.value)
    assert damaged.read_bytes() == kept, "the damaged file was changed instead of reported"
