"""Agent sessions on real processes: an embedded runtime, instance processes and the cache."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentdefs import Add, Answer, Ask, ChatAgent, ChatContext, CounterAgent, CounterContext, Total

from flame_agents import core
from flame_agents.agent import AgentSession, History
from flame_agents.agent._state import StateHandle
from flame_agents.agent._store import CacheStore
from flame_agents.cache import ObjectRef, fetch_raw
from flame_agents.errors import (
    CommitConflictError,
    ContextValidationError,
    InvalidArgumentError,
    TaskFailedError,
)
from flame_agents.runtime.cache.journal import KIND_PATCH, read_journal
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

SERVICE = Path(__file__).resolve().parent / "services" / "agent_service.py"
HERE = Path(__file__).resolve().parent


def register(name: str, agent: str) -> None:
    """Register application ``name`` serving ``agentdefs.<agent>``."""
    core.register_application(name, {"command": sys.executable, "arguments": [str(SERVICE), agent]})


@pytest.fixture(scope="module")
def apps(runtime: LocalRuntime) -> Iterator[LocalRuntime]:
    register("chat", "ChatAgent")
    register("counter", "CounterAgent")
    yield runtime


def test_typed_round_trip_and_reopen_from_another_process(apps: LocalRuntime) -> None:
    """Replies and context are typed; another process reopens the session by id and continues."""
    with AgentSession("chat", ctx=ChatContext(system_prompt="be brief"), agent=ChatAgent) as s:
        assert s.invoke(Ask(text="hi")) == Answer(text="HI", turns=1)
        ctx = s.context()
        assert isinstance(ctx, ChatContext) and ctx.system_prompt == "be brief"
        assert [m.text for m in ctx.messages] == ["hi"]
        script = (
            "import sys; sys.path.insert(0, sys.argv[1])\n"
            "from agentdefs import Ask, ChatContext\n"
            "from flame_agents import AgentSession\n"
            "s = AgentSession(session_id=sys.argv[2], context_type=ChatContext)\n"
            "print(s.invoke(Ask(text='from afar')).turns, s.context().turns)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script, str(HERE), s.id()],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **apps.env()},
            check=True,
        )
        assert out.stdout.splitlines()[-1].split() == ["2", "2"]
        assert [m.text for m in s.context().messages] == ["hi", "from afar"]


def test_failures_leave_state_unchanged_and_keys_replay(apps: LocalRuntime) -> None:
    """Handler errors and invalid contexts fail the call only; a repeated key replays, and is
    refused with a different request."""
    with AgentSession("chat", ctx=ChatContext(), agent=ChatAgent) as s:
        first = s.invoke(Ask(text="one"), idempotency_key="turn-1")
        with pytest.raises(TaskFailedError, match="ValueError: the handler exploded"):
            s.invoke(Ask(text="explode"))
        with pytest.raises(ContextValidationError):
            s.invoke(Ask(text="invalidate"))
        assert s.invoke(Ask(text="one"), idempotency_key="turn-1") == first
        with pytest.raises(InvalidArgumentError, match="already used by a different request"):
            s.invoke(Ask(text="other"), idempotency_key="turn-1")
        ctx = s.context()
        assert ctx.turns == 1 and [m.text for m in ctx.messages] == ["one"]


def test_agent_errors_reach_the_client_with_their_fields(apps: LocalRuntime) -> None:
    """An error the instance's agent layer raised with fields (a key reused for another
    request) reaches the client across real processes with the same class and fields."""
    with AgentSession("chat", ctx=ChatContext(), agent=ChatAgent) as s:
        s.invoke(Ask(text="one"), idempotency_key="turn-1")
        with pytest.raises(InvalidArgumentError) as info:
            s.invoke(Ask(text="other"), idempotency_key="turn-1")
    err = info.value
    assert err.idempotency_key == "turn-1"  # type: ignore[attr-defined]
    assert err.state_key == s.ref.key  # type: ignore[attr-defined]
    assert err.session_id == s.id() and err.remote_type == "InvalidArgumentError"  # type: ignore[attr-defined]
    assert "Remote error (JSON)" not in err.message


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_9_of_the_instance_during_200_invocations(apps: LocalRuntime) -> None:
    """Every invoke returns and the context holds each of 200 increments exactly once."""
    kill_points = set(range(24, 190, 25))  # after these invocations: 7 kills
    requests: queue.Queue[int | None] = queue.Queue()
    kills: list[int] = []

    def killer() -> None:
        # Kill as soon as asked, while the client goes on with its next invocation, so the kill
        # usually lands mid-task. The count of kills does not depend on the machine's speed.
        while requests.get() is not None:
            deadline = time.monotonic() + 60
            while not (pids := apps.instance_pids()) and time.monotonic() < deadline:
                time.sleep(0.005)  # the instance is being replaced after the previous kill
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            kills.append(len(pids))

    with AgentSession("counter", ctx=CounterContext(), agent=CounterAgent) as s:
        thread = threading.Thread(target=killer)
        thread.start()
        try:
            for i in range(200):
                s.invoke(Add(n=i))
                if i in kill_points:
                    requests.put(i)
        finally:
            requests.put(None)
            thread.join()
        ctx = s.context()
    assert len(kills) == len(kill_points) and all(kills), kills
    assert ctx.count == sum(range(200))
    assert ctx.added.tolist() == list(range(200))


def test_many_client_threads_lose_no_update(apps: LocalRuntime) -> None:
    """Concurrent invocations of one session are serialized: no update is lost."""
    with AgentSession("counter", ctx=CounterContext(), agent=CounterAgent) as s:
        threads = [
            threading.Thread(target=lambda: [s.invoke(Add(n=1)) for _ in range(15)])
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ctx = s.context()
        assert ctx.count == 120 and len(ctx.added) == 120


def test_a_stale_second_writer_cannot_fork_history(apps: LocalRuntime) -> None:
    """A writer holding an old version is rejected by the cache; the history stays linear."""
    with AgentSession("counter", ctx=CounterContext(), agent=CounterAgent) as s:
        s.invoke(Add(n=1))
        stale: StateHandle[CounterContext] = StateHandle(
            CacheStore(s.ref.endpoint), s.ref.key, CounterContext
        )
        work = stale.working_copy()
        s.invoke(Add(n=2))  # the instance moves the state on
        work.count += 100
        work.added.append(100)
        with pytest.raises(CommitConflictError):
            stale.commit(work, idempotency_key="stale", reply=None)
        assert s.context().added.tolist() == [1, 2]


def test_two_instances_of_one_session_keep_one_history(apps: LocalRuntime) -> None:
    """With max_instances=2 every accepted invocation appears once; others conflict cleanly."""
    with AgentSession("counter", ctx=CounterContext(), agent=CounterAgent, max_instances=2) as s:
        accepted: list[int] = []
        conflicts: list[int] = []
        lock = threading.Lock()

        def client(base: int) -> None:
            for i in range(20):
                n = base + i
                try:
                    s.invoke(Add(n=n))
                except CommitConflictError:
                    with lock:
                        conflicts.append(n)
                else:
                    with lock:
                        accepted.append(n)

        threads = [threading.Thread(target=client, args=(1000 * k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        added = s.context().added.tolist()
        assert sorted(added) == sorted(accepted)
        assert len(set(added)) == len(added) == 80 - len(conflicts)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("kill", [False, True], ids=["graceful", "kill-9"])
def test_runtime_restart_keeps_sessions(kill: bool) -> None:
    """After the runtime restarts, a session reopens by id with its context and continues."""
    with LocalRuntime() as rt:
        register("counter", "CounterAgent")
        s = AgentSession("counter", ctx=CounterContext(), agent=CounterAgent)
        for _ in range(5):
            s.invoke(Add(n=1))
        sid = s.id()
        rt.restart(kill=kill)
        again = AgentSession(session_id=sid, agent=CounterAgent)
        assert again.context().count == 5
        assert again.invoke(Add(n=1)).count == 6
        assert again.context().added.tolist() == [1] * 6
        again.close()


def test_instance_logs_bind_session_task_and_app(apps: LocalRuntime) -> None:
    """The instance's log lines carry session_id, task_id and app."""
    with AgentSession("counter", ctx=CounterContext(), agent=CounterAgent) as s:
        s.invoke(Add(n=1))
        sid = s.id()
    deadline = time.monotonic() + 10
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = [
            line
            for f in (apps.home / "logs").glob("*.err")
            for line in f.read_text(errors="replace").splitlines()
            if "invocation committed" in line and f"session_id={sid}" in line
        ]
        if lines:
            break
        time.sleep(0.1)
    assert lines and "app=counter" in lines[0] and "task_id=" in lines[0]


