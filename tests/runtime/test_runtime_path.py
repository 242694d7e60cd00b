"""Instances find the runtime's own interpreter for a bare ``command: python``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from runtime_support import SERVICES, Frontend

from flame_agents._wire import frontend_pb2 as fpb
from flame_agents._wire import types_pb2
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e


def test_bare_python_command_runs_the_runtime_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the venv off PATH, `command: python` still runs the interpreter of the runtime."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with LocalRuntime() as rt, Frontend(rt.endpoint) as fe:
        spec = types_pb2.ApplicationSpec(command="python", arguments=[str(SERVICES / "behave.py")])
        fe.stub.RegisterApplication(fpb.RegisterApplicationRequest(name="bare", application=spec))
        fe.create_session("bare-1", "bare")
        task = fe.run("bare-1", b"env:PATH")
        assert task.status.state == types_pb2.Succeed, list(task.status.events)
        first = task.spec.output.decode().split(":")[0]
        assert first == str(Path(sys.executable).parent)
