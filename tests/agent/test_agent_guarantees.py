"""Documented agent guarantees (docs/agents.md, docs/reliability.md) on real processes.

One runtime serves the module, started with ``--max-task-attempts 2`` so that a task whose
instance keeps dying is given up after two losses. Faults are placed by the agents of
``guarantee_agents`` at points the test names in the request, and reported through files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from guarantee_agents import (
    AsyncHooksAgent,
    Do,
    Done,
    GateAgent,
    GateContext,
    HooksContext,
    Note,
)

from flame_agents import core
from flame_agents._wire import frontend_pb2
from flame_agents.agent import AgentSession, History, RetryPolicy
from flame_agents.agent._state import StateHandle
from flame_agents.agent._store import CacheStore
from flame_agents.cache import ObjectRef, _raw, _transport, fetch_raw
from flame_agents.errors import (
    AlreadyExistsError,
    CommitConflictError,
    InstanceLostError,
    TaskFailedError,
)
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
SERVICE = HERE / "services" / "guarantee_service.py"
TIMEOUT_SECONDS = 2
"""Task timeout of the ``gate-timeout`` app: far above a normal invocation (milliseconds)."""


def register(name: str, agent: str, **spec: object) -> None:
    """Register application ``name`` serving ``guarantee_agents.<agent>``."""
    core.register_application(
        name, {"command": sys.executable, "arguments": [str(SERVICE), agent], **spec}
    )


@pytest.fixture(scope="module")
def rt() -> Iterator[LocalRuntime]:
    """The module's runtime (tasks fail after two instance losses) with its apps registered."""
    with LocalRuntime(extra_args=["--max-task-attempts", "2"]) as runtime:
        register("gate", "GateAgent")
        register("hooks", "AsyncHooksAgent")
        register(
            "gate-timeout", "GateAgent", labels=[f"flame-agents.task-timeout={TIMEOUT_SECONDS}"]
        )
        yield runtime


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_for(predicate: object, what: str, timeout: float = 60.0) -> None:
    """Poll ``predicate()`` until true, or fail naming ``what``."""
    import time

    end = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < end, f"not reached within {timeout}s: {what}"
        time.sleep(0.01)


def test_timed_out_invocation_is_rerun_by_a_retry_with_its_key(
    rt: LocalRuntime, tmp_path: Path
) -> None:
    """An invocation past its task timeout fails once and commits nothing; retrying it with
    the same idempotency key runs it again, and a further retry returns the recorded reply."""
    runs = tmp_path / "runs"
    req = Do(tag="slow", runs=str(runs), hang_once=str(tmp_path))
    with AgentSession("gate-timeout", ctx=GateContext(), agent=GateAgent) as s:
        with pytest.raises(TaskFailedError, match=rf"timed out after {TIMEOUT_SECONDS}s"):
            s.invoke(req, idempotency_key="turn-1")
        assert len(lines(runs)) == 1, "a timed-out task is not run again by anyone"
        hung_pid = int((tmp_path / "hung").read_text())
        wait_for(lambda: not psutil.pid_exists(hung_pid), "the hung instance killed")
        ctx = s.context()
        assert ctx.count == 0 and ctx.done.tolist() == [], "the killed invocation committed"
        first = s.invoke(req, idempotency_key="turn-1")
        assert first == Done(tag="slow", count=1, pid=first.pid) and first.pid != hung_pid
        assert len(lines(runs)) == 2, "the retry ran the handler again"
        assert s.invoke(req, idempotency_key="turn-1") == first
        assert len(lines(runs)) == 2, "a committed key replays its reply without running"
        assert s.context().done.tolist() == ["slow"]


