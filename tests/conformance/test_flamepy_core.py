"""flamepy 0.6.0's core client against our runtime: sessions, tasks and applications (wire §2).

The service behind most sessions is ``services/raw_echo.py``, a ``flamepy.core.FlameService``
launched by our runtime, so every test also checks the raw-bytes Instance shim (§3, §8.5).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
from conformance_support import RAW_APP, Flamepy, app_attrs

pytestmark = [pytest.mark.conformance, pytest.mark.usefixtures("apps")]


def ok(value: Any) -> dict[str, Any]:
    return {"ok": True, "value": value}


def rejected(out: dict[str, Any], code: str, match: str) -> None:
    """``out`` is flamepy's FlameError with gRPC ``code`` and a message matching ``match``:
    the expected rejection, not any exception (a bug in the scenario would be one)."""
    assert out["ok"] is False, out
    assert out["error"]["type"] == "FlameError", out
    assert out["error"]["code"] == code, out
    assert re.search(match, out["error"]["message"]), out


def test_create_session_and_invoke_passes_common_data(flamepy: Flamepy) -> None:
    """create_session + invoke reach a FlameService that sees the raw input and common_data."""
    res = flamepy(
        "create_and_invoke", app=RAW_APP, common_data=b"CD\x00\xff", inputs=[b"hello", b"none"]
    )
    assert res["outputs"] == [ok(b"echo:hello|cd=CD\x00\xff"), ok(None)]
    ssn = res["session"]
    assert re.fullmatch(rf"{RAW_APP}-[A-Za-z0-9]{{6}}", ssn["id"]), "client-chosen id honoured"
    assert ssn["application"] == RAW_APP
    assert ssn["state"] == "OPEN"
    assert ssn["common_data"] == b"CD\x00\xff"
    assert ssn["created_ms"] > 1_600_000_000_000, "times are Unix milliseconds"


@pytest.fixture(scope="module")
def plain_session(flamepy: Flamepy) -> dict[str, Any]:
    """One session without common_data, three tasks: an echo, a whoami and a failure."""
    return dict(
        flamepy(
            "create_and_invoke",
            app=RAW_APP,
            common_data=None,
            inputs=[b"x", b"whoami", b"fail:boom 42", b"env"],
        )
    )


def test_session_without_common_data(plain_session: dict[str, Any]) -> None:
    """A session created without common_data hands the service no common_data at all."""
    assert plain_session["outputs"][0] == ok(b"echo:x|cd=<none>")
    assert plain_session["session"]["common_data"] is None


def test_service_sees_session_and_task_ids(plain_session: dict[str, Any]) -> None:
    """OnSessionEnter and OnTaskInvoke carry the session id and the per-session task id."""
    sid = plain_session["session"]["id"]
    assert plain_session["outputs"][1] == ok(f"{sid}/{sid}/2".encode())


def test_failed_task_text_reaches_flamepy(plain_session: dict[str, Any]) -> None:
    """A FlameService exception fails the task and flamepy's future raises with its text."""
    out = plain_session["outputs"][2]
    rejected(out, "INTERNAL", "boom 42")
    assert "boom 42" in out["error"]["message"]
    assert "without error message" not in out["error"]["message"]


def test_service_launch_environment(plain_session: dict[str, Any], runtime: Any) -> None:
    """A service is launched as Flame's host shim does: env, Unix socket, own process group."""
    out = plain_session["outputs"][3]
    assert out["ok"] is True
    seen = json.loads(out["value"])
    env = seen["env"]
    assert os.path.isabs(env["FLAME_INSTANCE_ENDPOINT"]), "a plain absolute path, not a URI"
    assert seen["socket_is_unix"] is True
    assert env["FLAME_ENDPOINT"] == runtime.endpoint
    assert env["FLAME_CACHE_ENDPOINT"] == runtime.cache_endpoint
    assert env["FLAME_LOG"] and env["HOME"] and env["TMPDIR"]
    assert env["PYTHONUNBUFFERED"] == "1", "the application's environments are applied"
    assert seen["own_group"] is True
    assert os.path.isabs(seen["cwd"])


