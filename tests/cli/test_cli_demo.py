"""``flame-agents demo`` end to end, as ``make demo`` runs it: output, exit code, clean-up."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _processes_under(folder: Path) -> list[psutil.Process]:
    """Live processes whose command line or instance socket points into ``folder``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "environ", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        text = " ".join(proc.info["cmdline"] or [])
        socket = (proc.info["environ"] or {}).get("FLAME_INSTANCE_ENDPOINT", "")
        if str(folder) in text or socket.startswith(str(folder)):
            found.append(proc)
    return found


def test_demo_runs_the_echo_story_and_leaves_nothing_behind() -> None:
    """The demo prints HELLO with counts 1 then 2 and the context, runs the chat agent through
    its approval pause, exits 0, and stops every process and removes every folder (and file)
    it created, without touching FLAME_AGENTS_HOME."""
    with tempfile.TemporaryDirectory(prefix="fa-demo-") as tmp:
        tmpdir = Path(tmp) / "tmp"
        tmpdir.mkdir()
        user_home = Path(tmp) / "user-home"
        env = {**os.environ, "TMPDIR": str(tmpdir), "FLAME_AGENTS_HOME": str(user_home)}
        for key in ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT", "CHAT_OUTBOX"):
            env.pop(key, None)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "flame_agents.cli", "demo"],
                env=env,
                capture_output=True,
                text=True,
                timeout=110,
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            out = done.stdout
            first = out.index("text=HELLO count=1")
            second = out.index("text=HELLO count=2")
            assert first < second
            assert "context: ['hello', 'hello']" in out[second:]
            assert "registered echo-app" in out
            chat = out.index("chat agent (examples/agents/chat)")
            asked = out.index("agent asks: send this email to bob@example.com?", chat)
            assert "outbox: msg-" in out[asked:] and "(sent as msg-" in out[asked:]
            assert not user_home.exists()  # the user's runtime home was not touched
            assert list(tmpdir.iterdir()) == []  # temp home (and any socket folder) removed
            assert _processes_under(Path(tmp)) == []
        finally:
            for proc in _processes_under(Path(tmp)):
                proc.kill()


def test_demo_stops_the_runtime_when_a_step_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing step ends the demo with its error, and the runtime and temp home are gone."""
    from flame_agents.cli.demo import DemoContext, Step, run_demo
    from flame_agents.errors import InternalError

    seen: dict[str, DemoContext] = {}

    def boom(ctx: DemoContext) -> None:
        seen["ctx"] = ctx
        raise InternalError("boom")

    with tempfile.TemporaryDirectory(prefix="fa-demo-") as tmp:
        monkeypatch.setattr(tempfile, "tempdir", tmp)  # the demo's temp home goes in here
        try:
            with pytest.raises(InternalError, match="boom"):
                run_demo([Step("fail on purpose", boom)])
            runtime = seen["ctx"].runtime
            assert not Path(runtime.home).exists()
            assert _processes_under(Path(tmp)) == []
        finally:
            for proc in _processes_under(Path(tmp)):
                proc.kill()


def test_demo_cleans_up_on_sigterm() -> None:
    """SIGTERM in the middle of the demo takes the Ctrl-C path: exit 130, nothing left behind."""
    with tempfile.TemporaryDirectory(prefix="fa-demo-") as tmp:
        tmpdir = Path(tmp) / "tmp"
        tmpdir.mkdir()
        env = {**os.environ, "TMPDIR": str(tmpdir)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "flame_agents.cli", "demo"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # wait until the runtime is up and a step has begun
                if line.startswith("==> 1."):
                    break
            proc.terminate()
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 130, err
            assert list(tmpdir.iterdir()) == []
            assert _processes_under(Path(tmp)) == []
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            for leftover in _processes_under(Path(tmp)):
                leftover.kill()
