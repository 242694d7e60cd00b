"""Unit tests of the core client against an in-process fake Frontend (no runtime involved)."""

from __future__ import annotations

import concurrent.futures
import re
import time

import pytest
from fake_frontend import FakeEnv

from flame_agents.core import Connection, _tasks
from flame_agents.errors import (
    AlreadyExistsError,
    Cancelled,
    InvalidArgumentError,
    InvalidStateError,
    InvocationTimeoutError,
    NotFoundError,
    RuntimeUnavailableError,
    TaskFailedError,
)
from flame_agents.types import ApplicationSpec, ResourceRequirement, SessionState, TaskState

ECHO = {"command": "/bin/true", "arguments": ["x"], "environments": {"K": "V"}}


@pytest.fixture
def env(fake_env: FakeEnv) -> FakeEnv:
    """The fake Frontend with an 'echo' application registered."""
    fake_env.conn.register_application("echo", ECHO)
    return fake_env


def test_create_session_sends_spec_and_default_id(env: FakeEnv) -> None:
    """create_session sends the spec (batch_size 1) and generates '<app>-<6 alnum>'."""
    ssn = env.conn.create_session(
        "echo", common_data=b"CD", min_instances=1, max_instances=2, priority=3, resreq="cpu=2"
    )
    name, _, suffix = ssn.id.rpartition("-")
    assert name == "echo" and len(suffix) == 6 and suffix.isalnum()
    request = next(r for op, r in env.fake.requests if op == "CreateSession")
    assert request.session_id == ssn.id
    assert request.session.batch_size == 1
    assert request.session.priority == 3
    assert request.session.resreq.cpu == 2
    assert ssn.common_data() == b"CD"
    info = ssn.info()
    assert info.min_instances == 1 and info.max_instances == 2
    assert info.resreq == ResourceRequirement(cpu=2)


def test_invoke_returns_output(env: FakeEnv) -> None:
    """invoke() creates a task and returns its output once it succeeds."""
    ssn = env.conn.create_session("echo")
    assert ssn.invoke(b"hi") == b"echo:hi"
    assert ssn.invoke(None) is None


def test_invoke_falls_back_to_the_plain_calls_without_the_fast_path(env: FakeEnv) -> None:
    """A Frontend without RunTask (like Flame 0.6) gets CreateTask + WatchTask, every time."""
    ssn = env.conn.create_session("echo")
    assert ssn.invoke(b"a") == b"echo:a"
    assert env.conn.fast_path is False
    assert ssn.run(b"b").result(timeout=30) == b"echo:b"
    assert [op for op, _ in env.fake.requests].count("CreateTask") == 2


def test_invoke_failure_carries_service_text(env: FakeEnv) -> None:
    """A failed task raises TaskFailedError with the code-3 event text and its ids."""
    ssn = env.conn.create_session("echo")
    with pytest.raises(TaskFailedError) as info:
        ssn.invoke(b"fail:division by zero")
    assert str(info.value) == "division by zero"
    assert info.value.task_id == "1"
    assert info.value.session_id == ssn.id


def test_invoke_survives_a_stream_that_ends_early(env: FakeEnv) -> None:
    """A WatchTask stream that ends without a terminal task falls back to GetTask."""
    env.fake.watch_eof_first = True
    ssn = env.conn.create_session("echo")
    assert ssn.invoke(b"x") == b"echo:x"


def test_invoke_survives_a_server_that_never_streams(env: FakeEnv) -> None:
    """Even if every WatchTask ends empty, invoke finishes via GetTask, with few re-watches."""
    env.fake.watch_eof_always = True
    ssn = env.conn.create_session("echo")
    assert ssn.invoke(b"x", timeout=30) == b"echo:x"
    with pytest.raises(TaskFailedError, match="nope"):
        ssn.invoke(b"fail:nope", timeout=30)


