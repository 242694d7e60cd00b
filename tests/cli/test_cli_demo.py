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
    """The demo prints HELLO with counts 1 then 2 and the context, exits 0, and stops every
    process and removes every folder it created, without touching FLAME_AGENTS_HOME."""
    with tempfile.TemporaryDirectory(prefix="fa-demo-") as tmp:
        tmpdir = Path(tmp) / "tmp"
        tmpdir.mkdir()
        user_home = Path(tmp) / "user-home"
        env = {**os.environ, "TMPDIR": str(tmpdir), "FLAME_AGENTS_HOME": str(user_home)}
        for key in ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT"):
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
            assert not user_home.exists()  # the user's runtime home was not touched
            assert list(tmpdir.iterdir()) == []  # temp home (and any socket folder) removed
            assert _processes_under(Path(tmp)) == []
        finally:
            for proc in _processes_under(Path(tmp)):
                proc.kill()