def test_patch_bytes_per_invocation_do_not_grow_with_history(apps: LocalRuntime) -> None:
    """Patch payloads and patch records on disk are the same size at 1k and 50k messages."""

    def sizes(size: int) -> tuple[list[int], list[int]]:
        ctx = CounterContext(added=History(range(size)))
        with AgentSession("counter", ctx=ctx, agent=CounterAgent) as s:
            for _ in range(20):
                s.invoke(Add(n=7))
            raw = fetch_raw(ObjectRef(s.ref.endpoint, s.ref.key, 0))
            payloads = [len(data) for _, data in raw.patches][-15:]
            app, sid, object_id = s.ref.key.split("/")
            journal = apps.home / "cache" / app / sid / f"{object_id}.journal"
            records = read_journal(journal).records
            return payloads, [r.disk_size for r in records if r.kind == KIND_PATCH][-15:]

    (small, small_disk), (large, large_disk) = sizes(1_000), sizes(50_000)
    # Only the digits of the running count differ between the two sessions.
    assert max(large) - min(small) <= 8 and max(large) < 400
    assert max(large_disk) - min(small_disk) <= 64


def test_reply_type_is_imported_by_name(apps: LocalRuntime) -> None:
    """Without agent= the reply type recorded by the instance is imported and validated."""
    with AgentSession("counter", ctx=CounterContext()) as s:
        assert isinstance(s.invoke(Add(n=1)), Total)


