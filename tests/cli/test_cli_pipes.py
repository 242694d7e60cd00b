"""The CLI behind a pipe whose reader goes away early (``flmctl list -s | head -1``).

Real processes: the CLI runs as a subprocess against a LocalRuntime with a few hundred sessions,
so its table is several times larger than the pipe (shrunk to one page): most of it is written
after ``head`` has read its line and exited, whatever the timing.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from typing import Any

import pytest

from flame_agents import core

pytestmark = pytest.mark.e2e

SESSIONS = 300
PROC_TIMEOUT = 120
CLI = [sys.executable, "-m", "flame_agents.cli"]


@pytest.fixture(scope="module")
def many_sessions(runtime: Any) -> None:
    """``SESSIONS`` open sessions of one application (no tasks, so no instances)."""
    core.register_application("pipe-app", {"command": sys.executable, "arguments": ["-c", ""]})
    for _ in range(SESSIONS):
        core.create_session("pipe-app")


def _env(runtime: Any) -> dict[str, str]:
    return {**os.environ, **runtime.env()}


def _assert_quiet(code: int | None, err: str) -> None:
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert "Exception ignored" not in err, err
    assert code == 0, err


def test_list_sessions_into_head_exits_quietly(runtime: Any, many_sessions: None) -> None:
    """``flmctl list -s | head -1``: head prints the header, the CLI exits 0 without a
    traceback although most of its table is written after head closed the pipe."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    try:
        cli = subprocess.Popen(
            [*CLI, "list", "-s"], stdout=write_end, stderr=subprocess.PIPE, env=_env(runtime)
        )
        head = subprocess.Popen(["head", "-1"], stdin=read_end, stdout=subprocess.PIPE)
    finally:
        os.close(read_end)
        os.close(write_end)
    first, _ = head.communicate(timeout=PROC_TIMEOUT)
    _, err = cli.communicate(timeout=PROC_TIMEOUT)
    assert first.decode().split()[:2] == ["ID", "APPLICATION"]
    _assert_quiet(cli.returncode, err.decode())


def test_output_into_a_pipe_closed_before_the_first_line_exits_quietly(
    runtime: Any, many_sessions: None
) -> None:
    """A reader gone before anything was written (a short output, flushed at the end): no
    traceback and no "Exception ignored" message from the interpreter's exit, exit code 0."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [*CLI, "list", "-a", "-o", "json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=_env(runtime),
            timeout=PROC_TIMEOUT,
        )
    finally:
        os.close(write_end)
    _assert_quiet(proc.returncode, proc.stderr.decode())