def test_run_futures_resolve_with_their_own_outputs(flamepy: Flamepy) -> None:
    """Session.run futures all resolve, each with its own task's output; ids are 1..n."""
    res = flamepy("run_futures", app=RAW_APP, count=6)
    assert res["done"] == 6 and res["not_done"] == 0
    assert res["results"] == [ok(f"echo:in-{i}|cd=F".encode()) for i in range(6)]
    assert [t["id"] for t in res["tasks"]] == [str(i) for i in range(1, 7)]
    assert all(t["state"] == "SUCCEED" and t["completed"] for t in res["tasks"])
    assert [t["input"] for t in res["tasks"]] == [f"in-{i}".encode() for i in range(6)]
    assert res["session"]["succeed"] == 6
    assert res["session"]["pending"] == res["session"]["running"] == 0


@pytest.fixture(scope="module")
def queried_session(flamepy: Flamepy) -> dict[str, Any]:
    """A session with one succeeded and one failed task, read back through every query."""
    return dict(flamepy("session_queries", app=RAW_APP))


def test_get_session_list_sessions_list_tasks_get_task(queried_session: dict[str, Any]) -> None:
    """get_session/list_sessions report live counters; list_tasks/get_task report each task."""
    res = queried_session
    assert res["first"] == ok(b"echo:a|cd=Q")
    rejected(res["second"], "INTERNAL", "^second task fails$")
    for info in (res["info"], *res["listed"]):
        assert info["id"] == res["id"]
        assert info["application"] == RAW_APP
        assert info["state"] == "OPEN"
        assert (info["succeed"], info["failed"], info["pending"], info["running"]) == (1, 1, 0, 0)
        assert info["common_data"] == b"Q"
    assert len(res["listed"]) == 1
    tasks = res["tasks"]
    assert [(t["id"], t["state"]) for t in tasks] == [("1", "SUCCEED"), ("2", "FAILED")]
    assert tasks[0]["input"] == b"a" and tasks[0]["output"] == b"echo:a|cd=Q"
    assert tasks[1]["input"] == b"fail:second task fails"
    task1 = res["task1"]
    assert task1["state"] == "SUCCEED" and task1["output"] == b"echo:a|cd=Q"
    codes = [e["code"] for e in task1["events"]]
    assert 0 in codes and 2 in codes, f"task events (GetTask, §2.8): {task1['events']}"


def test_failed_task_event_carries_text(queried_session: dict[str, Any]) -> None:
    """GetTask of a failed task returns event code 3 whose message is the service's text."""
    res = queried_session
    task2 = res["task2"]
    assert task2["state"] == "FAILED" and task2["completed"]
    failed = [e for e in task2["events"] if e["code"] == 3]
    assert failed, f"no code-3 event on the failed task: {task2['events']}"
    assert "second task fails" in (failed[-1]["message"] or "")


def test_close_session(flamepy: Flamepy) -> None:
    """close() closes the session (completion time set), refuses new tasks, and is idempotent."""
    res = flamepy("close_session", app=RAW_APP)
    assert res["first"] == ok(b"echo:before close|cd=<none>")
    assert res["info"]["state"] == "CLOSED" and res["info"]["completed"]
    rejected(res["create_after"], "INTERNAL", "Cannot create task in closed session")
    assert res["close_again"]["ok"] is True
    assert res["close_again"]["value"]["state"] == "CLOSED"


def test_close_and_get_unknown_session_fail(flamepy: Flamepy) -> None:
    """close_session and get_session of an unknown id raise instead of inventing a session."""
    res = flamepy("close_unknown", session_id="conf-raw-nosuch")
    rejected(res["close"], "INTERNAL", "session conf-raw-nosuch not found")
    rejected(res["get"], "INTERNAL", "session conf-raw-nosuch not found")


