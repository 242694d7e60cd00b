"""LocalRuntime.connect(): clients bound to one runtime by a connection, without the environment."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ECHO = ROOT / "examples" / "agents" / "echo"
AGENTS = ROOT / "tests" / "agent"
sys.path.insert(0, str(ECHO))
sys.path.insert(0, str(AGENTS))

from agentdefs import Add, CounterAgent, CounterContext, Total  # type: ignore[import-not-found]  # noqa: E402
from echo_service import EchoRequest  # type: ignore[import-not-found]  # noqa: E402

from flame_agents import core  # noqa: E402
from flame_agents.agent import AgentSession  # noqa: E402
from flame_agents.cache import ObjectRef  # noqa: E402
from flame_agents.service import Session  # noqa: E402
from flame_agents.testing import LocalRuntime  # noqa: E402

pytestmark = pytest.mark.e2e

_CLIENT_ENV = ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT", "FLAME_AGENTS_TOKEN")


@pytest.fixture
def no_client_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No variable points clients anywhere, and no default connection exists before or after."""
    for key in _CLIENT_ENV:
        monkeypatch.delenv(key, raising=False)
    core.reset_default_connection()
    yield
    core.reset_default_connection()


def _app(script: Path, *args: str) -> dict[str, object]:
    return {
        "command": sys.executable,
        "arguments": [str(script), *args],
        "working_directory": str(script.parent),
        "delay_release": 3,
    }


def test_two_runtimes_serve_sessions_bound_by_connection(no_client_env: None) -> None:
    """With two runtimes alive and no environment set, a service Session and an AgentSession
    each run on the runtime whose connection they were given, context and state included."""
    with (
        LocalRuntime(set_env=False) as rt1,
        LocalRuntime(set_env=False) as rt2,
        rt1.connect() as c1,
        rt2.connect() as c2,
    ):
        assert not any(key in os.environ for key in _CLIENT_ENV)
        # Each application exists on one runtime only: a session sent elsewhere would fail.
        c1.register_application("echo-app", _app(ECHO / "echo_service.py"))
        c2.register_application(
            "counter", _app(AGENTS / "services" / "agent_service.py", "CounterAgent")
        )

        with Session("echo-app", ctx=["seed"], connection=c1) as plain:
            assert plain.invoke(EchoRequest("hi")).count == 2
            assert plain.context() == ["seed", "hi"]
            common = c1.get_session(plain.id()).common_data
            assert common is not None
            assert ObjectRef.decode(common).endpoint == rt1.cache_endpoint
            reopened = Session(session_id=plain.id(), connection=c1)
            assert reopened.context() == ["seed", "hi"]

            with AgentSession(
                "counter", ctx=CounterContext(), agent=CounterAgent, connection=c2
            ) as agent:
                assert agent.invoke(Add(n=2)).count == 2
                assert isinstance(agent.invoke(Add(n=3)), Total)
                assert agent.context().count == 5
                assert agent.ref.endpoint == rt2.cache_endpoint
                again = AgentSession(
                    session_id=agent.id(), context_type=CounterContext, connection=c2
                )
                assert again.context().count == 5

                ids1 = {s.id for s in c1.list_sessions()}
                ids2 = {s.id for s in c2.list_sessions()}
                assert plain.id() in ids1 and plain.id() not in ids2
                assert agent.id() in ids2 and agent.id() not in ids1
        assert not any(key in os.environ for key in _CLIENT_ENV)


def test_connections_are_closed_with_the_runtime_and_carry_its_token(
    no_client_env: None,
) -> None:
    """A connection from a token-protected LocalRuntime(set_env=False) sends the token without
    the environment, survives restart(), and is closed when the runtime is."""
    with LocalRuntime(set_env=False, token="conn-token") as rt:
        conn = rt.connect()
        assert "FLAME_AGENTS_TOKEN" not in os.environ
        with conn.create_session("flmping") as session:
            assert session.invoke(b"x") == b"x"
        rt.restart()
        with conn.create_session("flmping") as session:
            assert session.invoke(b"y") == b"y"
    assert conn.closed
