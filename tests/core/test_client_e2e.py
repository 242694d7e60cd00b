"""End-to-end tests of the core client against a real embedded runtime and a flamepy service.

The service is the published flamepy's raw-bytes ``FlameService`` (services/raw_service.py),
launched by the runtime for each session.
"""

from __future__ import annotations

import concurrent.futures
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flame_agents import core
from flame_agents.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    InvalidStateError,
    NotFoundError,
    TaskFailedError,
)
from flame_agents.testing import LocalRuntime
from flame_agents.types import ApplicationSpec, ResourceRequirement, SessionState, TaskState

pytestmark = pytest.mark.e2e

SERVICE = Path(__file__).resolve().parent / "services" / "raw_service.py"
APP = "core-raw"


def raw_spec(**extra: object) -> dict[str, object]:
    """flamepy-style application attributes that launch the raw service."""
    spec: dict[str, object] = {
        "command": sys.executable,
        "arguments": [str(SERVICE)],
        "environments": {"PYTHONUNBUFFERED": "1"},
        "description": "core client e2e service",
        "delay_release": 2,
    }
    spec.update(extra)
    return spec


@pytest.fixture(scope="module")
def app(runtime: LocalRuntime) -> Iterator[str]:
    """The raw service registered once for the module (through the default connection)."""
    core.register_application(APP, raw_spec())
    yield APP


def test_invoke_and_common_data(app: str) -> None:
    """invoke() returns the service's output; common_data reaches the instance unchanged."""
    with core.create_session(app, common_data=b"CD") as ssn:
        assert ssn.invoke(b"hello", timeout=60) == b"echo:hello|cd=CD"
        assert ssn.invoke(b"none", timeout=60) is None
        assert ssn.common_data() == b"CD"


def test_invoke_failure_text(app: str) -> None:
    """A service exception becomes TaskFailedError carrying the exception text and ids."""
    with core.create_session(app) as ssn:
        with pytest.raises(TaskFailedError) as info:
            ssn.invoke(b"fail:bad input 42", timeout=60)
        assert "bad input 42" in str(info.value)
        assert info.value.session_id == ssn.id
        assert info.value.task_id
        # The session keeps serving after a failed task.
        assert ssn.invoke(b"again", timeout=60) == b"echo:again|cd=<none>"


def test_run_futures(app: str, conn: core.Connection) -> None:
    """run() futures all resolve with their own outputs."""
    with conn.create_session(app, max_instances=2) as ssn:
        futures = {i: ssn.run(f"n{i}".encode()) for i in range(8)}
        concurrent.futures.wait(futures.values(), timeout=90)
        for i, future in futures.items():
            assert future.result(timeout=0) == f"echo:n{i}|cd=<none>".encode()


def test_list_get_and_watch_tasks(app: str, conn: core.Connection) -> None:
    """list_tasks sees every task; get_task has input/output; watch_task ends terminal."""
    with conn.create_session(app) as ssn:
        ssn.invoke(b"a", timeout=60)
        task = ssn.create_task(b"b")
        updates = list(ssn.watch_task(task.id, timeout=60))
        assert updates[-1].state is TaskState.SUCCEED
        assert updates[-1].output == b"echo:b|cd=<none>"
        got = ssn.get_task(task.id)
        assert (got.input, got.output, got.state) == (b"b", b"echo:b|cd=<none>", TaskState.SUCCEED)
        assert sorted(t.id for t in ssn.list_tasks()) == sorted(["1", task.id])
        # Watching a finished task yields it once and stops.
        assert [t.state for t in ssn.watch_task(task.id, timeout=30)] == [TaskState.SUCCEED]


def test_session_lifecycle(app: str, conn: core.Connection) -> None:
    """Sessions are created with an id, opened, listed, read and closed (idempotently)."""
    sid = f"{app}-{uuid.uuid4().hex[:8]}"
    ssn = conn.create_session(app, session_id=sid, resreq="cpu=1,mem=256m", priority=2)
    assert ssn.id == sid
    with pytest.raises(AlreadyExistsError):
        conn.create_session(app, session_id=sid)
    assert conn.open_session(sid).id == sid
    info = conn.get_session(sid)
    assert info.state is SessionState.OPEN and info.application == app
    assert info.resreq == ResourceRequirement(cpu=1, memory=256 * 1024**2)
    assert info.priority == 2
    assert sid in {s.id for s in conn.list_sessions()}
    ssn.invoke(b"x", timeout=60)
    assert ssn.info().succeed == 1
    closed = ssn.close()
    assert closed.state is SessionState.CLOSED and closed.completion_time is not None
    assert conn.close_session(sid).state is SessionState.CLOSED
    with pytest.raises((InvalidStateError, InvalidArgumentError)):
        ssn.create_task(b"late")
    with pytest.raises(InvalidArgumentError):
        conn.open_session(sid)


def test_open_session_creates_from_spec(app: str, conn: core.Connection) -> None:
    """open_session with a spec creates a missing session; without one it is NotFound."""
    sid = f"{app}-{uuid.uuid4().hex[:8]}"
    with pytest.raises(NotFoundError):
        conn.open_session(sid)
    with conn.open_session(sid, spec={"application": app, "common_data": b"S"}) as ssn:
        assert ssn.invoke(b"o", timeout=60) == b"echo:o|cd=S"
        # Re-opening with a matching spec returns the same session.
        assert conn.open_session(sid, spec={"application": app}).id == sid


def test_unknown_session_and_task(app: str, conn: core.Connection) -> None:
    """Unknown sessions and tasks raise NotFoundError."""
    with pytest.raises(NotFoundError):
        conn.get_session("core-raw-nosuch")
    with conn.create_session(app) as ssn, pytest.raises(NotFoundError):
        ssn.get_task("999")


def test_application_crud(runtime: LocalRuntime, conn: core.Connection) -> None:
    """Applications register, read back, update, list and unregister, with specific errors."""
    name = f"core-crud-{uuid.uuid4().hex[:6]}"
    conn.register_application(name, raw_spec(labels=["a"], max_instances=3))
    with pytest.raises(AlreadyExistsError):
        conn.register_application(name, raw_spec())
    app = conn.get_application(name)
    assert app is not None
    assert app.spec.command == sys.executable
    assert app.spec.arguments == (str(SERVICE),)
    assert app.spec.environments == {"PYTHONUNBUFFERED": "1"}
    assert app.spec.labels == ("a",) and app.spec.max_instances == 3
    assert name in {a.name for a in conn.list_applications()}

    ssn = conn.create_session(name)
    with pytest.raises(InvalidStateError):
        conn.unregister_application(name)
    ssn.close()

    conn.update_application(name, ApplicationSpec.coerce(raw_spec(description="updated")))
    updated = conn.get_application(name)
    assert updated is not None and updated.spec.description == "updated"
    conn.unregister_application(name)
    assert conn.get_application(name) is None
    with pytest.raises(NotFoundError):
        conn.unregister_application(name)


def test_default_connection_follows_the_environment(app: str, runtime: LocalRuntime) -> None:
    """Module functions use FLAME_ENDPOINT; after a reset their session handles still work."""
    ssn = core.create_session(app)
    first = core.default_connection()
    assert first.endpoint == runtime.endpoint
    core.reset_default_connection()
    assert first.closed
    assert ssn.invoke(b"after-reset", timeout=60) == b"echo:after-reset|cd=<none>"
    second = core.default_connection()
    assert second is not first and second.endpoint == runtime.endpoint
    ssn.close()
