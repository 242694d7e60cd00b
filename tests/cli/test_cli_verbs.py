"""Every flmctl verb through ``main([...])`` against a real embedded runtime."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flame_agents import core
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

ECHO_YAML = Path(__file__).resolve().parents[2] / "examples" / "agents" / "echo" / "echo-app.yaml"

Cli = Callable[..., Any]
Result = Any  # conftest.Result: code, out, err


def _json(result: Result) -> Any:
    assert result.code == 0, result.err
    return json.loads(result.out)


def _one_error_line(result: Result) -> str:
    assert result.code == 1
    assert result.out == ""
    assert "Traceback" not in result.err
    lines = [ln for ln in result.err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, result.err
    return lines[0]


def test_register_list_and_view_an_application(runtime: LocalRuntime, cli: Cli) -> None:
    """register -f loads the example YAML; list -a and view -a show it, as tables and JSON."""
    assert cli("register", "-f", str(ECHO_YAML)).out == "registered echo-app\n"
    table = cli("list", "-a")
    assert table.code == 0
    header, *rows = table.out.splitlines()
    assert header.split() == ["NAME", "STATE", "SHIM", "COMMAND", "CREATED"]
    assert any(row.startswith("echo-app ") and "python echo_service.py" in row for row in rows)
    apps = {app["name"]: app for app in _json(cli("list", "--application", "-o", "json"))}
    assert apps["echo-app"]["spec"]["working_directory"] == str(ECHO_YAML.parent)
    assert "flmping" in apps  # built into the embedded runtime
    view = _json(cli("view", "-a", "echo-app", "-o", "json"))
    assert view["spec"]["command"] == "python"
    assert view["spec"]["arguments"] == ["echo_service.py"]
    assert view["spec"]["environments"] == {"FLAME_LOG_LEVEL": "INFO"}
    text = cli("view", "--application", "echo-app").out
    assert f"working_directory: {ECHO_YAML.parent}" in " ".join(text.split())


def test_view_of_an_unknown_application_is_one_clear_line(runtime: LocalRuntime, cli: Cli) -> None:
    """A missing application is an error line naming it, exit 1, no traceback."""
    line = _one_error_line(cli("view", "-a", "no-such-app"))
    assert "no-such-app" in line and "not registered" in line


def test_update_replaces_the_spec(runtime: LocalRuntime, cli: Cli, tmp_path: Path) -> None:
    """update -a FILE replaces the registered spec with the file's."""
    path = tmp_path / "upd.yaml"
    path.write_text("metadata: {name: cli-upd}\nspec: {command: python, description: one}\n")
    assert cli("register", "-f", str(path)).code == 0
    path.write_text("metadata: {name: cli-upd}\nspec: {command: python, description: two}\n")
    assert cli("update", "-a", str(path)).out == "updated cli-upd\n"
    assert _json(cli("view", "-a", "cli-upd", "-o", "json"))["spec"]["description"] == "two"
    assert cli("unregister", "-a", "cli-upd").out == "unregistered cli-upd\n"
    assert "cli-upd" not in {a["name"] for a in _json(cli("list", "-a", "-o", "json"))}


def test_a_bad_document_registers_nothing(runtime: LocalRuntime, cli: Cli, tmp_path: Path) -> None:
    """A file whose second document is malformed fails naming it, and the first is not
    registered either."""
    path = tmp_path / "two.yaml"
    path.write_text(
        "metadata: {name: cli-first}\nspec: {command: python}\n---\n"
        "metadata: {name: cli-second}\nspec: {arguments: 3}\n"
    )
    line = _one_error_line(cli("register", "-f", str(path)))
    assert line == f"error: {path}, document 2: spec.arguments must be a list of strings, got int"
    assert "cli-first" not in {a["name"] for a in _json(cli("list", "-a", "-o", "json"))}


@pytest.fixture
def echo_app(runtime: LocalRuntime) -> str:
    """echo-app registered on the module's runtime (whichever test gets there first)."""
    if core.get_application("echo-app") is None:
        from flame_agents.cli.app_yaml import load_app_file

        [doc] = load_app_file(ECHO_YAML)
        core.register_application(doc.name, doc.spec)
    return "echo-app"


def test_create_list_view_and_close_a_session(echo_app: str, cli: Cli) -> None:
    """create prints an id; list -s and view -s show the session; close closes it."""
    created = cli("create", "-a", "echo-app", "-p", "3", "-r", "cpu=1,mem=64m")
    assert created.code == 0, created.err
    sid = created.out.strip()
    assert sid.startswith("echo-app-") and len(sid) == len("echo-app-") + 6
    listed = {s["id"]: s for s in _json(cli("list", "-s", "-o", "json"))}
    assert listed[sid]["state"] == "OPEN"
    assert listed[sid]["priority"] == 3
    assert listed[sid]["resreq"]["memory"] == 64 * 1024**2
    assert sid in cli("list", "--session").out
    view = _json(cli("view", "-s", sid, "-o", "json"))
    assert view["session"]["application"] == "echo-app"
    assert view["tasks"] == []
    assert cli("close", "-s", sid).out == f"closed {sid}\n"
    assert _json(cli("view", "-s", sid, "-o", "json"))["session"]["state"] == "CLOSED"
    as_json = _json(cli("create", "--app", "echo-app", "-o", "json"))
    assert as_json["state"] == "OPEN"
    assert cli("close", "--session", as_json["id"]).code == 0