def test_instance_loss_reaches_the_agent_client_as_retryable(
    rt: LocalRuntime, tmp_path: Path
) -> None:
    """A task whose instance keeps dying fails with InstanceLostError (retryable): without
    retries the client sees it; with the default policy the invocation is retried under its
    key and applied once."""
    with AgentSession("gate", ctx=GateContext(), agent=GateAgent) as s:
        once = AgentSession(session_id=s.id(), agent=GateAgent, retry=RetryPolicy.none())
        lost_runs = tmp_path / "lost-runs"
        with pytest.raises(InstanceLostError, match="instance lost 2 times") as lost:
            once.invoke(Do(tag="lost", runs=str(lost_runs), die_runs=99))
        assert lost.value.retryable
        assert len(lines(lost_runs)) == 2, "--max-task-attempts 2: two losses, then failed"
        assert s.context().count == 0

        runs = tmp_path / "runs"
        done = s.invoke(Do(tag="kept", runs=str(runs), die_runs=2), idempotency_key="k-1")
        assert done.tag == "kept" and done.count == 1
        assert len(lines(runs)) == 3, "two losses failed the first task; its retry ran once"
        tasks = core.open_session(s.id()).list_tasks()
        failures = [t.error_message() for t in tasks if t.is_failed()]
        assert len(failures) == 2 and all(
            f and f.startswith("InstanceLostError: instance lost 2 times") for f in failures
        ), failures
        ctx = s.context()
        assert ctx.count == 1 and ctx.done.tolist() == ["kept"]
        assert s.state().lookup("k-1")[0], "the retry committed under the invocation's key"


def test_async_session_hooks_are_awaited_and_committed(rt: LocalRuntime) -> None:
    """Async on_session_start runs once per session before the first invocation (not again on a
    new instance) and async on_session_end runs when the instance leaves; both are committed."""
    s = AgentSession("hooks", ctx=HooksContext(), agent=AsyncHooksAgent)
    try:
        one = s.invoke(Note(text="one"))
        assert one.started == 1
        os.kill(one.pid, signal.SIGKILL)  # the next invocation gets a fresh instance
        two = s.invoke(Note(text="two"))
        assert two.started == 1 and two.pid != one.pid
    finally:
        s.close()
    # close() returns at once; the instance leaves (its end hook runs) and exits after.
    wait_for(lambda: two.pid not in rt.instance_pids(), "the instance left and exited")
    ctx = s.context()
    assert (ctx.started, ctx.ended) == (1, 1)
    assert ctx.events.tolist() == ["start", "one", "two", "end"]


def test_agent_sessions_are_created_with_one_instance(rt: LocalRuntime, tmp_path: Path) -> None:
    """AgentSession creates its session with max_instances=1: while one invocation runs, the
    others wait for the same instance instead of getting their own."""
    with AgentSession("gate", ctx=GateContext(), agent=GateAgent) as s:
        info = core.get_session(s.id())
        assert info.max_instances == 1
        replies: list[Done] = []
        threads = [
            threading.Thread(
                target=lambda n=n: replies.append(s.invoke(Do(tag=f"t{n}", gate=str(tmp_path))))
            )
            for n in range(3)
        ]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: list(tmp_path.glob("entered-*")), "one invocation in its handler")
            wait_for(
                lambda: core.get_session(s.id()).pending == 2, "the other two invocations queued"
            )
            # The runtime launches for queued tasks as they arrive: by now a second instance
            # would be listed.
            assert core.get_session(s.id()).running == 1 and session_executors(s.id()) == 1
        finally:
            (tmp_path / "release").touch()
            for t in threads:
                t.join(60)
        assert len(replies) == 3 and len({r.pid for r in replies}) == 1
        assert sorted(r.count for r in replies) == [1, 2, 3]


def session_executors(sid: str) -> int:
    """How many instances the runtime lists for session ``sid``."""
    reply = core.default_connection().stub.ListExecutor(frontend_pb2.ListExecutorRequest())
    return sum(1 for e in reply.executors if e.status.session_id == sid)


def cache_object_ids(rt: LocalRuntime, app: str, sid: str) -> set[str]:
    """Ids of the objects stored under ``<app>/<sid>`` in the runtime's cache folder."""
    folder = rt.home / "cache" / app / sid
    return {p.name.split(".")[0] for p in folder.iterdir()} if folder.exists() else set()


def test_a_session_given_a_ctx_is_always_created(rt: LocalRuntime) -> None:
    """With ctx= the session is created from it, never reopened: an existing id is refused
    (AlreadyExistsError) and that session keeps its state; without ctx the same id reopens."""
    sid = "gate-given-ctx"
    with AgentSession("gate", session_id=sid, ctx=GateContext(count=7), agent=GateAgent) as s:
        assert s.invoke(Do(tag="a")).count == 8
        stored = cache_object_ids(rt, "gate", sid)
        with pytest.raises(AlreadyExistsError, match=sid):
            AgentSession("gate", session_id=sid, ctx=GateContext(count=100), agent=GateAgent)
        assert cache_object_ids(rt, "gate", sid) == stored, "the refused create left state behind"
        ctx = s.context()
        assert ctx.count == 8 and ctx.done.tolist() == ["a"]
        again = AgentSession("gate", session_id=sid, agent=GateAgent)
        assert again.id() == sid and again.invoke(Do(tag="b")).count == 9
        other = AgentSession("gate", ctx=GateContext(count=7), agent=GateAgent)
        try:
            assert other.id() != sid and other.context().count == 7
        finally:
            other.close()


