"""The core client's task cancellation: on a Frontend without CancelTask (Flame's, here the fake
one), and against the real runtime's answers for tasks that cannot be cancelled."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from fake_frontend import FakeEnv

from flame_agents._wire.failures import failure_message
from flame_agents.errors import (
    Cancelled,
    InvalidArgumentError,
    InvalidStateError,
    InvocationTimeoutError,
    NotFoundError,
)
from flame_agents.testing import LocalRuntime
from flame_agents.types import TaskState

ECHO = {"command": "/bin/true", "arguments": ["x"]}
BEHAVE = Path(__file__).resolve().parents[1] / "runtime" / "services" / "behave.py"


@pytest.fixture
def env(fake_env: FakeEnv) -> FakeEnv:
    """The fake Frontend with an 'echo' application registered."""
    fake_env.conn.register_application("echo", ECHO)
    return fake_env


def test_cancel_on_flame_names_the_limitation(env: FakeEnv) -> None:
    """A Frontend without CancelTask (UNIMPLEMENTED) makes cancel raise InvalidStateError that
    says task cancellation needs our runtime; the connection remembers it."""
    ssn = env.conn.create_session("echo")
    for _ in range(2):
        with pytest.raises(InvalidStateError, match="cannot cancel a task") as info:
            ssn.cancel()
        assert info.value.grpc_code == "UNIMPLEMENTED"
        assert info.value.session_id == ssn.id
    assert env.conn.cancel_supported is False


def test_cancel_on_timeout_on_flame_raises_the_limitation(env: FakeEnv) -> None:
    """cancel_on_timeout on Flame: the timeout's cancel fails with the clear error, chained to
    the timeout."""
    ssn = env.conn.create_session("echo")
    with pytest.raises(InvalidStateError, match="cannot cancel a task") as info:
        ssn.invoke(b"hang", timeout=0.3, cancel_on_timeout=True)
    assert isinstance(info.value.__cause__, InvocationTimeoutError)


def test_a_failed_task_reporting_cancelled_raises_cancelled(env: FakeEnv) -> None:
    """On Flame a cancelled task ends Failed with an error document naming Cancelled: invoke
    and run raise Cancelled with the task's ids and the service's reason."""
    text = failure_message("Cancelled", "the entrypoint was cancelled", fields={"task_id": "1"})
    ssn = env.conn.create_session("echo")
    with pytest.raises(Cancelled, match="was cancelled: the entrypoint was cancelled") as info:
        ssn.invoke(b"fail:" + text.encode())
    assert (info.value.session_id, info.value.task_id) == (ssn.id, "1")
    assert info.value.reason == "the entrypoint was cancelled"
    with pytest.raises(Cancelled):
        ssn.run(b"fail:" + text.encode()).result(timeout=10)


def test_cancel_checks_its_arguments(env: FakeEnv) -> None:
    """A bad session or task id fails before any call."""
    with pytest.raises(InvalidArgumentError):
        env.conn.cancel_task("", "1")
    with pytest.raises(InvalidArgumentError):
        env.conn.cancel_task("s", "")


@pytest.mark.e2e
def test_cancel_of_unknown_or_ended_tasks(runtime: LocalRuntime) -> None:
    """The runtime answers NOT_FOUND for an unknown session or task, and a task that ended is
    answered as it is (a no-op)."""
    with runtime.connect() as conn:
        with pytest.raises(NotFoundError):
            conn.cancel_task("no-such-session")
        ssn = conn.create_session("flmping")
        try:
            with pytest.raises(NotFoundError):
                ssn.cancel("7")
            ssn.invoke(None)
            (task,) = ssn.cancel("1")
            assert task.state == TaskState.SUCCEED
            assert ssn.cancel() == []
            assert conn.cancel_supported is True
        finally:
            ssn.close()


class _InterruptedFirstRead:
    """A RunTask stream whose first read is interrupted, as by Ctrl-C before it returned."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._interrupted = False

    def __iter__(self) -> _InterruptedFirstRead:
        return self

    def __next__(self) -> Any:
        if not self._interrupted:
            self._interrupted = True
            raise KeyboardInterrupt
        return next(self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@pytest.mark.e2e
def test_ctrl_c_before_the_first_message_still_cancels_the_task(runtime: LocalRuntime) -> None:
    """Ctrl-C while invoke waits for RunTask's first message: the client learns the created
    task's id from the call's headers and asks for its cancel before re-raising."""
    with runtime.connect() as conn:
        conn.register_application(
            "cx-behave", {"command": sys.executable, "arguments": [str(BEHAVE)]}
        )
        ssn = conn.create_session("cx-behave")
        try:
            run_task = conn.run_task
            conn.run_task = lambda *args, **kwargs: _InterruptedFirstRead(run_task(*args, **kwargs))
            with pytest.raises(KeyboardInterrupt):
                ssn.invoke(b"sleep:120")
            conn.run_task = run_task
            (task,) = ssn.list_tasks()
            done = list(ssn.watch_task(task.id, timeout=60))[-1]
            assert done.state == TaskState.CANCELLED
        finally:
            ssn.close()
