"""flamepy 0.6.0 against the built-in flmexec, with no registration step (wire §2.2, §5.2).

Flame registers ``flmexec`` at start-up and newer flamepy's ``tools.Sandbox`` runs scripts on
it; the published flamepy 0.6.0 sends the Sandbox's JSON here over raw ``flamepy.core``
sessions (``flmexec_scenarios.py``), on a runtime where nothing was registered.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from conformance_support import HERE, SCENARIO_TIMEOUT, Flamepy
from scenario_json import REPLY_MARKER, from_json, to_json

pytestmark = pytest.mark.conformance

SCENARIOS = HERE / "flmexec_scenarios.py"


def run(flamepy: Flamepy, name: str, **args: Any) -> Any:
    """Run scenario ``name`` of flmexec_scenarios.py in a fresh flamepy process."""
    proc = subprocess.run(
        [sys.executable, str(SCENARIOS), name, json.dumps(to_json(args))],
        env=flamepy.env,
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT,
        check=False,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(REPLY_MARKER):
            reply = from_json(json.loads(line[len(REPLY_MARKER) :]))
            assert reply["ok"], f"scenario {name} raised {reply['error']}\n{reply['traceback']}"
            return reply["result"]
    pytest.fail(f"flmexec scenario {name} exited {proc.returncode}:\n{proc.stderr}")


def data(out: dict[str, Any]) -> bytes:
    """The script's stdout from a successful outcome (``{"data": [bytes]}``)."""
    assert out["ok"] is True, out
    return bytes(json.loads(out["value"])["data"])


def test_flmexec_is_listed_with_flmping(flamepy: Flamepy) -> None:
    """list_applications shows flmexec and flmping on a fresh runtime; get_application gives
    flmexec's command and Flame's input schema (language, code, input)."""
    res = run(flamepy, "flmexec_listed")
    assert {"flmexec", "flmping"} <= set(res["names"])
    app = res["flmexec"]
    assert app["command"] == sys.executable
    assert app["arguments"] == ["-m", "flame_agents.runtime.flmexec"]
    assert app["url"] is None and app["installer"] is None
    schema = json.loads(app["input_schema"])
    assert schema["required"] == ["language", "code"]
    assert {"language", "code", "input"} <= set(schema["properties"])
    assert json.loads(app["output_schema"])["properties"]["data"]["type"] == "array"


@pytest.fixture(scope="module")
def python_sandbox(flamepy: Flamepy) -> dict[str, Any]:
    """A Python Sandbox session: a sum, stdin, a failing script."""
    scripts = [
        {"code": "print(1 + 2)"},
        {"code": "import sys; print(sys.stdin.read().upper())", "input": b"flame"},
        {"code": "import sys; print('oops', file=sys.stderr); sys.exit(4)"},
    ]
    return dict(run(flamepy, "flmexec_sandbox", language="python", runtime=None, scripts=scripts))


def test_sandbox_run_code_python(python_sandbox: dict[str, Any]) -> None:
    """run_code of Python scripts answers their stdout as {"data": [bytes]}, stdin = input."""
    first, second, _ = python_sandbox["run_code"]
    assert data(first) == b"3\n"
    assert data(second) == b"FLAME\n"


def test_sandbox_submit_code_futures(python_sandbox: dict[str, Any]) -> None:
    """submit_code's futures (Session.run) each resolve with their own script's output."""
    first, second, _ = python_sandbox["submit_code"]
    assert data(first) == b"3\n" and data(second) == b"FLAME\n"


def test_failing_script_raises_in_flamepy(python_sandbox: dict[str, Any]) -> None:
    """A script that exits non-zero fails its task: flamepy raises FlameError with the status
    and the script's stderr."""
    for out in (python_sandbox["run_code"][2], python_sandbox["submit_code"][2]):
        assert out["ok"] is False, out
        assert out["error"]["type"] == "FlameError" and out["error"]["code"] == "INTERNAL"
        assert "the python script exited with status 4" in out["error"]["message"]
        assert "| oops" in out["error"]["message"]
    assert python_sandbox["session"]["succeed"] == 4
    assert python_sandbox["session"]["failed"] == 2


def test_sandbox_open_restores_attributes(python_sandbox: dict[str, Any]) -> None:
    """Opening the session by id gives back application flmexec and the Sandbox attributes."""
    assert python_sandbox["reopened_app"] == "flmexec"
    assert python_sandbox["reopened_attr"]["language"] == "python"


def test_sandbox_shell_with_runtime(flamepy: Flamepy) -> None:
    """A shell Sandbox with runtime "bash" runs its scripts under bash."""
    scripts = [{"code": 'echo hello "${BASH_VERSION:+bash}"'}]
    res = run(flamepy, "flmexec_sandbox", language="shell", runtime="bash", scripts=scripts)
    assert data(res["run_code"][0]) == b"hello bash\n"
    assert res["reopened_attr"]["runtime"] == "bash"


def test_plain_flamepy_session(flamepy: Flamepy) -> None:
    """A plain flamepy session without common_data runs Flame's script JSON (runtime null,
    upper-case language); an unsupported language fails with Flame's text."""
    inputs = [
        json.dumps(
            {"language": "PYTHON", "runtime": None, "code": "print('raw')", "input": None}
        ).encode(),
        json.dumps({"language": "ruby", "code": "puts 1", "input": None}).encode(),
    ]
    res = run(flamepy, "flmexec_raw", inputs=inputs)
    ok, unsupported = res["outputs"]
    assert data(ok) == b"raw\n"
    assert unsupported["ok"] is False
    assert "Unsupported language: ruby" in unsupported["error"]["message"]