def test_open_existing_session(flamepy: Flamepy) -> None:
    """open_session(id) returns the existing open session, and tasks continue its numbering."""
    res = flamepy("open_existing", app=RAW_APP)
    opened = res["opened"]
    assert opened["id"] == res["created"]
    assert opened["application"] == RAW_APP and opened["state"] == "OPEN"
    assert opened["common_data"] == b"OPEN"
    assert res["first"] == ok(b"echo:one|cd=OPEN")
    assert res["second"] == ok(b"echo:two|cd=OPEN")
    assert res["task_ids"] == ["1", "2"]


def test_open_session_creates_if_absent(flamepy: Flamepy) -> None:
    """open_session(id, spec) creates a missing session with that id, then reopens it."""
    res = flamepy("open_create_if_absent", app=RAW_APP, session_id="conf-raw-open-created")
    assert res["created"]["id"] == "conf-raw-open-created"
    assert res["created"]["state"] == "OPEN"
    assert res["created"]["common_data"] == b"SPEC"
    assert res["result"] == ok(b"echo:hi|cd=SPEC")
    assert res["again"]["id"] == "conf-raw-open-created"


def test_open_session_spec_mismatch_is_invalid_argument(flamepy: Flamepy) -> None:
    """open_session with a spec differing in app/resreq/min/max raises INVALID_ARGUMENT."""
    res = flamepy("open_spec_mismatch", app=RAW_APP, other_app="conf-flamepy-ctx")
    for field in ("application", "min_instances", "max_instances", "resreq"):
        rejected(res[field], "INVALID_ARGUMENT", f"spec mismatch: {field} differs")
    assert res["common_data_ignored"]["ok"] is True
    assert res["default_resreq_matches"]["ok"] is True, "the resolved default is cpu=1,mem=1g"


def test_session_ids_chosen_by_the_client(flamepy: Flamepy) -> None:
    """Client-chosen ids with spaces, non-ASCII or 300 characters work; a '/' is refused."""
    ok_ids = ["conf raw spaces", "conf-ünïcode", "c" * 300]
    res = flamepy("open_ids", app=RAW_APP, ids=[*ok_ids, "conf/slash"])
    for sid in ok_ids:
        assert res[sid] == {"ok": True, "value": sid}, sid
    # A kept deviation (docs/flame-cluster.md): ids become cache key parts and file names.
    rejected(res["conf/slash"], "INVALID_ARGUMENT", "invalid session id conf/slash")


def test_open_unknown_session_is_not_found(flamepy: Flamepy) -> None:
    """open_session of a missing id without a spec raises NOT_FOUND."""
    res = flamepy("open_not_found", session_id="conf-raw-missing")
    rejected(res, "NOT_FOUND", "session conf-raw-missing not found")


def test_open_closed_session_fails(flamepy: Flamepy) -> None:
    """open_session of a closed session raises (with or without a spec) and says it is not open."""
    res = flamepy("open_closed", app=RAW_APP)
    for out in (res["plain"], res["with_spec"]):
        rejected(out, "INVALID_ARGUMENT", "is not open: .*cannot be reopened")


def test_create_duplicate_session_or_unknown_app_fails(flamepy: Flamepy) -> None:
    """create_session with a taken id or an unregistered application raises."""
    res = flamepy("create_duplicate", app=RAW_APP)
    rejected(res["duplicate"], "INTERNAL", "session conf-raw-.* already exists")
    rejected(res["unknown_app"], "INTERNAL", "application conf-no-such-app not found")


def test_watch_of_terminal_task_yields_one_message(flamepy: Flamepy) -> None:
    """WatchTask of a finished task sends exactly one message, the terminal state, then ends."""
    res = flamepy("watch_terminal", app=RAW_APP)
    assert res["value"] == ok(b"echo:w|cd=<none>")
    assert [(u["id"], u["state"], u["output"]) for u in res["updates"]] == [
        ("1", "SUCCEED", b"echo:w|cd=<none>")
    ]


