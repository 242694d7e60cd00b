"""``up``, ``status`` and ``down`` as a user runs them: separate processes on a temp home."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from flame_agents.embedded import stop_runtime

pytestmark = pytest.mark.e2e


def _cli(*argv: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLAME_AGENTS_HOME": str(home)}
    for key in ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "flame_agents.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def home() -> Iterator[Path]:
    """A fresh runtime home; whatever runtime a test left there is killed afterwards."""
    with tempfile.TemporaryDirectory(prefix="fa-cli-") as tmp:
        path = Path(tmp) / "home"
        try:
            yield path
        finally:
            stop_runtime(path, kill=True)


def test_up_detach_status_down(home: Path) -> None:
    """up --detach returns once ready; status -o json describes it; down stops it."""
    up = _cli("up", "--detach", home=home)
    assert up.returncode == 0, up.stderr
    assert "endpoint:" in up.stdout and "flame-agents down" in up.stdout

    status = _cli("status", "-o", "json", home=home)
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert {"endpoint", "cache_endpoint", "home", "pid"} <= set(info)
    assert info["endpoint"].startswith("http://127.0.0.1:")
    assert info["cache_endpoint"].startswith("grpc://127.0.0.1:")
    assert Path(info["home"]) == home.resolve()
    assert psutil.pid_exists(info["pid"])

    env_lines = _cli("status", "-o", "env", home=home).stdout.splitlines()
    assert env_lines == [
        f"export FLAME_ENDPOINT={info['endpoint']}",
        f"export FLAME_CACHE_ENDPOINT={info['cache_endpoint']}",
    ]
    assert info["endpoint"] in _cli("status", home=home).stdout

    again = _cli("up", "--detach", home=home)
    assert again.returncode == 1
    assert "already running" in again.stderr and str(info["pid"]) in again.stderr

    down = _cli("down", home=home)
    assert down.returncode == 0, down.stderr
    assert f"pid {info['pid']}" in down.stdout
    assert not psutil.pid_exists(info["pid"]) or (
        psutil.Process(info["pid"]).status() == psutil.STATUS_ZOMBIE
    )


def test_status_without_a_runtime_fails_clearly(home: Path) -> None:
    """status exits 1 with one line saying nothing runs and how to start it; down is a no-op."""
    status = _cli("status", "-o", "json", home=home)
    assert status.returncode == 1
    assert status.stdout == ""
    assert status.stderr.strip().startswith("error: no runtime is running for")
    assert "flame-agents up" in status.stderr
    assert "Traceback" not in status.stderr
    down = _cli("down", home=home)
    assert down.returncode == 0
    assert "no runtime is running" in down.stdout


def test_up_in_the_foreground_stops_on_ctrl_c(home: Path) -> None:
    """up without --detach prints the endpoints when ready and stops cleanly on SIGINT."""
    env = {**os.environ, "FLAME_AGENTS_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flame_agents.cli", "up", "--home", str(home)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # blocks until the runtime is ready (or the process ends)
            lines.append(line)
            if "Ctrl-C" in line:
                break
        assert any(line.startswith("endpoint:") for line in lines), lines
        runtime_pid = json.loads((home / "runtime.json").read_text())["pid"]
        proc.send_signal(signal.SIGINT)  # only the CLI: it must pass the stop on
        assert proc.wait(timeout=30) == 0
        assert not (home / "runtime.json").exists()
        assert not psutil.pid_exists(runtime_pid) or (
            psutil.Process(runtime_pid).status() == psutil.STATUS_ZOMBIE
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_up_passes_host_and_runtime_options(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`up --host` and options after `--` reach the runtime: a token it then demands."""
    refused = _cli("up", "--detach", "--host", "0.0.0.0", home=home)
    assert refused.returncode == 1
    assert "token" in refused.stderr

    token = tmp_path / "token"
    token.write_text("s3cret-token")
    token.chmod(0o600)
    up = _cli("up", "--detach", "--", "--token-file", str(token), home=home)
    assert up.returncode == 0, up.stderr
    denied = _cli("list", "-a", home=home)
    assert denied.returncode == 1 and "token" in denied.stderr.lower()
    monkeypatch.setenv("FLAME_AGENTS_TOKEN", "s3cret-token")
    allowed = _cli("list", "-a", home=home)
    assert allowed.returncode == 0, allowed.stderr
    assert "flmping" in allowed.stdout
