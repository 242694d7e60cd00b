"""A restart never cuts a session off from its state, even when the old ports are taken.

Driven as a user does it: ``flame-agents up --detach`` / ``down`` (or ``kill -9``) with default
options, clients that configure nothing but the home, and a second client process that reopens
the sessions by id. The old ports are held by another program, so the runtime must move.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flame_agents import embedded
from flame_agents.config import RuntimeInfo, read_runtime_info, runtime_serves_home

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "agents"
PROC_TIMEOUT = 120

CLIENT = textwrap.dedent(
    """
    import json
    import sys

    sys.path[:0] = [sys.argv[2], sys.argv[3]]
    from chat_agent import Ask, ChatAgent, ChatContext
    from echo_service import EchoRequest

    from flame_agents import AgentSession, cache, core
    from flame_agents.cache import ObjectRef
    from flame_agents.service import Session

    phase = sys.argv[1]
    if phase == "first":
        core.register_application(
            "echo-app",
            {"command": sys.executable, "arguments": ["echo_service.py"],
             "working_directory": sys.argv[3]},
        )
        core.register_application(
            "chat-agent",
            {"command": sys.executable, "arguments": ["chat_service.py"],
             "working_directory": sys.argv[2], "max_instances": 1,
             "labels": ["flame-agents.agent=chat_agent:ChatAgent"]},
        )
        echo = Session("echo-app", ctx=[])
        agent = AgentSession("chat-agent", ctx=ChatContext(system_prompt="p"), agent=ChatAgent)
        ref = cache.put_object(f"echo-app/{echo.id()}", ["kept"])
        print(json.dumps({
            "echo": echo.id(),
            "count": echo.invoke(EchoRequest("a")).count,
            "agent": agent.id(),
            "turns": agent.invoke(Ask(text="hi")).turns,
            "ref": ref.encode().hex(),
        }))
    else:
        ids = json.loads(sys.argv[4])
        echo = Session(session_id=ids["echo"])
        agent = AgentSession(session_id=ids["agent"], agent=ChatAgent)
        count = echo.invoke(EchoRequest("b")).count
        turns = agent.invoke(Ask(text="again")).turns
        print(json.dumps({
            "count": count,
            "context": echo.context(),
            "turns": turns,
            "messages": len(agent.context().messages),
            "object": cache.get_object(ObjectRef.decode(bytes.fromhex(ids["ref"]))),
        }))
    """
)


@pytest.fixture
def home() -> Iterator[Path]:
    """A runtime home of its own; whatever runtime serves it is stopped at the end."""
    path = Path(tempfile.mkdtemp(prefix="flame-agents-moves-")).resolve()
    try:
        yield path
    finally:
        embedded.stop_runtime(path, kill=True)
        shutil.rmtree(path, ignore_errors=True)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    env["FLAME_AGENTS_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _cli(home: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "flame_agents.cli", *args, "--home", str(home)],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=PROC_TIMEOUT,
    )
    assert proc.returncode == 0, f"flame-agents {args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _client(home: Path, tmp_path: Path, *args: str) -> dict[str, object]:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            args[0],
            str(EXAMPLES / "chat"),
            str(EXAMPLES / "echo"),
            *args[1:],
        ],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=PROC_TIMEOUT,
    )
    assert proc.returncode == 0, f"client {args[0]} failed:\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _occupy(*ports: int) -> list[socket.socket]:
    """Listen on ``ports`` as another program would, so a new runtime cannot have them."""
    held = []
    for port in ports:
        sock = socket.socket()
        # Connections of the old runtime may linger in TIME_WAIT; a listener may still bind.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        held.append(sock)
    return held


def _running(home: Path) -> RuntimeInfo:
    info = read_runtime_info(home)
    assert info is not None, "no runtime serves the home"
    return info


@pytest.mark.parametrize("how", ["down", "kill -9"])
def test_sessions_reopen_after_a_restart_on_new_ports(home: Path, tmp_path: Path, how: str) -> None:
    """Plain and agent sessions reopened by id after a restart on other ports keep their
    context and go on counting, and a ref made before the restart still reads its object."""
    _cli(home, "up", "--detach")
    before = _running(home)
    first = _client(home, tmp_path, "first")
    assert (first["count"], first["turns"]) == (1, 1)

    if how == "down":
        _cli(home, "down")
    else:
        os.kill(before.pid, signal.SIGKILL)
        while runtime_serves_home(home):  # the kernel closes its sockets with its lock
            time.sleep(0.01)
    held = _occupy(_port(before.endpoint), _port(before.cache_endpoint))
    try:
        _cli(home, "up", "--detach")
        after = _running(home)
        assert after.endpoint != before.endpoint
        assert after.cache_endpoint != before.cache_endpoint
        assert before.cache_endpoint in after.former_cache_endpoints

        again = _client(home, tmp_path, "again", json.dumps(first))
    finally:
        for sock in held:
            sock.close()
    assert again["count"] == 2
    assert again["context"] == ["a", "b"]
    assert again["turns"] == 2
    assert again["messages"] == 4  # two user messages, two replies
    assert again["object"] == ["kept"]


def test_restart_prefers_the_previous_ports(home: Path, tmp_path: Path) -> None:
    """With default options and the ports free, a restarted runtime listens where it did."""
    _cli(home, "up", "--detach")
    before = _running(home)
    _cli(home, "down")
    _cli(home, "up", "--detach")
    after = _running(home)
    assert (after.endpoint, after.cache_endpoint) == (before.endpoint, before.cache_endpoint)
    assert after.former_cache_endpoints == ()


def test_up_starts_a_runtime_right_after_kill_9_of_an_unreaped_one(home: Path) -> None:
    """A runtime killed with SIGKILL that stays a zombie (its parent does not reap it) does not
    count as running: ``up`` starts a new one at once."""
    proc, info = embedded.start_runtime(home)
    try:
        os.kill(info.pid, signal.SIGKILL)
        # Wait for the kernel to finish the kill without reaping: the pid stays a zombie.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        os.kill(info.pid, 0)  # the zombie still answers a pid check
        _cli(home, "up", "--detach")
        assert _running(home).pid != info.pid
    finally:
        proc.wait()
