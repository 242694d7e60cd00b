"""Load: many concurrent echo and agent sessions from several client processes, then no leaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from flame_agents import core
from flame_agents.runtime._home import HomeLayout
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "load_client.py"
TALLY_SERVICE = HERE.parent / "faults" / "services" / "tally_service.py"
CLIENTS = 3
QUICK = (20, 10)
"""Sessions x invocations of the quick profile (CI)."""
LONG = (200, 50)
"""Sessions x invocations of the long profile (``--long``)."""
PROFILE_ENV = "FLAME_AGENTS_LOAD"
"""Any other profile, as ``SESSIONSxINVOCATIONS`` (e.g. ``60x20``)."""
RSS_SLACK = 50 * 1024 * 1024
FD_SLACK = 8
DEADLINE = 120.0


def _wait(predicate: object, what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > end:
            raise AssertionError(f"not reached within {DEADLINE}s: {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def rt() -> Iterator[LocalRuntime]:
    """A runtime with the tally agent registered as ``load-tally``."""
    with LocalRuntime(extra_args=["--max-instances", "256"]) as runtime:
        core.register_application(
            "load-tally", {"command": sys.executable, "arguments": [str(TALLY_SERVICE)]}
        )
        yield runtime


def _run_clients(rt: LocalRuntime, prefix: str, sessions: int, invocations: int) -> int:
    """Run CLIENTS processes sharing ``sessions`` (half echo, half agent); total invocations."""
    procs = []
    env = {**os.environ, **rt.env()}
    try:
        for c in range(CLIENTS):
            mine = sessions // CLIENTS + (1 if c < sessions % CLIENTS else 0)
            echo = mine // 2
            argv = [str(CLIENT), f"{prefix}{c}", str(echo), str(mine - echo), str(invocations)]
            procs.append(
                subprocess.Popen(
                    [sys.executable, *argv], env=env, stdout=subprocess.PIPE, text=True
                )
            )
        total = 0
        failures: list[str] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=3600)
            assert proc.returncode == 0, out
            summary = json.loads(out.strip().splitlines()[-1])
            total += summary["invocations"]
            failures += summary["failures"]
        assert not failures, failures[:20]
        return total
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _profile(config: pytest.Config) -> tuple[int, int]:
    if value := os.environ.get(PROFILE_ENV):
        sessions, _, invocations = value.partition("x")
        return int(sessions), int(invocations)
    return LONG if config.getoption("--long") else QUICK


def _sockets(rt: LocalRuntime) -> list[Path]:
    assert rt.home is not None
    return list(HomeLayout(rt.home).sockets.glob("*.sock"))


def test_concurrent_sessions_fail_nothing_and_leak_nothing(
    rt: LocalRuntime, request: pytest.FixtureRequest
) -> None:
    """Every invocation succeeds with its state exactly once; afterwards nothing has leaked."""
    sessions, invocations = _profile(request.config)
    runtime = psutil.Process(rt.pid)
    _run_clients(rt, "warm", 2, 2)  # imports and caches of the runtime are loaded
    _wait(lambda: not rt.instance_pids(), "warm-up instances stopped")
    base_rss, base_fds = runtime.memory_info().rss, runtime.num_fds()
    base_conns = len(runtime.net_connections(kind="all"))

    total = _run_clients(rt, "load", sessions, invocations)
    assert total == sessions * invocations

    _wait(lambda: not rt.instance_pids(), "every instance process stopped")
    _wait(lambda: not _sockets(rt), "every instance socket removed")
    _wait(lambda: runtime.num_fds() <= base_fds + FD_SLACK, "file descriptors back to baseline")
    _wait(
        lambda: len(runtime.net_connections(kind="all")) <= base_conns + FD_SLACK,
        "connections back to baseline",
    )
    open_sessions = [s for s in core.list_sessions() if s.state == 0]
    assert not open_sessions
    rss = runtime.memory_info().rss
    print(
        f"load: {total} invocations in {sessions} sessions from {CLIENTS} processes; "
        f"runtime RSS {base_rss >> 20} -> {rss >> 20} MiB, fds {base_fds} -> {runtime.num_fds()}"
    )
    assert rss <= base_rss + RSS_SLACK
