"""The built-in flmexec application: Flame's script executor, through our core client."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flame_agents import core
from flame_agents.core import Connection, Session
from flame_agents.errors import TaskFailedError
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e


def script(language: str, code: str, data: bytes | None = None, **extra: Any) -> bytes:
    """A task input as Flame's flmexec and flamepy's Sandbox send it."""
    doc: dict[str, Any] = {
        "language": language,
        "code": code,
        "input": None if data is None else list(data),
    }
    doc.update(extra)
    return json.dumps(doc).encode()


def stdout_of(output: bytes | None) -> bytes:
    """The script's stdout from a task output ``{"data": [bytes]}``."""
    assert output is not None
    doc = json.loads(output)
    assert set(doc) == {"data"}
    return bytes(doc["data"])


@pytest.fixture(scope="module")
def conn(runtime: LocalRuntime) -> Iterator[Connection]:
    with core.connect(runtime.endpoint) as connection:
        yield connection


@pytest.fixture(scope="module")
def session(conn: Connection) -> Iterator[Session]:
    """One flmexec session on one instance (tasks share its working folder)."""
    with conn.create_session("flmexec", max_instances=1) as ssn:
        yield ssn


def test_flmexec_is_registered_with_flmping(conn: Connection) -> None:
    """flmexec is registered at start-up next to flmping, runnable by this interpreter."""
    apps = {app.name: app for app in conn.list_applications()}
    assert {"flmexec", "flmping"} <= set(apps)
    spec = apps["flmexec"].spec
    assert spec.command == sys.executable
    assert spec.arguments == ("-m", "flame_agents.runtime.flmexec")
    assert spec.url is None and spec.installer is None
    assert spec.schema is not None and spec.schema.input and spec.schema.output
    schema = json.loads(spec.schema.input)
    assert schema["required"] == ["language", "code"]
    assert {"language", "code", "input"} <= set(schema["properties"])
    assert json.loads(spec.schema.output)["required"] == ["data"]


def test_python_script_gets_input_on_stdin(session: Session) -> None:
    """A Python script reads the task's input bytes on stdin; its stdout is the output data."""
    code = "import sys; data = sys.stdin.buffer.read(); print(data.upper().decode(), len(data))"
    assert stdout_of(session.invoke(script("python", code, b"flame"))) == b"FLAME 5\n"


def test_shell_script_and_language_case(session: Session) -> None:
    """A shell script runs under bash; the language is matched without regard to case."""
    code = 'read -r line; printf "%s|%s" "$line" "${BASH_VERSION:+bash}"'
    assert stdout_of(session.invoke(script("Shell", code, b"abc\n"))) == b"abc|bash"


def test_script_without_input_sees_end_of_file(session: Session) -> None:
    """A script that reads stdin without an input gets end of file, not a hang."""
    code = "import sys; print(repr(sys.stdin.read()))"
    assert stdout_of(session.invoke(script("python", code))) == b"''\n"


def test_binary_stdout_round_trips(session: Session) -> None:
    """Every byte value a script writes comes back unchanged."""
    code = "import sys; sys.stdout.buffer.write(bytes(range(256)))"
    assert stdout_of(session.invoke(script("python", code))) == bytes(range(256))


def test_scripts_run_in_the_instance_working_folder(
    session: Session, runtime: LocalRuntime
) -> None:
    """The current folder is the instance's working folder (files persist between its tasks);
    the script itself lives in a temporary folder removed after the task."""
    code = (
        "import os, json; open('note.txt', 'a').write('x');"
        " print(json.dumps([os.getcwd(), os.path.abspath(__file__)]))"
    )
    cwd, file = json.loads(stdout_of(session.invoke(script("python", code))))
    assert runtime.home is not None
    assert Path(cwd).parent == runtime.home / "work"
    assert Path(file).name == "main.py" and Path(file).parent != Path(cwd)
    assert not Path(file).exists()
    again = session.invoke(script("shell", "cat note.txt"))
    assert stdout_of(again) == b"x"


