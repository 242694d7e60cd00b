"""Concurrent tasks of one plain service session never lose a context update.

The guide's echo service reads the context, appends, and writes it back. With several instances
serving one session, two tasks can read the same version; the second write must not silently
replace the first.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flame_agents import core
from flame_agents.service import Session
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

ECHO = Path(__file__).resolve().parents[2] / "examples" / "agents" / "echo"


def test_parallel_invokes_keep_every_context_update(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 invokes from 8 threads on one Session("echo-app", ctx=[]) leave 40 entries, and the
    session was served by more than one instance at once."""
    core.register_application(
        "echo-app",
        {
            "command": sys.executable,
            "arguments": ["echo_service.py"],
            "working_directory": str(ECHO),
        },
    )
    monkeypatch.syspath_prepend(str(ECHO))
    from echo_service import EchoRequest  # type: ignore[import-not-found]

    with Session("echo-app", ctx=[]) as session:
        with ThreadPoolExecutor(8) as pool:
            counts = list(pool.map(lambda i: session.invoke(EchoRequest(f"m{i}")).count, range(40)))
        history = session.context()
        # This module's runtime serves only this session: its instances are the session's.
        instances = runtime.instance_pids()
    assert sorted(history) == sorted(f"m{i}" for i in range(40))
    # Each committed update saw every earlier one: the counts are exactly 1..40.
    assert sorted(counts) == list(range(1, 41))
    assert len(instances) > 1, "the race needs several instances serving the session"
