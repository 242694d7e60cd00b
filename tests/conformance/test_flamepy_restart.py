"""What flamepy stored survives a restart of our runtime: objects, applications, sessions.

A Flame cluster keeps its objects on disk and its sessions in sqlite; our embedded runtime must
too, on the same ports, so refs and session ids handed out before the restart stay valid.
"""

from __future__ import annotations

from typing import Any

import pytest
from conformance_support import RAW_APP, Flamepy

pytestmark = [pytest.mark.conformance, pytest.mark.usefixtures("apps")]


def test_objects_survive_runtime_restart(flamepy: Flamepy, runtime: Any) -> None:
    """Objects (base + patches, native tables, bytes) written before a restart read back after."""
    before = flamepy("cache_put_for_restart", prefix="conf-restart/s1")
    runtime.restart()
    after = flamepy.fresh("cache_get_after_restart", **before)
    assert after["base"] == {"hello": "world"}
    assert after["all"] == [{"hello": "world"}, {"patch": 1}]
    assert after["table"] == {"x": [1, 2]}
    assert after["blob"] == b"raw"
    assert after["next_version"] == 3, "versions continue where they were"


def test_sessions_and_applications_survive_runtime_restart(flamepy: Flamepy, runtime: Any) -> None:
    """A session and its finished task, and the registered app, are still there after a restart."""
    before = flamepy("open_create_if_absent", app=RAW_APP, session_id="conf-raw-durable")
    assert before["result"]["ok"] is True
    runtime.restart(kill=True)
    after = flamepy.fresh("open_existing_by_id", session_id="conf-raw-durable")
    assert after["app"] is not None
    assert after["info"]["state"] == "OPEN" and after["info"]["succeed"] == 1
    assert after["info"]["common_data"] == b"SPEC"
    assert after["result"] == {"ok": True, "value": b"echo:again|cd=SPEC"}
    assert after["task_ids"] == ["1", "2"]