def test_named_session_is_created_once_then_reopened(apps: LocalRuntime) -> None:
    """AgentSession(app, session_id=...) creates a missing session and reopens an existing one."""
    first = AgentSession("counter", session_id="counter-named", agent=CounterAgent)
    first.invoke(Add(n=4))
    again = AgentSession("counter", session_id="counter-named", agent=CounterAgent)
    assert again.invoke(Add(n=1)).count == 5
    again.close()


def test_cli_view_shows_agent_state_without_user_code(
    apps: LocalRuntime, capsys: pytest.CaptureFixture[str]
) -> None:
    """`flame-agents view -s ID -o json` shows the context, version, patch count and size."""
    from flame_agents.cli import main

    with AgentSession("chat", ctx=ChatContext(system_prompt="terse"), agent=ChatAgent) as s:
        for text in ("a", "b", "c"):
            s.invoke(Ask(text=text))
        capsys.readouterr()
        assert main(["view", "-s", s.id(), "-o", "json"]) == 0
        state = json.loads(capsys.readouterr().out)["agent_state"]
    assert state["context"]["system_prompt"] == "terse"
    assert state["context"]["turns"] == 3
    assert state["context"]["messages"]["length"] == 3
    assert [m["text"] for m in state["context"]["messages"]["last"]] == ["a", "b", "c"]
    assert state["version"] >= 4 and state["patches"] >= 1 and state["bytes"] > 0
