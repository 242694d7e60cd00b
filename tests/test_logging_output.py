"""Library code never writes to stdout: its logs go to stderr, at the level the user sets.

Real processes: the guide's client (``examples/agents/echo/client.py``) runs as a subprocess with
its stdout piped, and finds a real runtime the way a user's client does, through the embedded
default (no ``FLAME_ENDPOINT``, ``FLAME_AGENTS_HOME`` a fresh temp folder). The runtime is
started here first only to register ``echo-app`` on it; the client reuses it and announces it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flame_agents import embedded
from flame_agents.config import read_runtime_info
from flame_agents.core import Connection

pytestmark = pytest.mark.e2e

ECHO = Path(__file__).resolve().parents[1] / "examples" / "agents" / "echo"
ANNOUNCE = "using embedded runtime at"
PROC_TIMEOUT = 120


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh home whose runtime serves echo-app (the guide's service); stopped at the end."""
    home = tmp_path_factory.mktemp("agents-home")
    proc, info = embedded.start_runtime(home, extra_args=["--exit-with-pid", str(os.getpid())])
    try:
        with Connection(info.endpoint, cache_endpoint=info.cache_endpoint) as conn:
            conn.register_application(
                "echo-app",
                {
                    "command": sys.executable,
                    "arguments": [str(ECHO / "echo_service.py")],
                    "working_directory": str(ECHO),
                    "delay_release": 1,
                },
            )
        yield home
    finally:
        embedded.stop_runtime(home)
        proc.wait(timeout=PROC_TIMEOUT)


def _env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a client that has nothing configured but its runtime home."""
    unset = ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT", "FLAME_LOG_LEVEL", "FLAME_AGENTS_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    # HOME too: a ~/.flame/flame.yaml of the machine would otherwise name an endpoint.
    env.update(FLAME_AGENTS_HOME=str(home), HOME=str(home), PYTHONUNBUFFERED="1", **extra)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        args, cwd=ECHO, env=env, capture_output=True, text=True, timeout=PROC_TIMEOUT
    )
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _assert_guide_output(stdout: str) -> None:
    lines = stdout.splitlines()
    assert len(lines) == 3, f"stdout is not exactly the client's three lines:\n{stdout}"
    assert lines[:2] == ["HELLO", "1"] and lines[2].startswith("echo-app-")


def test_guide_client_prints_exactly_its_three_lines_and_announces_on_stderr(home: Path) -> None:
    """The guide's client prints only its three lines on stdout; the one announce line of the
    embedded runtime is on stderr, exactly once."""
    proc = _run([sys.executable, "client.py"], _env(home))
    _assert_guide_output(proc.stdout)
    assert proc.stderr.count(ANNOUNCE) == 1, proc.stderr
    assert str(home) in proc.stderr


def test_flame_log_level_warning_silences_the_announce(home: Path) -> None:
    """FLAME_LOG_LEVEL=warning (Flame's variable) keeps the info announce line out."""
    proc = _run([sys.executable, "client.py"], _env(home, FLAME_LOG_LEVEL="warning"))
    _assert_guide_output(proc.stdout)
    assert ANNOUNCE not in proc.stderr


def test_stdlib_level_of_flame_agents_logger_silences_the_announce(home: Path) -> None:
    """``logging.getLogger("flame_agents").setLevel(logging.WARNING)`` in the script silences
    the announce line, as for any Python library."""
    script = (
        "import logging, runpy\n"
        "import flame_agents\n"
        'logging.getLogger("flame_agents").setLevel(logging.WARNING)\n'
        'runpy.run_path("client.py", run_name="__main__")\n'
    )
    proc = _run([sys.executable, "-c", script], _env(home))
    _assert_guide_output(proc.stdout)
    assert ANNOUNCE not in proc.stderr


def test_user_logging_configuration_receives_the_announce_once(home: Path) -> None:
    """Once the script configures logging, the announce line reaches its handler (with the
    logger's name) instead of ours: once, and not on stdout."""
    script = (
        "import logging, runpy, sys\n"
        'logging.basicConfig(stream=sys.stderr, format="USER %(name)s: %(message)s")\n'
        'runpy.run_path("client.py", run_name="__main__")\n'
    )
    proc = _run([sys.executable, "-c", script], _env(home))
    _assert_guide_output(proc.stdout)
    assert proc.stderr.count(ANNOUNCE) == 1, proc.stderr
    assert f"USER flame_agents.embedded: {ANNOUNCE}" in proc.stderr


def _run_runtime(tmp_path: Path, *args: str, **env: str) -> tuple[str, str]:
    """Run ``python -m flame_agents.runtime`` until it serves, stop it; its stdout and stderr."""
    home = tmp_path / "rt-home"
    cmd = embedded.runtime_command(home, extra_args=["--exit-with-pid", str(os.getpid()), *args])
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        start_new_session=True,
    )
    try:
        _wait_served(proc, home)
        embedded.stop_runtime(home)
        out, err = proc.communicate(timeout=PROC_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        embedded.stop_runtime(home)
    return out, err


def _wait_served(proc: subprocess.Popen[str], home: Path) -> None:
    """Until the runtime publishes its runtime.json (or exits: its output then tells why)."""
    while (info := read_runtime_info(home)) is None or info.pid != proc.pid:
        try:
            proc.wait(timeout=0.05)
            return
        except subprocess.TimeoutExpired:
            continue


def test_runtime_log_format_json_writes_json_lines_to_stderr(tmp_path: Path) -> None:
    """``--log-format json``: every line the runtime logs is a JSON object on stderr (event,
    level, timestamp, logger), and nothing goes to stdout."""
    out, err = _run_runtime(tmp_path, "--log-format", "json", FLAME_LOG_LEVEL="info")
    assert out == ""
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines, "the runtime logged nothing"
    assert all({"event", "level", "timestamp", "logger"} <= line.keys() for line in lines)
    assert any(line["level"] == "info" for line in lines)


def test_runtime_log_level_follows_flame_log_level(tmp_path: Path) -> None:
    """Without --log-level the runtime logs at $FLAME_LOG_LEVEL: at warning its info lines
    (start, stop) are left out."""
    out, err = _run_runtime(tmp_path, "--log-format", "json", FLAME_LOG_LEVEL="warning")
    assert out == ""
    levels = {json.loads(line)["level"] for line in err.splitlines() if line.strip()}
    assert levels <= {"warning", "error", "critical"}
