"""The zero-config path as a new user meets it: nothing configured, no runtime running.

Two client scripts start at the same moment on a fresh home. The first to take the start lock
starts the embedded runtime, the other reuses it; each prints only its own output on stdout and
exactly one announce line on stderr; the runtime keeps serving after both have exited.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from flame_agents import embedded
from flame_agents.config import read_runtime_info

pytestmark = pytest.mark.e2e

ECHO = Path(__file__).resolve().parents[2] / "examples" / "agents" / "echo"

CLIENT = textwrap.dedent(
    """
    import sys

    from echo_service import EchoRequest

    from flame_agents import core
    from flame_agents.errors import AlreadyExistsError
    from flame_agents.service import Session

    try:
        core.register_application(
            "echo-app",
            {"command": sys.executable, "arguments": ["echo_service.py"],
             "working_directory": sys.argv[1]},
        )
    except AlreadyExistsError:
        pass  # the other client registered it first
    with Session("echo-app", ctx=[]) as session:
        print(session.invoke(EchoRequest("hello")).text)
    """
)


@pytest.fixture
def fresh_home() -> Iterator[Path]:
    """A home no runtime serves yet; whatever runtime the clients start is stopped at the end."""
    home = Path(tempfile.mkdtemp(prefix="flame-agents-zero-")).resolve()
    try:
        yield home
    finally:
        embedded.stop_runtime(home)
        shutil.rmtree(home, ignore_errors=True)


def _runtimes_of(home: Path) -> list[int]:
    """Pids of runtime processes serving ``home``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "flame_agents.runtime" in cmd and str(home) in cmd:
            found.append(proc.pid)
    return found


def test_two_clients_at_once_start_one_runtime_that_outlives_them(fresh_home: Path) -> None:
    """With nothing configured, two clients started together share one embedded runtime they
    started themselves, each announces it in exactly one stderr line, and it keeps running."""
    assert read_runtime_info(fresh_home) is None
    unset = ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT", "FLAME_LOG_LEVEL", "FLAME_AGENTS_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    # HOME too: a ~/.flame/flame.yaml of the machine would otherwise name an endpoint.
    env.update(FLAME_AGENTS_HOME=str(fresh_home), HOME=str(fresh_home), PYTHONUNBUFFERED="1")
    clients = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(ECHO)],
            cwd=ECHO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [client.communicate(timeout=180) for client in clients]
    for client, (out, err) in zip(clients, outputs, strict=True):
        assert client.returncode == 0, err
        assert out == "HELLO\n"
        lines = err.splitlines()
        assert len(lines) == 1, err
        announced = re.search(r"using embedded runtime at (http://\S+) \(home (.+)\)", lines[0])
        assert announced is not None, err
        assert announced.group(2) == str(fresh_home)
    endpoints = {re.search(r"at (http://\S+)", err).group(1) for _, err in outputs}  # type: ignore[union-attr]
    assert len(endpoints) == 1, endpoints
    info = read_runtime_info(fresh_home)
    assert info is not None, "the runtime stopped with the clients"
    assert info.endpoint in endpoints
    assert _runtimes_of(fresh_home) == [info.pid]