def test_script_environment(session: Session, runtime: LocalRuntime) -> None:
    """A script can reach the runtime (FLAME_ENDPOINT) but does not see the instance's socket."""
    code = (
        "import os, json;"
        " print(json.dumps({k: os.environ.get(k) for k in"
        " ('FLAME_ENDPOINT', 'FLAME_CACHE_ENDPOINT', 'FLAME_INSTANCE_ENDPOINT')}))"
    )
    env = json.loads(stdout_of(session.invoke(script("python", code))))
    assert env["FLAME_ENDPOINT"] == runtime.endpoint
    assert env["FLAME_CACHE_ENDPOINT"] == runtime.cache_endpoint
    assert env["FLAME_INSTANCE_ENDPOINT"] is None


def test_failing_script_fails_the_task_with_status_and_output(session: Session) -> None:
    """A script that exits non-zero fails its task: the status and the last lines of its
    stderr and stdout are the failure text; the instance keeps serving."""
    code = "import sys; print('partial'); print('it broke', file=sys.stderr); sys.exit(3)"
    with pytest.raises(TaskFailedError) as info:
        session.invoke(script("python", code))
    text = info.value.message
    assert text.startswith("the python script exited with status 3")
    assert "stderr:\n  | it broke" in text and "stdout:\n  | partial" in text
    with pytest.raises(TaskFailedError, match="the shell script was killed by SIGKILL"):
        session.invoke(script("shell", "kill -9 $$"))
    assert stdout_of(session.invoke(script("shell", "echo still here"))) == b"still here\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (None, "No task input"),
        (b"print(1)", "failed to parse script: "),
        (b"[1, 2]", "failed to parse script: expected a JSON object"),
        (script("ruby", "puts 1"), "Unsupported language: ruby"),
        (
            json.dumps({"language": "python"}).encode(),
            "failed to parse script: field `code` must be a string",
        ),
        (
            script("python", "pass", input=[256]),
            "failed to parse script: field `input` must be a list of integers 0-255",
        ),
        (
            script("shell", "true", runtime="no-such-shell"),
            "shell 'no-such-shell' is not available on this machine",
        ),
    ],
    ids=["no-input", "not-json", "not-object", "language", "no-code", "bad-input", "no-shell"],
)
def test_invalid_task_input_is_rejected(
    session: Session, data: bytes | None, expected: str
) -> None:
    """A task input flmexec cannot run fails with Flame's text, how to fix it, and the class
    InvalidArgumentError."""
    with pytest.raises(TaskFailedError) as info:
        session.invoke(data)
    assert info.value.message.startswith(f"InvalidArgumentError: {expected}")
    assert info.value.remote_type == "InvalidArgumentError"


def test_sandbox_attributes_fill_missing_language_and_runtime(conn: Connection) -> None:
    """A Sandbox session's common_data gives the language and runtime a task leaves out; a
    task's own runtime wins."""
    attrs = {
        "language": "shell",
        "runtime": "no-such-shell",
        "min_instances": 0,
        "max_instances": None,
        "resreq": None,
    }
    with conn.create_session("flmexec", common_data=json.dumps(attrs).encode()) as ssn:
        with pytest.raises(TaskFailedError, match="shell 'no-such-shell' is not available"):
            ssn.invoke(json.dumps({"code": "echo hi"}).encode())
        own = json.dumps({"code": "echo hi", "runtime": "sh"}).encode()
        assert stdout_of(ssn.invoke(own)) == b"hi\n"


def test_runtime_names_this_interpreter(session: Session) -> None:
    """runtime "python3.X" (or "3.X") of this interpreter's version runs it."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    code = "import sys; print(sys.executable)"
    for runtime in (version, f"python{version}"):
        out = session.invoke(script("python", code, runtime=runtime))
        assert stdout_of(out) == f"{sys.executable}\n".encode()