def test_view_tasks_of_a_session(runtime: LocalRuntime, cli: Cli) -> None:
    """view -s lists the tasks of a session; view -s -t shows one task with its output."""
    with core.create_session("flmping") as session:
        session.invoke(b"ping")
        sid = session.id
    view = _json(cli("view", "-s", sid, "-o", "json"))
    assert view["session"]["state"] == "CLOSED"
    assert view["agent_state"] is None  # not an agent session
    assert [(t["id"], t["state"]) for t in view["tasks"]] == [("1", "SUCCEED")]
    task = _json(cli("view", "-s", sid, "-t", "1", "-o", "json"))
    assert task["state"] == "SUCCEED"
    assert base64.b64decode(task["input"]["base64"]) == b"ping"
    assert task["output"]["size"] == len(base64.b64decode(task["output"]["base64"]))
    table = cli("view", "-s", sid)
    assert table.code == 0
    assert any(line.split()[:2] == ["1", "SUCCEED"] for line in table.out.splitlines())
    assert "input:" in cli("view", "-s", sid, "-t", "1").out


def test_agent_label_fills_the_schema_at_registration(runtime: LocalRuntime, cli: Cli) -> None:
    """An app YAML labelled flame-agents.agent=<module>:<Class> is registered with the agent's
    request/reply/context JSON Schemas."""
    path = ECHO_YAML.parents[1] / "chat" / "chat-agent.yaml"
    assert cli("register", "-f", str(path)).out == "registered chat-agent\n"
    schema = _json(cli("view", "-a", "chat-agent", "-o", "json"))["spec"]["schema"]
    for part in ("input", "output", "common_data"):
        assert json.loads(schema[part])["type"] == "object" or "$defs" in json.loads(schema[part])
    assert "messages" in schema["common_data"]


def test_schema_check_reports_up_to_date_example_schemas(cli: Cli) -> None:
    """schema --check exits 0 when the committed example agent schemas match their classes."""
    result = cli("schema", "--check")
    assert result.code == 0, result.err
    assert "up to date" in result.out


def test_list_executors(runtime: LocalRuntime, cli: Cli) -> None:
    """list -e shows the executor serving a session that just ran a task (it waits there for
    more work), as a table and as JSON rows."""
    with core.create_session("flmping") as session:
        session.invoke(b"ping")
        rows = _json(cli("list", "--executor", "-o", "json"))
        assert all(set(row) == {"id", "node", "state", "session_id"} for row in rows)
        serving = [row for row in rows if row["session_id"] == session.id]
        assert serving, rows
        table = cli("list", "-e").out
        assert table.split()[:4] == ["ID", "NODE", "STATE", "SESSION"]
        assert serving[0]["id"] in table and session.id in table


def test_cancel_tasks_of_a_session(runtime: LocalRuntime, cli: Cli) -> None:
    """cancel -s says when nothing is in flight, cancel -s -t prints how the task ended."""
    with core.create_session("flmping") as session:
        session.invoke(b"ping")
        assert cli("cancel", "-s", session.id).out == f"no task of {session.id} in flight\n"
        assert cli("cancel", "-s", session.id, "-t", "1").out == "task 1 SUCCEED\n"
        assert "not found" in _one_error_line(cli("cancel", "-s", session.id, "-t", "5"))


def test_unknown_session_and_task_are_one_clear_line(runtime: LocalRuntime, cli: Cli) -> None:
    """Missing sessions and tasks are reported on one line with exit code 1."""
    assert "no-such-session" in _one_error_line(cli("view", "-s", "no-such-session"))
    assert "no-such-session" in _one_error_line(cli("close", "-s", "no-such-session"))
    assert "error:" in _one_error_line(cli("unregister", "-a", "no-such-app"))
    assert "resource requirement" in _one_error_line(cli("create", "-a", "x", "-r", "cpu=two"))


@pytest.mark.parametrize(
    "argv",
    [
        (),
        ("frobnicate",),
        ("list",),
        ("list", "-a", "-s"),
        ("view", "-a", "x", "-t", "1"),
        ("view",),
        ("create", "-a", "x", "-p", "-1"),
        ("create",),
        ("register",),
        ("list", "-a", "-o", "yaml"),
    ],
)
def test_usage_errors_exit_2(cli: Cli, argv: tuple[str, ...]) -> None:
    """argparse usage errors exit with 2 and print usage on stderr."""
    result = cli(*argv)
    assert result.code == 2
    assert "usage:" in result.err


def test_help_exits_0(cli: Cli) -> None:
    """--help prints the verbs and exits 0."""
    result = cli("--help")
    assert result.code == 0
    verbs = ("up", "down", "status", "register", "list", "view", "create", "close", "cancel")
    for verb in (*verbs, "demo"):
        assert verb in result.out
