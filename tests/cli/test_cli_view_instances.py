"""``view -s`` lists the instances serving a session: pid, state and uptime."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flame_agents import core
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

BEHAVE = Path(__file__).resolve().parents[1] / "runtime" / "services" / "behave.py"

Cli = Callable[..., Any]


def test_view_session_lists_the_pid_really_serving_it(runtime: LocalRuntime, cli: Cli) -> None:
    """The instance row of view -s (table and JSON) carries the pid the service itself reports,
    its BOUND state and an uptime."""
    core.register_application("view-pid", {"command": sys.executable, "arguments": [str(BEHAVE)]})
    with core.create_session("view-pid", min_instances=1) as session:
        output = session.invoke(b"pid")
        assert output is not None
        pid = int(output)
        result = cli("view", "-s", session.id, "-o", "json")
        assert result.code == 0, result.err
        [instance] = json.loads(result.out)["instances"]
        assert instance["pid"] == pid
        assert instance["state"] == "BOUND"
        assert instance["session_id"] == session.id
        assert isinstance(instance["start_time"], int) and instance["start_time"] > 0
        table = cli("view", "-s", session.id)
        assert table.code == 0, table.err
        lines = table.out.splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith("INSTANCE "))
        assert lines[header].split() == ["INSTANCE", "PID", "STATE", "UPTIME", "NODE"]
        row = lines[header + 1].split()
        assert row[:3] == [instance["id"], str(pid), "BOUND"]
        assert row[3].endswith(("s", "m", "h"))
