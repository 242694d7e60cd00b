"""Cancelling FlameInstance tasks through ``service.Session``, with real processes.

An async entrypoint gets ``asyncio.CancelledError`` (the service writes a file in its
``except``); a sync one runs on until it checks ``ins.cancelled()`` or touches its context, and
its result is discarded; one that never stops loses its instance after the grace period. In
every case the task ends CANCELLED, the caller's ``invoke`` raises ``Cancelled``, the context is
unchanged, and the session serves the next invoke.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flame_agents.core import Connection, TaskState
from flame_agents.errors import Cancelled, InvocationTimeoutError
from flame_agents.service import Session
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

SERVICE = Path(__file__).resolve().parent / "services" / "stoppable.py"
WAIT = 60.0

CLIENT = """
import sys

from flame_agents.service import Session

session = Session(sys.argv[1], ctx=0)
print(session.id(), flush=True)
session.invoke({"op": "wait", "dir": sys.argv[2]})  # no with-block: a bare invoke
"""


def _register(conn: Connection, name: str, flavour: str) -> None:
    conn.register_application(
        name, {"command": sys.executable, "arguments": [str(SERVICE), flavour]}
    )


@pytest.fixture(scope="module")
def conn(runtime: LocalRuntime) -> Iterator[Connection]:
    """A connection to the module's runtime with the async and sync services registered."""
    with runtime.connect() as connection:
        _register(connection, "cx-async", "async")
        _register(connection, "cx-sync", "sync")
        yield connection


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def _wait_for(path: Path, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        assert alive(), f"gave up waiting for {path}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def _pid(folder: Path) -> int:
    _wait_for(folder / "pid")
    return int((folder / "pid").read_text())


def _raises_cancelled(future: Future[Any]) -> Cancelled:
    with pytest.raises(Cancelled) as info:
        future.result(WAIT)
    return info.value


def _states(conn: Connection, session: Session) -> list[TaskState]:
    return [t.state for t in conn.list_tasks(session.id())]


def test_async_entrypoint_cancelled_from_another_thread(
    conn: Connection, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    """cancel() from another thread while invoke waits: the entrypoint gets CancelledError, the
    invoke raises Cancelled (ids and reason), the context is unchanged, and the same instance
    serves the next invoke."""
    with Session("cx-async", ctx=0, connection=conn) as session:
        running = pool.submit(session.invoke, {"op": "wait", "dir": str(tmp_path)})
        pid = _pid(tmp_path)
        session.cancel()
        error = _raises_cancelled(running)
        assert (error.session_id, error.task_id) == (session.id(), "1")
        assert "the entrypoint was cancelled" in str(error)
        assert (tmp_path / "cancelled").exists()
        assert _states(conn, session) == [TaskState.CANCELLED]
        assert session.context() == 0
        assert session.invoke({"op": "pid"}) == pid
        assert session.invoke({"op": "count"}) == 1


def test_cancel_from_another_process_by_session_id(
    runtime: LocalRuntime, conn: Connection, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    """Another process opens the session by id and cancels its task in flight."""
    with Session("cx-async", ctx=0, connection=conn) as session:
        running = pool.submit(session.invoke, {"op": "wait", "dir": str(tmp_path)})
        _pid(tmp_path)
        code = "import sys; from flame_agents.service import Session\n"
        code += "Session(session_id=sys.argv[1]).cancel()"
        subprocess.run(
            [sys.executable, "-c", code, session.id()],
            env={**os.environ, **runtime.env()},
            check=True,
            timeout=WAIT,
        )
        _raises_cancelled(running)
        assert (tmp_path / "cancelled").exists()
        assert session.invoke({"op": "count"}) == 1


def test_timeout_with_and_without_cancel_on_timeout(conn: Connection, tmp_path: Path) -> None:
    """A timeout alone leaves the task running (InvocationTimeoutError); with cancel_on_timeout
    the task is cancelled and the invoke raises Cancelled."""
    with Session("cx-async", ctx=0, connection=conn) as session:
        first, second = tmp_path / "1", tmp_path / "2"
        first.mkdir()
        second.mkdir()
        with pytest.raises(InvocationTimeoutError):
            session.invoke({"op": "wait", "dir": str(first)}, timeout=0.5)
        assert _states(conn, session) == [TaskState.RUNNING]
        session.cancel("1")
        with pytest.raises(Cancelled):
            session.invoke({"op": "wait", "dir": str(second)}, timeout=1, cancel_on_timeout=True)
        assert (second / "cancelled").exists()
        assert _states(conn, session) == [TaskState.CANCELLED, TaskState.CANCELLED]
        assert session.context() == 0


def test_ctrl_c_during_a_bare_invoke_cancels_the_task(
    runtime: LocalRuntime, conn: Connection, tmp_path: Path
) -> None:
    """SIGINT to a client waiting in invoke (no with-block): the client exits with
    KeyboardInterrupt, and the runtime cancels its task (the entrypoint sees CancelledError)."""
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, "cx-async", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **runtime.env(), "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert client.stdout is not None
        session_id = client.stdout.readline().strip()
        _wait_for(tmp_path / "pid", alive=lambda: client.poll() is None)
        client.send_signal(signal.SIGINT)
        _, err = client.communicate(timeout=WAIT)
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
    assert client.returncode == -signal.SIGINT, err
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    try:
        (task,) = conn.list_tasks(session_id)
        done = list(conn.open_session(session_id).watch_task(task.id, timeout=WAIT))[-1]
        assert done.state == TaskState.CANCELLED, err
        assert (tmp_path / "cancelled").exists()
    finally:
        conn.close_session(session_id, cancel_running=True)


@pytest.mark.parametrize("update", [False, True], ids=["returns", "updates-context"])
def test_sync_entrypoint_runs_on_and_its_result_is_discarded(
    conn: Connection, pool: ThreadPoolExecutor, tmp_path: Path, update: bool
) -> None:
    """A sync entrypoint is not interrupted: it sees ins.cancelled(), and whatever it does next
    (return a result, or update the context, which raises) the task ends Cancelled and the
    context is unchanged."""
    with Session("cx-sync", ctx=0, connection=conn) as session:
        req = {"op": "wait", "dir": str(tmp_path), "update": update}
        running = pool.submit(session.invoke, req)
        pid = _pid(tmp_path)
        cancelling = pool.submit(session.cancel)
        _wait_for(tmp_path / "seen")
        assert not running.done()  # it runs on
        (tmp_path / "release").touch()
        _raises_cancelled(running)
        cancelling.result(WAIT)
        assert _states(conn, session) == [TaskState.CANCELLED]
        assert session.context() == 0
        assert session.invoke({"op": "pid"}) == pid


def test_sync_entrypoint_past_the_grace_period_loses_its_instance(tmp_path: Path) -> None:
    """A sync entrypoint that never returns: after the grace period (1 s here) its instance is
    stopped, the task ends Cancelled, and a new instance serves the next invoke."""
    with (
        LocalRuntime(extra_args=["--cancel-grace", "1"]) as rt,
        rt.connect() as conn,
    ):
        _register(conn, "cx-sync", "sync")
        with Session("cx-sync", connection=conn) as session, ThreadPoolExecutor(1) as pool:
            running = pool.submit(session.invoke, {"op": "hang", "dir": str(tmp_path)})
            pid = _pid(tmp_path)
            thread = threading.Thread(target=session.cancel)
            thread.start()
            error = _raises_cancelled(running)
            thread.join(WAIT)
            assert "did not stop it within 1s" in str(error)
            assert session.invoke({"op": "pid"}) != pid
