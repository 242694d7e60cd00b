"""Durable turns on real processes: kill -9 inside a step, reconcile after a kill, an interrupt
that outlives runtime restarts and is answered from another process, its drop, and the async
flavour.

One runtime serves the module. The agents of ``turn_agents`` report each run of a step's
function in files of the test's folder (counted outside the instance, so a killed process's runs
count too) and hold a gated step until the test writes ``release``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from turn_agents import (
    ApproveAgent,
    AsyncApproveAgent,
    ChargeAgent,
    Paid,
    Pay,
    Publish,
    Published,
    Ran,
    Run,
    ThreeStepAgent,
    TurnContext,
    read_lines,
)

from flame_agents import AgentSession, Interrupted, core
from flame_agents.errors import InvalidStateError
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
SERVICE = HERE / "services" / "turn_service.py"
RESUME_CLIENT = HERE / "services" / "resume_client.py"
APPS = {
    "turn-steps": "ThreeStepAgent",
    "turn-charge": "ChargeAgent",
    "turn-approve": "ApproveAgent",
    "turn-approve-async": "AsyncApproveAgent",
}


@pytest.fixture(scope="module")
def rt() -> Iterator[LocalRuntime]:
    """The module's runtime with the turn agents registered."""
    with LocalRuntime() as runtime:
        for name, agent in APPS.items():
            core.register_application(
                name, {"command": sys.executable, "arguments": [str(SERVICE), agent]}
            )
        yield runtime


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll ``predicate()`` until true, or fail naming ``what``."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"not reached within {timeout}s: {what}"
        time.sleep(0.01)


