"""The seed guide's flows, end to end: real runtime, real service processes, real cache.

Every snippet of the flamepy service guide runs with ``flame_agents.service`` in place of
``flamepy.service`` (examples/agents/echo holds the guide's code), and our service layer
interoperates with the published flamepy 0.6.0 in both directions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from flame_agents import cache, core
from flame_agents.errors import (
    FlameAgentsError,
    InvalidStateError,
    NotFoundError,
    TaskFailedError,
)
from flame_agents.service import Session
from flame_agents.types import ResourceRequirement

pytestmark = pytest.mark.e2e

ECHO = Path(__file__).resolve().parents[2] / "examples" / "agents" / "echo"
PROC_TIMEOUT = 90

PROBE_SERVICE = """
import os

from flame_agents import service

ins = service.FlameInstance()


@ins.entrypoint
async def probe(req):
    op = req["op"]
    if op == "raise":
        raise ValueError(f"probe failed: {req['why']}")
    if op == "ctx":
        return ins.context()
    if op == "set":
        ins.update_context(req["value"])
        return ins.context()
    if op == "pid":
        return os.getpid()
    if op == "none":
        return None
    return req


if __name__ == "__main__":
    ins.run()
"""

AGENT_SERVICE = """
from flame_agents import service

ins = service.FlameInstance()


@ins.entrypoint
def answer(question: str) -> str:
    state = ins.context() or {"messages": []}
    state["messages"].append("handled one task")
    ins.update_context(state)
    return f"answered: {question}"


if __name__ == "__main__":
    ins.run()
"""

FLAMEPY_ECHO_SERVICE = (
    (ECHO / "echo_service.py")
    .read_text()
    .replace("from flame_agents import service", "from flamepy import service")
)

FLAMEPY_CLIENT = """
import sys

sys.path.insert(0, sys.argv[1])
from echo_service import EchoRequest
from flamepy.service import Session

with Session("echo-app", ctx=["seed"]) as session:
    first = session.invoke(EchoRequest("x"))
    second = session.invoke(EchoRequest("y"))
    print(first.text, first.count, second.count, session.context())
"""

BAD_SERVICE = """
from flame_agents import service

ins = service.FlameInstance()


@ins.entrypoint
def handle(req, extra):
    return req
"""


def _app(script: Path, workdir: Path) -> dict[str, Any]:
    return {
        "command": sys.executable,
        "arguments": [str(script)],
        "working_directory": str(workdir),
        "environments": {"PYTHONUNBUFFERED": "1"},
        # Instances of finished sessions go away soon instead of idling for a minute.
        "delay_release": 3,
    }


@pytest.fixture(scope="module")
def apps(runtime: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Registers echo-app (the example), agent-app, probe-app and flamepy-echo (services written
    to a temp dir, which is yielded)."""
    scripts = tmp_path_factory.mktemp("services")
    (scripts / "probe_service.py").write_text(PROBE_SERVICE)
    (scripts / "agent_service.py").write_text(AGENT_SERVICE)
    (scripts / "flamepy_echo_service.py").write_text(FLAMEPY_ECHO_SERVICE)
    (scripts / "flamepy_client.py").write_text(FLAMEPY_CLIENT)
    (scripts / "bad_service.py").write_text(BAD_SERVICE)
    core.register_application("echo-app", _app(ECHO / "echo_service.py", ECHO))
    core.register_application("probe-app", _app(scripts / "probe_service.py", scripts))
    core.register_application("agent-app", _app(scripts / "agent_service.py", scripts))
    core.register_application("flamepy-echo", _app(scripts / "flamepy_echo_service.py", scripts))
    # The test process unpickles the example's reply classes by module name, as client.py does.
    sys.path.insert(0, str(ECHO))
    try:
        yield scripts
    finally:
        sys.path.remove(str(ECHO))


def _env(runtime: Any) -> dict[str, str]:
    return {**os.environ, **runtime.env(), "PYTHONUNBUFFERED": "1"}


def _run(args: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=PROC_TIMEOUT
    )
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _echo_request(text: str) -> Any:
    from echo_service import EchoRequest  # type: ignore[import-not-found]

    return EchoRequest(text)


