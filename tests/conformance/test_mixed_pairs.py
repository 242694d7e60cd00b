"""Mixed pairs: our ``flame_agents.service`` client against a flamepy FlameInstance service, and
flamepy's ``flamepy.service.Session`` against our FlameInstance service (same protocol)."""

from __future__ import annotations

from typing import Any

import pytest
from conformance_support import CTX_APP, OURS_APP, RAW_APP, Flamepy

pytestmark = [pytest.mark.conformance, pytest.mark.usefixtures("apps")]


def test_our_session_drives_flamepy_instance(runtime: Any) -> None:
    """Our service.Session creates, invokes and reads the context of a flamepy FlameInstance."""
    from flame_agents import service
    from flame_agents.errors import FlameAgentsError, TaskFailedError

    with service.Session(CTX_APP, ctx=["seed"]) as ssn:
        first = ssn.invoke({"op": "append", "text": "x"})
        second = ssn.invoke({"op": "append", "text": "y"})
        assert (first["text"], first["count"]) == ("X", 2)
        assert (second["text"], second["count"]) == ("Y", 3)
        assert ssn.invoke({"op": "context"}) == ["seed", "x", "y"]
        assert ssn.context() == ["seed", "x", "y"]
        assert ssn.invoke({"op": "none"}) is None
        sid = ssn.id()
        with pytest.raises(TaskFailedError, match="odd input 3"):
            ssn.invoke({"op": "fail", "text": "odd input 3"})
    with pytest.raises(FlameAgentsError):
        service.Session(session_id=sid)


def test_our_session_reopens_flamepy_instance_session(runtime: Any) -> None:
    """Our service.Session(session_id=...) reopens a live session and continues its context."""
    from flame_agents import service

    with service.Session(CTX_APP, ctx=["a"]) as first:
        first.invoke({"op": "append", "text": "b"})
        second = service.Session(session_id=first.id())
        reply = second.invoke({"op": "append", "text": "c"})
        assert reply["count"] == 3
        assert second.context() == ["a", "b", "c"]


def test_flamepy_session_drives_our_instance(flamepy: Flamepy) -> None:
    """flamepy.service.Session creates, invokes and reads the context of our FlameInstance."""
    res = flamepy("service_context", app=OURS_APP, texts=["a", "b"])
    assert [(r["text"], r["count"]) for r in res["replies"]] == [("A", 2), ("B", 3)]
    assert res["remote"] == ["seed", "a", "b"]
    assert res["local"] == ["seed", "a", "b"]
    assert res["none"] is None
    assert res["info"]["succeed"] == 4


def test_flamepy_session_sees_our_instance_failure(flamepy: Flamepy) -> None:
    """An exception in our FlameInstance entrypoint reaches flamepy's client as its text."""
    res = flamepy("service_failure", app=OURS_APP, text="rejected by our service")
    assert res["failed"]["ok"] is False
    assert "rejected by our service" in res["failed"]["error"]["message"]
    assert res["after"]["count"] == 1


def test_flamepy_session_without_context_on_our_instance(flamepy: Flamepy) -> None:
    """Our FlameInstance serves a flamepy session without ctx; the client then sees no context."""
    # Unlike flamepy's FlameInstance (which drops update_context without a ctx), ours stores the
    # first update at <app>/<session> so later tasks see it: a deviation listed in the docs.
    res = flamepy("service_without_context", app=OURS_APP)
    assert res["append"]["ok"] is True
    assert res["append"]["value"]["count"] == 1
    assert res["context"] == ["x"]
    assert res["local"] is None


def test_flamepy_reopens_session_served_by_our_instance(flamepy: Flamepy) -> None:
    """flamepy reopens a session served by our FlameInstance and sees the updated context."""
    res = flamepy("service_open_by_id", app=OURS_APP)
    assert res["reply"]["count"] == 3
    assert res["context"] == ["a", "b", "c"]


def test_our_core_client_continues_a_flamepy_session(flamepy: Flamepy, runtime: Any) -> None:
    """Our core client reopens a session flamepy created and sees flamepy's tasks and data."""
    from flame_agents import core
    from flame_agents.types import SessionState, TaskState

    sid = "conf-raw-from-flamepy"
    made = flamepy("open_create_if_absent", app=RAW_APP, session_id=sid)
    assert made["result"]["ok"] is True
    ssn = core.open_session(sid)
    try:
        assert ssn.invoke(b"ours", timeout=60) == b"echo:ours|cd=SPEC"
        info = core.get_session(sid)
        assert info.application == RAW_APP and info.state == SessionState.OPEN
        assert info.common_data == b"SPEC" and info.succeed == 2
        tasks = sorted(ssn.list_tasks(), key=lambda t: int(t.id))
        assert [(t.id, t.state, t.input) for t in tasks] == [
            ("1", TaskState.SUCCEED, b"hi"),
            ("2", TaskState.SUCCEED, b"ours"),
        ]
    finally:
        ssn.close()
    assert core.get_session(sid).state == SessionState.CLOSED