class Invocation(threading.Thread):
    """One ``invoke`` in a background thread (the test kills its instance meanwhile)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._call = call
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._call()
        except BaseException as exc:
            self.error = exc

    def outcome(self, timeout: float = 120.0) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "the invocation did not return"
        if self.error is not None:
            raise self.error
        return self.result


def kill_inside(rt: LocalRuntime, folder: Path, step: str) -> int:
    """Wait until ``step`` runs at its gate, kill -9 that instance, wait for it to be gone,
    then open the gate (for the re-run). Returns the killed pid."""
    entered = folder / f"entered-{step}"
    wait_for(entered.exists, f"{step} entered")
    pid = int(entered.read_text())
    assert pid in rt.instance_pids(), "the step does not run in one of the runtime's instances"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pid not in rt.instance_pids(), "the killed instance gone")
    (folder / "release").write_text("")
    return pid


def test_kill_9_inside_step_3_of_3_reruns_only_step_3(rt: LocalRuntime, tmp_path: Path) -> None:
    """kill -9 of the instance while step 3 of 3 runs: the runtime re-dispatches the task to a
    new instance, which replays steps 1-2 from the journal (their functions ran once) and runs
    step 3 again (started twice, completed once); the context changes once."""
    with AgentSession("turn-steps", ctx=TurnContext(), agent=ThreeStepAgent) as s:
        req = Run(tag="t", dir=str(tmp_path), gated="step3")
        call = Invocation(lambda: s.invoke(req, idempotency_key="turn-1"))
        call.start()
        killed = kill_inside(rt, tmp_path, "step3")
        reply = call.outcome()
        assert reply == Ran(
            tag="t", results=["step1:t", "step2:t", "step3:t"], count=1, pid=reply.pid
        )
        assert reply.pid != killed
        for step in ("step1", "step2"):
            assert read_lines(tmp_path / f"started-{step}") == [str(killed)], step
        assert read_lines(tmp_path / "started-step3") == [str(killed), str(reply.pid)]
        assert read_lines(tmp_path / "completed-step3") == [str(reply.pid)]
        ctx = s.context()
        assert ctx.count == 1 and ctx.log.tolist() == ["t"]
        assert s.invoke(req, idempotency_key="turn-1") == reply, "committed: replayed"
        assert len(read_lines(tmp_path / "started-step3")) == 2


def test_reconcile_gets_the_step_key_after_a_kill_inside_the_step(
    rt: LocalRuntime, tmp_path: Path
) -> None:
    """The step's function does its effect (the ledger gets its key), then the instance is
    killed: the re-run calls reconcile with turn.key(name), finds the effect and records its
    answer; the function ran once and the context changes once."""
    with AgentSession("turn-charge", ctx=TurnContext(), agent=ChargeAgent) as s:
        call = Invocation(lambda: s.invoke(Pay(amount=42, dir=str(tmp_path))))
        call.start()
        killed = kill_inside(rt, tmp_path, "charge")
        reply = call.outcome()
        assert isinstance(reply, Paid)
        assert reply.result == {"charged": 42, "by": "reconcile"}
        assert read_lines(tmp_path / "reconciled") == [reply.key]
        assert read_lines(tmp_path / "ledger") == [reply.key]
        assert read_lines(tmp_path / "started-charge") == [str(killed)]
        assert reply.key.startswith("step-") and reply.count == 1
        assert s.context().log.tolist() == ["charged 42"]


def _view(rt: LocalRuntime, sid: str, *options: str) -> str:
    """``flame-agents view -s <sid>`` run as a separate process against the runtime."""
    out = subprocess.run(
        [sys.executable, "-m", "flame_agents.cli", "view", "-s", sid, *options],
        env={**os.environ, **rt.env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout


def _resume_elsewhere(rt: LocalRuntime, sid: str, answer: Any) -> dict[str, Any]:
    """Resume the session's paused turn from another process, by session id only."""
    out = subprocess.run(
        [sys.executable, str(RESUME_CLIENT), sid, json.dumps(answer)],
        env={**os.environ, **rt.env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.timeout(240)
@pytest.mark.parametrize("restart", ["graceful", "kill-9"])
def test_interrupt_survives_restart_and_is_resumed_from_another_process(
    rt: LocalRuntime, tmp_path: Path, restart: str
) -> None:
    """A turn paused at interrupt(): the client gets Interrupted with the payload, a new invoke
    is refused (pointing at resume), a retry of the paused key pauses again, ``view -s`` shows
    the pending interrupt; after a runtime restart (graceful, or kill -9), another process
    resumes it by session id: the draft step is replayed (ran once), the publish step runs
    once, the context changes once, and the session serves new invocations."""
    folder = str(tmp_path)
    req = Publish(text="hello world", dir=folder)
    payload = {
        "question": "publish 'hello world'?",
        "draft": {"text": "hello world", "words": 2},
    }
    s = AgentSession("turn-approve", ctx=TurnContext(), agent=ApproveAgent)
    try:
        sid = s.id()
        with pytest.raises(Interrupted) as paused:
            s.invoke(req, idempotency_key="turn-1")
        assert paused.value.payload == payload
        with pytest.raises(InvalidStateError, match=r"resume\(answer\)"):
            s.invoke(Publish(text="another", dir=folder, ask=False))
        with pytest.raises(Interrupted) as again:
            s.invoke(req, idempotency_key="turn-1")
        assert again.value.payload == payload
        assert s.pending_interrupt() == {
            "idempotency_key": "turn-1",
            "index": 0,
            "payload": payload,
        }

        human = _view(rt, sid)
        assert "pending interrupt: turn turn-1 (interrupt 0)" in human
        assert json.dumps(payload) in human
        state = json.loads(_view(rt, sid, "-o", "json"))["agent_state"]
        assert state["pending_interrupt"]["payload"] == payload and state["open_turns"] == 1

        rt.restart(kill=restart == "kill-9")
        resumed = _resume_elsewhere(rt, sid, {"yes": True})
        assert resumed["pending"]["idempotency_key"] == "turn-1"
        reply = resumed["reply"]
        assert reply == {"text": "hello world", "approved": True, "draft_type": "Draft", "count": 1}
        assert len(read_lines(tmp_path / "started-draft")) == 1, "the draft step was replayed"
        assert len(read_lines(tmp_path / "started-publish")) == 1
        assert s.pending_interrupt() is None
        ctx = s.context()
        assert ctx.count == 1 and ctx.log.tolist() == ["hello world"]
        assert s.invoke(req, idempotency_key="turn-1") == Published(**reply), "replayed"
        assert "pending interrupt" not in _view(rt, sid)

        after = s.invoke(Publish(text="next", dir=folder, ask=False))
        assert after.approved and after.count == 2
        assert s.context().log.tolist() == ["hello world", "next"]
    finally:
        s.close()


def test_cancel_drops_a_pending_interrupt_and_the_next_invoke_runs(
    rt: LocalRuntime, tmp_path: Path
) -> None:
    """cancel() drops the paused turn: nothing of it is committed, the pending interrupt is
    gone, and the next invoke runs and commits."""
    folder = str(tmp_path)
    with AgentSession("turn-approve", ctx=TurnContext(), agent=ApproveAgent) as s:
        with pytest.raises(Interrupted):
            s.invoke(Publish(text="dropped", dir=folder))
        s.cancel()
        assert s.pending_interrupt() is None
        reply = s.invoke(Publish(text="kept", dir=folder, ask=False))
        assert reply.approved and reply.count == 1
        ctx = s.context()
        assert ctx.count == 1 and ctx.log.tolist() == ["kept"]
        assert len(read_lines(tmp_path / "started-draft")) == 2, "the dropped turn's, the kept's"
        assert len(read_lines(tmp_path / "started-publish")) == 1


def test_async_handler_awaits_steps_and_interrupt_end_to_end(
    rt: LocalRuntime, tmp_path: Path
) -> None:
    """An async handler with AsyncTurn: the awaited step is recorded, the awaited interrupt
    reaches the client as Interrupted, and the resume (on a new instance) replays the step and
    completes the turn once."""
    folder = str(tmp_path)
    with AgentSession("turn-approve-async", ctx=TurnContext(), agent=AsyncApproveAgent) as s:
        with pytest.raises(Interrupted) as paused:
            s.invoke(Publish(text="async words", dir=folder))
        assert paused.value.payload["draft"] == {"text": "async words", "words": 2}
        (pid,) = map(int, read_lines(tmp_path / "started-draft"))
        assert pid in rt.instance_pids()
        os.kill(pid, signal.SIGKILL)  # the resume runs on a fresh instance
        wait_for(lambda: pid not in rt.instance_pids(), "the killed instance gone")
        reply = s.resume({"yes": True})
        assert reply == Published(text="async words", approved=True, draft_type="Draft", count=1)
        assert len(read_lines(tmp_path / "started-draft")) == 1
        assert len(read_lines(tmp_path / "started-publish")) == 1
        assert s.context().log.tolist() == ["async words"]
