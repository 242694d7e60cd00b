"""Operators can see what runs: every instance, prestarted or fresh, names its application and
session in ``ps``, and ListExecutor carries the pid of the process serving each executor."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest
from runtime_support import SERVICES, Frontend, wait_until

from flame_agents._wire import frontend_pb2 as fpb
from flame_agents._wire import types_pb2
from flame_agents._wire.executor_process import executor_process
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

BEHAVE = str(SERVICES / "behave.py")


@pytest.fixture(scope="module")
def spared() -> Iterator[tuple[LocalRuntime, Frontend]]:
    """A runtime with one prestarted interpreter."""
    with (
        LocalRuntime(set_env=False, extra_args=["--prestart", "1"]) as rt,
        Frontend(rt.endpoint) as fe,
    ):
        yield rt, fe


@pytest.fixture(scope="module")
def fresh() -> Iterator[tuple[LocalRuntime, Frontend]]:
    """A runtime that starts every instance as a new process."""
    with (
        LocalRuntime(set_env=False, extra_args=["--prestart", "0"]) as rt,
        Frontend(rt.endpoint) as fe,
    ):
        yield rt, fe


def _warm_spares(rt: LocalRuntime) -> list[int]:
    children = psutil.Process(rt.pid).children(recursive=True)
    found = []
    for child in children:
        try:
            if child.name() == "flame-spare":
                found.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


def _ps_args(pid: int) -> str:
    """What ``ps`` shows as the command line of ``pid``."""
    done = subprocess.run(
        ["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _register(fe: Frontend, name: str, command: str, args: list[str]) -> None:
    spec = types_pb2.ApplicationSpec(command=command, arguments=args)
    result = fe.stub.RegisterApplication(
        fpb.RegisterApplicationRequest(name=name, application=spec)
    )
    assert result.return_code == 0, result.message


def _serving_pid(fe: Frontend, sid: str) -> int:
    """The pid the service reports from inside the instance of session ``sid``."""
    task = fe.run(sid, b"pid")
    assert task.status.state == types_pb2.Succeed, list(task.status.events)
    return int(task.spec.output)


def _listed_pids(fe: Frontend, sid: str) -> list[int]:
    processes = [executor_process(e) for e in fe.executors(sid)]
    return [p.pid for p in processes if p is not None]


def test_prestarted_instance_names_its_app_and_session(
    spared: tuple[LocalRuntime, Frontend],
) -> None:
    """A spare that took a launch shows app, session and the launch's command in ps, not the
    spare's own command line; ListExecutor gives its pid."""
    rt, fe = spared
    _register(fe, "title-pre", sys.executable, [BEHAVE])
    spares = wait_until(lambda: _warm_spares(rt), what="a warm spare")
    fe.create_session("title-pre-1", "title-pre")
    try:
        pid = _serving_pid(fe, "title-pre-1")
        assert pid in spares  # it really was the prestarted interpreter
        args = _ps_args(pid)
        assert args == (
            f"flame-agents instance app=title-pre session=title-pre-1 ({sys.executable} {BEHAVE})"
        )
        assert _listed_pids(fe, "title-pre-1") == [pid]
    finally:
        fe.close_session("title-pre-1")


def test_fresh_instance_names_its_app_and_session(fresh: tuple[LocalRuntime, Frontend]) -> None:
    """A freshly started Python service titles itself the same way once it binds."""
    _, fe = fresh
    _register(fe, "title-fresh", sys.executable, [BEHAVE])
    fe.create_session("title-fresh-1", "title-fresh")
    try:
        pid = _serving_pid(fe, "title-fresh-1")
        args = _ps_args(pid)
        assert args == (
            f"flame-agents instance app=title-fresh session=title-fresh-1 "
            f"({sys.executable} {BEHAVE})"
        )
        assert _listed_pids(fe, "title-fresh-1") == [pid]
    finally:
        fe.close_session("title-fresh-1")


def test_builtin_flmping_instance_names_its_session(fresh: tuple[LocalRuntime, Frontend]) -> None:
    """The built-in flmping service titles itself too; its pid comes from ListExecutor."""
    _, fe = fresh
    fe.create_session("title-ping-1", "flmping", min_instances=1)
    try:
        assert fe.run("title-ping-1", b"ping").spec.output == b"ping"
        [pid] = wait_until(lambda: _listed_pids(fe, "title-ping-1"), what="flmping's pid")
        assert _ps_args(pid).startswith("flame-agents instance app=flmping session=title-ping-1 (")
        assert "-m flame_agents.runtime.flmping)" in _ps_args(pid)
    finally:
        fe.close_session("title-ping-1")
