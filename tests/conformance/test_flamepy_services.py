"""flamepy 0.6.0 services launched by our runtime: FlameInstance with context, failures (§3, §8.5).

The failing-``on_session_enter`` service pins the bind-failure path of §2.6: session events 1001
with the service's text, a single 1002 at the retry limit, tasks left pending, and a close that
ends everything without hanging.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conformance_support import CTX_APP, ENTER_FAILS_APP, RAW_APP, Flamepy, eventually

from flame_agents.testing import LocalRuntime

pytestmark = [pytest.mark.conformance, pytest.mark.usefixtures("apps")]

ENTER_FAILURE_TEXT = "enter refused by conformance service"  # services/enter_fails.py
BIND_RETRY_LIMIT = 2
"""Lower than Flame's default 5 so the bind-failure test pays two service launches, not five."""


@pytest.fixture(scope="module")
def runtime() -> Iterator[LocalRuntime]:
    """This module's runtime, with a bind retry limit of BIND_RETRY_LIMIT."""
    with LocalRuntime(extra_args=["--bind-retry-limit", str(BIND_RETRY_LIMIT)]) as rt:
        yield rt


def test_flamepy_instance_context_and_update_context(flamepy: Flamepy) -> None:
    """A FlameInstance reads the session context, update_context persists it for the next task."""
    res = flamepy("service_context", app=CTX_APP, texts=["a", "b", "c"])
    assert [(r["text"], r["count"]) for r in res["replies"]] == [("A", 2), ("B", 3), ("C", 4)]
    assert res["remote"] == ["seed", "a", "b", "c"], "the service sees its own updates"
    assert res["local"] == ["seed", "a", "b", "c"], "the client sees the service's updates"
    assert res["none"] is None
    assert res["info"]["state"] == "CLOSED"
    assert res["info"]["succeed"] == 5


def test_flamepy_instance_without_context(flamepy: Flamepy) -> None:
    """A FlameInstance session created without ctx has no context on either side."""
    res = flamepy("service_without_context", app=CTX_APP)
    assert res["append"]["ok"] is True
    assert res["append"]["value"]["count"] == 1
    assert res["context"] is None
    assert res["local"] is None


def test_flamepy_instance_failure_text_and_recovery(flamepy: Flamepy) -> None:
    """An entrypoint exception reaches the flamepy client as text; the session keeps working."""
    res = flamepy("service_failure", app=CTX_APP, text="bad request: 7 is odd")
    assert res["failed"]["ok"] is False
    assert "bad request: 7 is odd" in res["failed"]["error"]["message"]
    assert res["after"]["count"] == 1
    assert [t["state"] for t in res["tasks"]] == ["FAILED", "SUCCEED"]


def test_flamepy_instance_reopened_by_session_id(flamepy: Flamepy) -> None:
    """flamepy.service.Session(session_id=...) reopens a session and sees the same context."""
    res = flamepy("service_open_by_id", app=CTX_APP)
    assert res["reply"]["count"] == 3
    assert res["context"] == ["a", "b", "c"]


def _codes(info: dict[str, Any], code: int) -> list[dict[str, Any]]:
    return [e for e in info["events"] if e["code"] == code]


def test_session_enter_failure_events_pending_tasks_and_close(
    flamepy: Flamepy, runtime: Any
) -> None:
    """A failing on_session_enter gives 1001s with its text, one 1002, pending tasks, clean end."""
    res = flamepy("enter_fails", app=ENTER_FAILS_APP, want_code=1002, wait=80)
    info = res["info"]
    binds = _codes(info, 1001)
    limits = _codes(info, 1002)
    assert len(binds) == BIND_RETRY_LIMIT, f"one 1001 per attempt: {info['events']}"
    for event in binds:
        assert ENTER_FAILURE_TEXT in (event["message"] or ""), event
        assert res["id"] in event["message"], "the service's own text includes the session id"
    assert len(limits) == 1, f"expected one 1002 event: {info['events']}"
    assert info["events"][-1]["code"] == 1002, "1002 comes after the last bind failure"
    assert f"{BIND_RETRY_LIMIT}/{BIND_RETRY_LIMIT}" in (limits[0]["message"] or ""), limits
    assert info["state"] == "OPEN", "a session at its retry limit stays open"
    assert res["task"]["state"] == "PENDING" and info["pending"] == 1
    assert res["pending_before_close"] is True
    closed = res["closed"]
    assert closed["state"] == "CLOSED"
    assert len(_codes(closed, 1001)) == len(binds), "no bind attempts after the retry limit"
    fut = res["future"]
    # The waiting future resolves on close: the task ends Cancelled, which flamepy 0.6's
    # TaskState cannot name (flame-wire: the same error against Flame).
    assert fut["ok"] is False, fut
    assert fut["error"]["message"] == "failed to watch task: 4 is not a valid TaskState", fut
    eventually(lambda: not runtime.instance_pids(), what="every instance process to exit")


def test_instance_crash_mid_task_is_redispatched(flamepy: Flamepy, flamepy_home: Path) -> None:
    """A task whose instance dies runs again on a fresh instance, and the session keeps working."""
    marker = flamepy_home / "crashed-once"
    res = flamepy(
        "create_and_invoke",
        app=RAW_APP,
        common_data=b"R",
        inputs=[b"crash-once:" + str(marker).encode(), b"after"],
    )
    assert marker.exists(), "the first attempt really crashed"
    assert res["outputs"] == [
        {"ok": True, "value": b"echo:crash-once:" + str(marker).encode() + b"|cd=R"},
        {"ok": True, "value": b"echo:after|cd=R"},
    ]


def test_instance_that_always_crashes_fails_only_its_task(flamepy: Flamepy) -> None:
    """A task that kills every instance fails with a message; later tasks of the session succeed."""
    res = flamepy("create_and_invoke", app=RAW_APP, common_data=None, inputs=[b"crash", b"ok"])
    crashed, after = res["outputs"]
    assert crashed["ok"] is False
    assert re.match(
        r"InstanceLostError: instance lost 3 times while running task 1; last exit: ",
        crashed["error"]["message"],
    ), crashed
    assert "without error message" not in crashed["error"]["message"], crashed
    assert after == {"ok": True, "value": b"echo:ok|cd=<none>"}, "no poisoned executor (Flame bug)"
