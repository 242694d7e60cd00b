"""Cancelling a running agent turn, on real processes: ``AgentSession.cancel()`` from another
thread or process, ``invoke(timeout=, cancel_on_timeout=True)`` and Ctrl-C in the client.

The turn changes its context before it is cancelled; the change is never committed, the task
ends CANCELLED, the caller's ``invoke`` raises ``Cancelled``, and the session serves the next
invocation. A sync handler stops at its next ``emit``/``step`` (``turn.cancelled`` is True
first); an async handler gets ``asyncio.CancelledError``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from cancel_agents import AsyncWorker, CountContext, Counted, SyncWorker, Work

from flame_agents import AgentSession, Cancelled, core
from flame_agents.testing import LocalRuntime
from flame_agents.types import TaskState

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
SERVICE = HERE / "services" / "cancel_service.py"
WAIT = 60.0
AGENTS = {"sync-worker": SyncWorker, "async-worker": AsyncWorker}


@pytest.fixture(scope="module")
def rt() -> Iterator[LocalRuntime]:
    with LocalRuntime() as runtime:
        for app, agent in AGENTS.items():
            core.register_application(
                app,
                {"command": sys.executable, "arguments": [str(SERVICE), agent.__name__]},
            )
        yield runtime


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < end, f"not reached within {WAIT}s: {what}"
        time.sleep(0.01)


def cancelled_tasks(sid: str) -> int:
    """How many of the session's tasks ended CANCELLED (the others: its probe, later turns)."""
    return sum(t.state == TaskState.CANCELLED for t in core.open_session(sid).list_tasks())


def assert_cancelled(running: Future[Counted]) -> None:
    with pytest.raises(Cancelled):
        running.result(WAIT)


def assert_unchanged_then_serves(s: AgentSession[CountContext]) -> None:
    """Nothing of the cancelled turn was committed, and the session runs the next one."""
    ctx = s.context()
    assert ctx.count == 0 and ctx.notes.tolist() == []
    assert s.invoke(Work()) == Counted(count=1)
    assert s.context().notes.tolist() == ["quick"]


@pytest.mark.parametrize("mode", ["emit", "poll"])
def test_cancel_stops_a_sync_handler_at_its_next_turn_operation(
    rt: LocalRuntime, pool: ThreadPoolExecutor, tmp_path: Path, mode: str
) -> None:
    """cancel() from another thread: the sync handler stops at its next emit (or, polling
    turn.cancelled, at its next step, whose function does not run)."""
    with AgentSession("sync-worker", ctx=CountContext(), agent=SyncWorker) as s:
        running = pool.submit(s.invoke, Work(folder=str(tmp_path), mode=mode))
        wait_for((tmp_path / "entered").exists, "the turn is running")
        s.cancel()
        assert_cancelled(running)
        if mode == "poll":
            assert (tmp_path / "saw-cancelled").exists(), "turn.cancelled turned True"
            assert not (tmp_path / "step-ran").exists(), "a step after the cancel ran"
        assert cancelled_tasks(s.id()) == 1
        assert_unchanged_then_serves(s)


def test_a_sync_handler_that_never_looks_runs_on_and_commits_nothing(
    rt: LocalRuntime, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    """A handler that does not stop when turn.cancelled turns True (it calls no step, emit or
    interrupt) runs to its end; its result is discarded: the caller gets Cancelled and the
    context is unchanged."""
    with AgentSession("sync-worker", ctx=CountContext(), agent=SyncWorker) as s:
        running = pool.submit(s.invoke, Work(folder=str(tmp_path), mode="ignore"))
        wait_for((tmp_path / "entered").exists, "the turn is running")
        cancelling = pool.submit(s.cancel)
        wait_for((tmp_path / "cancel-seen").exists, "the cancel reached the turn")
        (tmp_path / "release").touch()
        cancelling.result(WAIT)
        assert_cancelled(running)
        assert cancelled_tasks(s.id()) == 1
        assert_unchanged_then_serves(s)


def test_cancel_raises_cancelled_error_in_an_async_handler(
    rt: LocalRuntime, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    with AgentSession("async-worker", ctx=CountContext(), agent=AsyncWorker) as s:
        running = pool.submit(s.invoke, Work(folder=str(tmp_path), mode="sleep"))
        wait_for((tmp_path / "entered").exists, "the turn is running")
        s.cancel()
        assert_cancelled(running)
        assert (tmp_path / "got-cancelled").read_text() == "True"
        assert cancelled_tasks(s.id()) == 1
        assert_unchanged_then_serves(s)


def test_cancel_from_another_process_by_session_id(
    rt: LocalRuntime, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    with AgentSession("async-worker", ctx=CountContext(), agent=AsyncWorker) as s:
        running = pool.submit(s.invoke, Work(folder=str(tmp_path), mode="sleep"))
        wait_for((tmp_path / "entered").exists, "the turn is running")
        script = (
            "import sys\n"
            "from flame_agents import AgentSession\n"
            "AgentSession(session_id=sys.argv[1]).cancel()\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, s.id()],
            env={**os.environ, **rt.env()},
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert done.returncode == 0, done.stderr
        assert_cancelled(running)
        assert_unchanged_then_serves(s)


def test_timeout_with_cancel_on_timeout_cancels_the_turn(rt: LocalRuntime, tmp_path: Path) -> None:
    with AgentSession("async-worker", ctx=CountContext(), agent=AsyncWorker) as s:
        with pytest.raises(Cancelled):
            s.invoke(Work(folder=str(tmp_path), mode="sleep"), timeout=2.0, cancel_on_timeout=True)
        assert (tmp_path / "got-cancelled").exists()
        assert cancelled_tasks(s.id()) == 1
        assert_unchanged_then_serves(s)


CLIENT = """
import sys
from flame_agents import AgentSession
sys.path.insert(0, sys.argv[2])
from cancel_agents import AsyncWorker, CountContext, Work
s = AgentSession("async-worker", ctx=CountContext(), agent=AsyncWorker)
print(s.id(), flush=True)
s.invoke(Work(folder=sys.argv[1], mode="sleep"))
"""


def test_ctrl_c_in_the_client_cancels_its_turn(rt: LocalRuntime, tmp_path: Path) -> None:
    """SIGINT to a client waiting in invoke: it exits with KeyboardInterrupt and its turn ends
    CANCELLED (the handler got CancelledError), with the context unchanged."""
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(tmp_path), str(HERE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **rt.env()},
    )
    try:
        assert client.stdout is not None
        sid = client.stdout.readline().strip()
        wait_for((tmp_path / "entered").exists, "the turn is running")
        client.send_signal(signal.SIGINT)
        _, err = client.communicate(timeout=WAIT)
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    wait_for(lambda: cancelled_tasks(sid) == 1, "the task cancelled")
    assert (tmp_path / "got-cancelled").exists()
    s = AgentSession(session_id=sid, agent=AsyncWorker)
    try:
        assert_unchanged_then_serves(s)
    finally:
        s.close()