def test_timeout_holds_when_streams_end_early(
    env: FakeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task that never finishes behind empty streams still times out, and the client waits
    between re-watches with a back-off that doubles from 50 ms up to 1 s (never a busy loop)."""
    pauses: list[float] = []
    real_sleep = time.sleep

    def recorded_sleep(seconds: float) -> None:
        pauses.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(_tasks, "_pause", recorded_sleep)
    env.fake.watch_eof_always = True
    ssn = env.conn.create_session("echo")
    with pytest.raises(InvocationTimeoutError):
        ssn.invoke(b"hang", timeout=1.0)
    assert len(pauses) >= 2
    expected = [min(0.05 * 2**i, 1.0) for i in range(len(pauses))]
    # Every pause but the last follows the doubling; the last is cut short by the deadline.
    assert pauses[:-1] == pytest.approx(expected[:-1])
    assert 0 <= pauses[-1] <= expected[-1]


def test_invoke_times_out(env: FakeEnv) -> None:
    """A task that never finishes makes invoke raise InvocationTimeoutError (a TimeoutError)."""
    ssn = env.conn.create_session("echo")
    with pytest.raises(InvocationTimeoutError) as info:
        ssn.invoke(b"hang", timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    assert info.value.task_id == "1"


def test_cancelled_task_raises_cancelled(env: FakeEnv) -> None:
    """A task cancelled by closing its session resolves its future with Cancelled, whose
    reason says so."""
    ssn = env.conn.create_session("echo")
    future = ssn.run(b"hang")
    ssn.close()
    with pytest.raises(Cancelled, match="its session was closed") as info:
        future.result(timeout=10)
    assert (info.value.session_id, info.value.task_id) == (ssn.id, "1")


def test_run_futures_resolve_in_parallel(env: FakeEnv) -> None:
    """run() returns concurrent futures that all resolve with their outputs."""
    ssn = env.conn.create_session("echo")
    futures = [ssn.run(f"{i}".encode()) for i in range(20)]
    done, _ = concurrent.futures.wait(futures, timeout=30)
    assert len(done) == 20
    assert sorted(f.result() for f in futures) == sorted(f"echo:{i}".encode() for i in range(20))


def test_watch_task_yields_until_terminal(env: FakeEnv) -> None:
    """watch_task streams state changes and stops after the terminal one."""
    ssn = env.conn.create_session("echo")
    task = ssn.create_task(b"w")
    states = [t.state for t in ssn.watch_task(task.id, timeout=10)]
    assert states[-1] is TaskState.SUCCEED
    assert all(s is not TaskState.SUCCEED for s in states[:-1])


def test_get_and_list_tasks(env: FakeEnv) -> None:
    """get_task returns input, output and events; list_tasks returns every task."""
    ssn = env.conn.create_session("echo")
    ssn.invoke(b"a")
    ssn.invoke(b"b")
    task = ssn.get_task("2")
    assert (task.input, task.output, task.state) == (b"b", b"echo:b", TaskState.SUCCEED)
    assert task.events and task.events[0].code == 0
    assert sorted(t.id for t in ssn.list_tasks()) == ["1", "2"]
    assert ssn.get_task(1).id == "1"  # type: ignore[arg-type]
    ssn.close()
    # The connection reads tasks of closed sessions too (open_session would refuse them).
    assert env.conn.get_task(ssn.id, "1").output == b"echo:a"
    assert len(env.conn.list_tasks(ssn.id)) == 2


def test_session_lifecycle(env: FakeEnv) -> None:
    """Sessions can be opened, listed, closed (idempotently) and reject tasks once closed."""
    with env.conn.create_session("echo", session_id="echo-fixed") as ssn:
        assert env.conn.open_session("echo-fixed").id == "echo-fixed"
        assert [s.id for s in env.conn.list_sessions()] == ["echo-fixed"]
    assert env.conn.get_session("echo-fixed").state is SessionState.CLOSED
    assert env.conn.close_session("echo-fixed").state is SessionState.CLOSED
    with pytest.raises(InvalidStateError):
        ssn.create_task(b"late")
    with pytest.raises(InvalidArgumentError, match="not open"):
        env.conn.open_session("echo-fixed")


def test_open_session_with_spec_creates(env: FakeEnv) -> None:
    """open_session with a spec creates a missing session; without one it is NotFound."""
    with pytest.raises(NotFoundError):
        env.conn.open_session("echo-new")
    ssn = env.conn.open_session("echo-new", spec={"application": "echo", "common_data": b"c"})
    assert ssn.application == "echo" and ssn.common_data() == b"c"
    with pytest.raises(InvalidArgumentError, match="unknown session spec keys"):
        env.conn.open_session("echo-new", spec={"app": "echo"})


def test_duplicate_session_and_unknown_app(env: FakeEnv) -> None:
    """A taken session id is AlreadyExists; an unknown application is NotFound."""
    env.conn.create_session("echo", session_id="dup")
    with pytest.raises(AlreadyExistsError) as info:
        env.conn.create_session("echo", session_id="dup")
    assert info.value.session_id == "dup"
    with pytest.raises(NotFoundError):
        env.conn.create_session("nope")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"session_id": ""}, "non-empty"),
        ({"session_id": "a/b"}, "must not contain"),
        ({"session_id": "a..b"}, "must not contain"),
        ({"common_data": "text"}, "must be bytes"),
        ({"min_instances": -1}, "min_instances"),
        ({"min_instances": 3, "max_instances": 2}, "max_instances"),
        ({"resreq": "cpu"}, "key=value"),
    ],
)
def test_create_session_validates_arguments(
    env: FakeEnv, kwargs: dict[str, object], fragment: str
) -> None:
    """Bad arguments fail locally with InvalidArgumentError before any RPC."""
    before = len(env.fake.requests)
    with pytest.raises(InvalidArgumentError, match=fragment):
        env.conn.create_session("echo", **kwargs)  # type: ignore[arg-type]
    assert len(env.fake.requests) == before


def test_create_task_requires_bytes(env: FakeEnv) -> None:
    """Task input must be bytes or None; a str is refused with a hint to encode it."""
    ssn = env.conn.create_session("echo")
    with pytest.raises(InvalidArgumentError, match="encode"):
        ssn.create_task("text")  # type: ignore[arg-type]


def test_application_crud(env: FakeEnv) -> None:
    """Applications register, read back, update, list and unregister."""
    app = env.conn.get_application("echo")
    assert app is not None
    assert app.spec == ApplicationSpec.from_dict(ECHO)
    env.conn.update_application("echo", ApplicationSpec(command="/bin/false"))
    updated = env.conn.get_application("echo")
    assert updated is not None and updated.spec.command == "/bin/false"
    assert [a.name for a in env.conn.list_applications()] == ["echo"]
    env.conn.unregister_application("echo")
    assert env.conn.get_application("echo") is None


def test_application_result_errors_are_specific(env: FakeEnv) -> None:
    """Non-zero Result codes become AlreadyExists / InvalidState / NotFound from the text."""
    with pytest.raises(AlreadyExistsError, match="already exists"):
        env.conn.register_application("echo", ECHO)
    env.conn.create_session("echo")
    with pytest.raises(InvalidStateError, match="open sessions"):
        env.conn.unregister_application("echo")
    with pytest.raises(InvalidStateError):
        env.conn.update_application("echo", ECHO)
    with pytest.raises(NotFoundError):
        env.conn.unregister_application("ghost")
    with pytest.raises(InvalidArgumentError, match="application name"):
        env.conn.register_application("../x", ECHO)


def test_unreachable_runtime_names_the_endpoint() -> None:
    """Calls to an endpoint nobody listens on raise RuntimeUnavailableError naming it."""
    with (
        Connection("http://127.0.0.1:1", rpc_timeout=5) as conn,
        pytest.raises(RuntimeUnavailableError, match=re.escape("127.0.0.1:1")),
    ):
        conn.list_sessions()


def test_closed_connection_refuses_calls(fake_env: FakeEnv) -> None:
    """After close(), calls fail with InvalidStateError instead of hanging."""
    fake_env.conn.close()
    with pytest.raises(InvalidStateError, match="closed"):
        fake_env.conn.list_sessions()


def test_close_cancels_pending_watches(env: FakeEnv) -> None:
    """Closing the connection ends a future still waiting on a task with an error."""
    ssn = env.conn.create_session("echo")
    future = ssn.run(b"hang")
    env.conn.close()
    with pytest.raises((InvalidStateError, concurrent.futures.CancelledError)):
        future.result(timeout=10)