def test_seed_client_prints_hello_count_and_session_id(runtime: Any, apps: Path) -> None:
    """The guide's client.py prints HELLO, 1 and an id of the form echo-app-<6 alnum>."""
    out = _run([sys.executable, "client.py"], cwd=ECHO, env=_env(runtime)).splitlines()
    assert out[:2] == ["HELLO", "1"]
    assert len(out) == 3 and out[2].startswith("echo-app-")
    suffix = out[2].removeprefix("echo-app-")
    assert len(suffix) == 6 and suffix.isalnum()


def test_two_invokes_count_one_then_two(apps: Path) -> None:
    """The context updated by the service is visible to the next invoke and to context()."""
    with Session("echo-app", ctx=[]) as session:
        assert session.invoke(_echo_request("a")).count == 1
        reply = session.invoke(_echo_request("b"))
        assert (reply.text, reply.count) == ("B", 2)
        assert session.context() == ["a", "b"]


def test_open_existing_session_reads_context(runtime: Any, apps: Path) -> None:
    """Session(session_id=...) reopens a session and reads the shared context (seed snippet)."""
    with Session("echo-app", ctx=["start"]) as session:
        session.invoke(_echo_request("x"))
        reopened = Session(session_id=session.id())
        assert reopened.id() == session.id()
        assert reopened.context() == ["start", "x"]
        assert reopened.invoke(_echo_request("y")).count == 3


def test_seed_open_session_snippet_runs_verbatim(runtime: Any, apps: Path) -> None:
    """open_session.py (the guide's snippet, fixed id echo-app-a1b2c3) prints the context."""
    ref = cache.put_object("echo-app/echo-app-a1b2c3", cloudpickle.dumps(["from", "guide"]))
    core.create_session("echo-app", session_id="echo-app-a1b2c3", common_data=ref.encode())
    out = _run([sys.executable, "open_session.py"], cwd=ECHO, env=_env(runtime))
    assert out.strip() == "['from', 'guide']"
    assert core.get_session("echo-app-a1b2c3").state == core.SessionState.CLOSED


def test_seed_session_context_snippet(apps: Path) -> None:
    """The guide's "Session Context" snippets: the service's state update reaches the client."""
    with Session("agent-app", ctx={"messages": []}) as session:
        answer = session.invoke("what changed?")
        assert answer == "answered: what changed?"
        assert session.context() == {"messages": ["handled one task"]}


def test_seed_resreq_snippet(apps: Path) -> None:
    """The guide's resreq snippet (cpu=2, memory 4g) runs and the session carries it."""
    with Session(
        "agent-app",
        resreq={"cpu": 2, "memory": "4g", "gpu": 0},
    ) as session:
        assert session.invoke("ping") == "answered: ping"
        info = core.get_session(session.id())
        assert info.resreq == ResourceRequirement(cpu=2, memory=4 * 1024**3, gpu=0)


@pytest.mark.parametrize(
    "resreq",
    [
        {"cpu": 1, "memory": "256m", "gpu": 0},
        "cpu=1,mem=256m",
        ResourceRequirement(cpu=1, memory=256 * 1024**2),
    ],
    ids=["dict", "string", "object"],
)
def test_resreq_forms_reach_the_session(apps: Path, resreq: Any) -> None:
    """resreq as a dict, a string or a ResourceRequirement is sent with the session."""
    with Session("echo-app", resreq=resreq) as session:
        assert session.invoke(_echo_request("ping")).text == "PING"
        info = core.get_session(session.id())
        assert info.resreq == ResourceRequirement(cpu=1, memory=256 * 1024**2, gpu=0)


def test_flamepy_resource_requirement_is_accepted(apps: Path) -> None:
    """flamepy.ResourceRequirement.from_string(...) works as the guide says."""
    import flamepy

    with Session("echo-app", resreq=flamepy.ResourceRequirement.from_string("cpu=1,mem=128m")) as s:
        assert core.get_session(s.id()).resreq == ResourceRequirement(cpu=1, memory=128 * 1024**2)


def test_context_round_trips_arbitrary_objects(apps: Path) -> None:
    """A ctx of nested Python objects reaches the service and comes back from context()."""
    ctx = {"messages": [{"role": "user", "text": "hi"}], "seen": {1, 2}, "blob": b"\x00\xff"}
    with Session("probe-app", ctx=ctx) as session:
        assert session.context() == ctx
        assert session.invoke({"op": "ctx"}) == ctx