def test_fallback_commit_on_a_cache_without_conditional_writes_keeps_the_first_writer(
    rt: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a cache without PATCHIF (forced here), two writers that both pass the version
    check both land a patch; the second is rejected with CommitConflictError and every reader
    ignores its patch, so the first writer wins and the history stays linear."""
    with AgentSession("gate", ctx=GateContext(), agent=GateAgent) as s:
        s.invoke(Do(tag="before"))
        endpoint, key = s.ref.endpoint, s.ref.key
        monkeypatch.setattr(_transport, "unconditional_endpoints", {endpoint})
        first = StateHandle(CacheStore(endpoint), key, GateContext)
        second = StateHandle(CacheStore(endpoint), key, GateContext)
        work_1, work_2 = first.working_copy(), second.working_copy()
        base = first.version
        work_1.count += 1
        work_1.done.append("first")
        work_2.count += 1
        work_2.done.append("second")

        real_send = _raw._send
        interleaved: list[int] = []

        def send(ref: ObjectRef, descriptor: object, data: bytes, op: str) -> ObjectRef:
            # The second writer passed its version check: the first one commits now, before
            # the second writer's patch goes out.
            if not interleaved:
                interleaved.append(1)
                first.commit(work_1, idempotency_key="first", reply=None)
            return real_send(ref, descriptor, data, op)  # type: ignore[arg-type]

        monkeypatch.setattr(_raw, "_send", send)
        with pytest.raises(CommitConflictError):
            second.commit(work_2, idempotency_key="second", reply=None)
        monkeypatch.setattr(_raw, "_send", real_send)
        assert interleaved, "the second writer never got past its version check"

        stored = fetch_raw(ObjectRef(endpoint, key, 0))
        assert [v for v, _ in stored.patches][-2:] == [base + 1, base + 2], "both patches landed"
        reader = StateHandle(CacheStore(endpoint), key, GateContext)
        ctx = reader.working_copy()
        assert ctx.done.tolist() == ["before", "first"] and ctx.count == 2
        assert reader.lookup("first")[0] and not reader.lookup("second")[0]
        # The instance (conditional commits) goes on from the state the first writer left.
        assert s.invoke(Do(tag="after")).count == 3
        assert s.context().done.tolist() == ["before", "first", "after"]


_VIEW_WITHOUT_USER_CODE = """
import importlib.abc, json, sys

refused = []

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"guarantee_agents", "agentdefs"}:
            refused.append(name)
            raise ImportError(f"{name} is not importable here")
        return None

sys.meta_path.insert(0, Refuse())
from flame_agents.cli import main
code = main(["view", "-s", sys.argv[1], "-o", "json"])
print(json.dumps(refused), file=sys.stderr)
sys.exit(code)
"""


def test_view_of_an_agent_session_needs_no_agent_classes(rt: LocalRuntime, tmp_path: Path) -> None:
    """`flame-agents view -s ID` in a process that cannot import the agent's modules shows the
    context as JSON (scalars, history length and last items), version and patch count."""
    ctx = GateContext(done=History(f"old-{n}" for n in range(300)))
    with AgentSession("gate", ctx=ctx, agent=GateAgent) as s:
        s.invoke(Do(tag="x"))
        s.invoke(Do(tag="y"))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        out = subprocess.run(
            [sys.executable, "-c", _VIEW_WITHOUT_USER_CODE, s.id()],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**env, **rt.env()},
            timeout=60,
        )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stderr.splitlines()[-1]) == [], "view tried to import user code"
    state = json.loads(out.stdout)["agent_state"]
    assert state["context"]["count"] == 2
    assert state["context"]["done"]["length"] == 302
    assert state["context"]["done"]["last"][-3:] == ["old-299", "x", "y"]
    assert state["version"] >= 3 and state["patches"] >= 2
