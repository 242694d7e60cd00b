"""Message size limits on every hop (real runtime, real service processes).

Two runtimes: one with the default 64 MiB limit (messages past gRPC's 4 MiB default work end to
end), and one started with ``--max-message-bytes`` 1 MiB, so that going over it is cheap. Each
handler run appends a line to a count file, so a test sees from outside whether the handler was
run again; the instance's pid shows whether it was killed.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from flame_agents import core
from flame_agents.agent import AgentSession, RetryPolicy
from flame_agents.errors import LimitExceededError
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

SERVICES = Path(__file__).resolve().parent / "services"
MIB = 1024 * 1024
LIMIT = MIB
"""The small runtime's --max-message-bytes."""
OURS, FLAMEPY, AGENT = "limits-ours", "limits-flamepy", "limits-agent"


def _register(conn: core.Connection, name: str, script: str) -> None:
    conn.register_application(
        name, {"command": sys.executable, "arguments": [str(SERVICES / script)]}
    )


def _apps(conn: core.Connection) -> None:
    _register(conn, OURS, "sized.py")
    _register(conn, FLAMEPY, "flamepy_sized.py")


@pytest.fixture(scope="module")
def runtime() -> Iterator[LocalRuntime]:
    """The small runtime (1 MiB limit); the environment points clients at it."""
    with LocalRuntime(extra_args=["--max-message-bytes", str(LIMIT)]) as rt:
        with core.connect(rt.endpoint) as conn:
            _apps(conn)
            _register(conn, AGENT, "big_agent.py")
        yield rt


@pytest.fixture(scope="module")
def default_runtime() -> Iterator[LocalRuntime]:
    """A runtime with the default limit (64 MiB), beside the small one."""
    with LocalRuntime(set_env=False) as rt:
        with core.connect(rt.endpoint) as conn:
            _apps(conn)
        yield rt


@pytest.fixture
def conn(runtime: LocalRuntime) -> Iterator[core.Connection]:
    """A connection to the small runtime."""
    with core.connect(runtime.endpoint) as connection:
        yield connection


@pytest.fixture
def default_conn(default_runtime: LocalRuntime) -> Iterator[core.Connection]:
    """A connection to the default runtime."""
    with core.connect(default_runtime.endpoint) as connection:
        yield connection


def _runs(count_file: Path) -> int:
    return len(count_file.read_text().splitlines()) if count_file.exists() else 0


def _pid(session: core.Session) -> bytes | None:
    return session.invoke(b"pid", timeout=60)


@pytest.mark.parametrize("app", [OURS, FLAMEPY])
def test_five_mib_reply_works_and_runs_once(
    app: str, default_conn: core.Connection, tmp_path: Path
) -> None:
    """Under the default limit a 5 MiB reply reaches the client and the handler runs once."""
    count = tmp_path / "runs"
    with default_conn.create_session(app) as session:
        reply = session.invoke(f"reply {5 * MIB} {count}".encode(), timeout=120)
        assert reply is not None and len(reply) == 5 * MIB
    assert _runs(count) == 1


def test_five_mib_request_and_reply_work(default_conn: core.Connection, tmp_path: Path) -> None:
    """Under the default limit a 5 MiB request reaches our service and comes back whole."""
    count = tmp_path / "runs"
    payload = bytes(range(256)) * (5 * MIB // 256)
    with default_conn.create_session(OURS) as session:
        assert session.invoke(f"echo {count}\n".encode() + payload, timeout=120) == payload
    assert _runs(count) == 1


def test_request_over_a_flamepy_service_limit_fails_once(
    default_conn: core.Connection, tmp_path: Path
) -> None:
    """A 5 MiB request that flamepy's 4 MiB server refuses fails its task with
    LimitExceededError; the instance keeps serving and the task is not dispatched again."""
    count = tmp_path / "runs"
    with default_conn.create_session(FLAMEPY) as session:
        pid = _pid(session)
        with pytest.raises(LimitExceededError, match="the service refused task"):
            session.invoke(f"echo {count}\n".encode() + b"q" * (5 * MIB), timeout=120)
        assert _pid(session) == pid
        assert [t.state.name for t in session.list_tasks()] == ["SUCCEED", "FAILED", "SUCCEED"]
    assert _runs(count) == 0


@pytest.mark.parametrize("fast_path", [True, False], ids=["run-task", "watch-task"])
@pytest.mark.parametrize("size", [LIMIT + 1, 2 * LIMIT], ids=["limit+1", "2x-limit"])
@pytest.mark.parametrize("app", [OURS, FLAMEPY])
def test_reply_over_the_limit_fails_once_and_keeps_the_instance(
    app: str, size: int, fast_path: bool, conn: core.Connection, tmp_path: Path
) -> None:
    """A reply over --max-message-bytes gives LimitExceededError naming the option; the handler
    ran once, the instance (same pid) serves the next invoke of the session."""
    if not fast_path:
        conn.fast_path = False  # CreateTask + WatchTask, as a Flame cluster has it
    count = tmp_path / "runs"
    with conn.create_session(app) as session:
        pid = _pid(session)
        with pytest.raises(LimitExceededError, match="--max-message-bytes") as info:
            session.invoke(f"reply {size} {count}".encode(), timeout=120)
        reported = re.search(r"the reply of task \d+ is (\d+) bytes", info.value.message)
        assert reported is not None and int(reported.group(1)) >= size  # the whole reply
        assert info.value.fields["task_id"] and info.value.fields["session_id"] == session.id
        assert _runs(count) == 1
        assert _pid(session) == pid
        assert session.invoke(f"reply 10 {count}".encode(), timeout=60) == b"r" * 10
    assert _runs(count) == 2


def test_request_over_the_limit_is_refused_at_create_task(conn: core.Connection) -> None:
    """A request over --max-message-bytes gives LimitExceededError naming the option, and no
    task is created."""
    with conn.create_session(OURS) as session:
        with pytest.raises(LimitExceededError, match="--max-message-bytes"):
            session.invoke(b"x" * (LIMIT + 1), timeout=60)
        conn.fast_path = False
        with pytest.raises(LimitExceededError, match="--max-message-bytes"):
            session.invoke(b"x" * (LIMIT + 1), timeout=60)
        assert session.list_tasks() == []


def _big_agent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("big_agent", SERVICES / "big_agent.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_agent_reply_over_the_limit_is_not_retried(runtime: LocalRuntime, tmp_path: Path) -> None:
    """An agent reply over the limit raises LimitExceededError at once: no retry, one run."""
    big = _big_agent()
    count = tmp_path / "runs"
    retry = RetryPolicy(max_attempts=5)
    with AgentSession(AGENT, ctx=big.BigContext(), reply_type=big.Blob, retry=retry) as session:
        reply = session.invoke(big.Make(size=10, count_file=str(count)))
        assert reply == big.Blob(data="x" * 10)
        with pytest.raises(LimitExceededError, match="--max-message-bytes"):
            session.invoke(big.Make(size=LIMIT + 1, count_file=str(count)))
        assert _runs(count) == 2