def test_update_context_reaches_next_invoke_and_client(apps: Path) -> None:
    """update_context in the service is seen by the next task and by Session.context()."""
    with Session("probe-app", ctx={"messages": []}) as session:
        session.invoke({"op": "set", "value": {"messages": ["handled one task"]}})
        assert session.invoke({"op": "ctx"}) == {"messages": ["handled one task"]}
        assert session.context() == {"messages": ["handled one task"]}


def test_update_context_without_initial_ctx_is_kept_by_the_service(apps: Path) -> None:
    """Without ctx, the service's first update_context creates the context for later tasks."""
    with Session("probe-app") as session:
        assert session.invoke({"op": "ctx"}) is None
        assert session.invoke({"op": "set", "value": [1]}) == [1]
        assert session.invoke({"op": "ctx"}) == [1]
        # The session's common_data was fixed at creation, so the client has no reference.
        assert session.context() is None


def test_none_reply_and_async_entrypoint(apps: Path) -> None:
    """An async entrypoint's None reply comes back as None; other replies as sent."""
    with Session("probe-app") as session:
        assert session.invoke({"op": "none"}) is None
        assert session.invoke({"op": "echo", "n": 1}) == {"op": "echo", "n": 1}


def test_raising_entrypoint_fails_task_and_session_keeps_working(apps: Path) -> None:
    """A raising entrypoint gives TaskFailedError with its text; the next task still runs."""
    with Session("probe-app") as session:
        pid = session.invoke({"op": "pid"})
        with pytest.raises(TaskFailedError, match="probe failed: no reason"):
            session.invoke({"op": "raise", "why": "no reason"})
        assert session.invoke({"op": "pid"}) == pid  # same instance, still serving


def test_closed_session_rejects_use(apps: Path) -> None:
    """After close(), invoke and context raise InvalidStateError; close() is idempotent."""
    session = Session("echo-app", ctx=[])
    session.close()
    session.close()
    with pytest.raises(InvalidStateError, match="closed"):
        session.invoke(_echo_request("late"))
    with pytest.raises(InvalidStateError, match="closed"):
        session.context()
    with pytest.raises(FlameAgentsError):
        Session(session_id=session.id()).invoke(_echo_request("late"))


def test_unknown_session_id_is_not_found(apps: Path) -> None:
    """Opening a session id that does not exist raises NotFoundError naming it."""
    with pytest.raises(NotFoundError, match="echo-app-nope00"):
        Session(session_id="echo-app-nope00")


def test_unknown_application_is_not_found(apps: Path) -> None:
    """Creating a session of an unregistered application says to register it first."""
    with pytest.raises(NotFoundError, match="'no-such-app' is not registered"):
        Session("no-such-app", ctx={"x": 1})


def test_name_and_session_id_are_exclusive() -> None:
    """Passing both or neither of name and session_id raises ValueError saying which to pass."""
    with pytest.raises(ValueError, match="not both"):
        Session("echo-app", session_id="echo-app-a1b2c3")
    with pytest.raises(ValueError, match="session_id="):
        Session()


def test_two_parameter_entrypoint_fails_at_import(runtime: Any, apps: Path) -> None:
    """A service whose entrypoint takes two parameters dies at decoration with a TypeError."""
    proc = subprocess.run(
        [sys.executable, "bad_service.py"],
        cwd=apps,
        env=_env(runtime),
        capture_output=True,
        text=True,
        timeout=PROC_TIMEOUT,
    )
    assert proc.returncode != 0
    assert "TypeError: entrypoint handle(req, extra) takes 2 parameters" in proc.stderr


def test_our_session_against_flamepy_instance(apps: Path) -> None:
    """Our Session drives a flamepy FlameInstance service: replies, counts and context agree."""
    sys.path.insert(0, str(apps))
    try:
        from flamepy_echo_service import EchoRequest  # type: ignore[import-not-found]

        with Session("flamepy-echo", ctx=["seed"]) as session:
            assert session.invoke(EchoRequest("a")).count == 2
            reply = session.invoke(EchoRequest("b"))
            assert (reply.text, reply.count) == ("B", 3)
            assert session.context() == ["seed", "a", "b"]
    finally:
        sys.path.remove(str(apps))


def test_flamepy_session_against_our_instance(runtime: Any, apps: Path) -> None:
    """flamepy's Session (own process) drives our FlameInstance echo service."""
    out = _run(
        [sys.executable, str(apps / "flamepy_client.py"), str(ECHO)], cwd=apps, env=_env(runtime)
    )
    assert out.strip() == "X 2 3 ['seed', 'x', 'y']"