def test_application_register_get_list_unregister(flamepy: Flamepy) -> None:
    """register/get/list/unregister_application round-trip every field; duplicates are refused."""
    attrs = app_attrs(
        "raw_echo.py",
        description="all fields",
        labels=["x", "y"],
        environments={"A": "1", "B": "two words"},
        working_directory="/tmp",
        max_instances=7,
        delay_release=9,
    )
    res = flamepy("application_lifecycle", name="conf-lifecycle", attrs=attrs)
    got = res["get"]
    assert got["name"] == "conf-lifecycle"
    assert got["state"] == "ENABLED" and got["shim"] == "HOST"
    for key in ("command", "arguments", "environments", "working_directory", "description"):
        assert got[key] == attrs[key], key
    assert got["labels"] == ["x", "y"]
    assert (got["max_instances"], got["delay_release"]) == (7, 9)
    assert res["listed"] is True
    rejected(res["duplicate"], "INTERNAL", "application conf-lifecycle already exists")
    assert res["after_unregister"] is None
    assert res["listed_after"] is False


def test_application_defaults(flamepy: Flamepy) -> None:
    """An application registered with only a command reports Flame's defaults (§2.2)."""
    res = flamepy(
        "application_lifecycle",
        name="conf-defaults",
        attrs={"command": "/bin/true"},
    )
    got = res["get"]
    assert got["shim"] == "HOST" and got["state"] == "ENABLED"
    assert got["max_instances"] == 1_000_000
    assert got["delay_release"] == 60
    assert got["arguments"] == [] and got["environments"] == {}


def test_application_validation(flamepy: Flamepy) -> None:
    """Schemas round-trip; bad names, relative working dirs and non-JSON schemas are refused."""
    res = flamepy("application_validation", command="/bin/true")
    assert res["with_schema"]["ok"] is True
    assert res["schema"] == {"input": '{"type": "string"}', "output": '{"type": "object"}'}
    expected = {
        "bad_name": "invalid application name '-bad/name'",
        "relative_workdir": "working_directory must be an absolute path",
        "bad_schema": "schema.input is not valid JSON",
        "unregister_unknown": "application conf-never not found",
    }
    for case, message in expected.items():
        rejected(res[case], "INTERNAL", re.escape(message))
    assert "conf-relative" not in res["registered"]
    assert "conf-bad-schema" not in res["registered"]


def test_get_unknown_application_is_none(flamepy: Flamepy) -> None:
    """get_application of an unknown name returns None (the server answers NOT_FOUND)."""
    assert flamepy("get_application", name="conf-no-such-app") is None


def test_unregister_refused_while_sessions_open(flamepy: Flamepy) -> None:
    """unregister_application fails while the app has an open session and works once closed."""
    res = flamepy(
        "unregister_with_open_session",
        app=RAW_APP,
        name="conf-busy",
        attrs=app_attrs("raw_echo.py"),
    )
    rejected(res["blocked"], "INTERNAL", "conf-busy has 1 open session")
    assert res["still_there"] is True
    assert res["after_close"]["ok"] is True
    assert res["gone"] is True


def test_flmping_is_preregistered_and_answers(flamepy: Flamepy) -> None:
    """flmping exists without registration and answers pings from flamepy."""
    res = flamepy("ping", app="flmping", count=3)
    assert res["app"] is not None and res["app"]["name"] == "flmping"
    assert all(r["ok"] for r in res["results"]), res["results"]


def test_watch_or_get_of_unknown_task_fails(flamepy: Flamepy) -> None:
    """WatchTask/GetTask of an unknown task raise instead of ending silently (a kept fix)."""
    res = flamepy("watch_unknown", app=RAW_APP)
    # Flame ends the stream silently; we answer NOT_FOUND.
    rejected(res["unknown_task"], "INTERNAL", "failed to watch task: task 99 .* not found")
    rejected(res["get_unknown_task"], "INTERNAL", "failed to get task: task 99 .* not found")


def test_list_executors_and_nodes(flamepy: Flamepy) -> None:
    """list_executors shows the instance bound to a busy session; list_nodes shows a Ready node."""
    res = flamepy("cluster_views", app=RAW_APP)
    assert res["value"]["ok"] is True
    assert res["id"] in [e["session_id"] for e in res["executors"]]
    assert res["nodes"] and all(n["state"] == 1 for n in res["nodes"]), res["nodes"]
