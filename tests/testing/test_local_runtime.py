"""LocalRuntime: environment handling, restart on the same ports, and complete clean-up."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from runtime_support import Frontend, read_pid, wait_until

from flame_agents import embedded
from flame_agents.config import read_runtime_info
from flame_agents.errors import RuntimeUnavailableError
from flame_agents.runtime._home import HomeLayout
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_env_is_set_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """set_env exports FLAME_ENDPOINT/FLAME_CACHE_ENDPOINT/FLAME_AGENTS_HOME and restores them."""
    monkeypatch.setenv("FLAME_ENDPOINT", "http://example.invalid:1")
    monkeypatch.delenv("FLAME_AGENTS_HOME", raising=False)
    with LocalRuntime() as rt:
        assert os.environ["FLAME_ENDPOINT"] == rt.endpoint
        assert os.environ["FLAME_CACHE_ENDPOINT"] == rt.cache_endpoint
        assert os.environ["FLAME_AGENTS_HOME"] == str(rt.home)
        assert rt.env()["FLAME_ENDPOINT"] == rt.endpoint
        info = read_runtime_info(rt.home or Path("."))
        assert info is not None and info.pid == rt.pid
        home = rt.home
    assert os.environ["FLAME_ENDPOINT"] == "http://example.invalid:1"
    assert "FLAME_AGENTS_HOME" not in os.environ
    assert home is not None and not home.exists()


def test_cleanup_when_body_raises(tmp_path: Path) -> None:
    """Leaving with an exception stops the runtime and every instance process."""
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), LocalRuntime(set_env=False) as rt:
        with Frontend(rt.endpoint) as fe:
            assert fe.register("lr-app").return_code == 0
            fe.create_session("lr-s", "lr-app", max_instances=1)
            fe.create_task("lr-s", f"block:{tmp_path}".encode())
            instance = read_pid(tmp_path)
            pids = [rt.pid, *rt.instance_pids()]
            assert instance in pids
        raise RuntimeError("boom")
    for pid in pids:
        wait_until(lambda pid=pid: _gone(pid), what=f"process {pid} stopped")


def test_restart_keeps_ports_and_given_home(tmp_path: Path) -> None:
    """restart() comes back on the same ports, where the new runtime serves what the old one
    stored; a given home is kept after exit."""
    home = tmp_path / "home"
    with LocalRuntime(home, set_env=False) as rt:
        endpoint, cache = rt.endpoint, rt.cache_endpoint
        old = rt.pid
        with Frontend(rt.endpoint) as fe:
            assert fe.register("lr-kept").return_code == 0
            fe.create_session("lr-kept-s", "lr-kept", max_instances=1)
        rt.restart(kill=True)
        assert (rt.endpoint, rt.cache_endpoint) == (endpoint, cache)
        assert rt.pid != old
        with Frontend(endpoint) as fe:  # the old address, answered by the new process
            assert fe.get_session("lr-kept-s").spec.application == "lr-kept"
    assert (home / "flame.db").exists()
    assert read_runtime_info(home) is None


def test_start_runtime_interrupted_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C while waiting for the runtime to be ready kills it instead of leaking it."""
    home = tmp_path / "home"

    def interrupted(_home: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded, "read_runtime_info", interrupted)
    with pytest.raises(KeyboardInterrupt):
        embedded.start_runtime(home)
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(home) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []


def test_start_runtime_not_ready_leaves_no_process(tmp_path: Path) -> None:
    """A runtime that is not ready in time is killed, not left running behind the error."""
    home = tmp_path / "home"
    with pytest.raises(RuntimeUnavailableError, match="not ready"):
        embedded.start_runtime(home, timeout=0.0)
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(home) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []


def test_long_home_socket_folder_is_removed_on_stop(tmp_path: Path) -> None:
    """A home too long for AF_UNIX keeps its sockets under the temp dir; a graceful stop of the
    runtime itself (not a test helper) removes that folder."""
    home = (tmp_path / ("h" * 90) / "home").resolve()
    sockets = HomeLayout(home).sockets
    assert home not in sockets.parents  # the temp-dir form
    proc, info = embedded.start_runtime(home)
    try:
        with Frontend(info.endpoint) as fe:
            fe.create_session("long-home", "flmping")
            assert fe.run("long-home", b"ping").spec.output == b"ping"
            assert any(sockets.glob("*.sock"))
        assert embedded.stop_runtime(home)
        proc.wait(timeout=30)
        assert not sockets.exists()
    finally:
        embedded.stop_runtime(home, kill=True)
        proc.wait(timeout=30)
        shutil.rmtree(sockets, ignore_errors=True)


def test_killed_runtime_socket_folder_is_removed_by_stop_runtime(tmp_path: Path) -> None:
    """stop_runtime(kill=True) removes the temp-dir socket folder a killed runtime cannot."""
    home = (tmp_path / ("k" * 90) / "home").resolve()
    sockets = HomeLayout(home).sockets
    proc, info = embedded.start_runtime(home)
    try:
        with Frontend(info.endpoint) as fe:
            fe.create_session("killed-home", "flmping")
            assert fe.run("killed-home", b"ping").spec.output == b"ping"
        assert sockets.is_dir()
        assert embedded.stop_runtime(home, kill=True)
        proc.wait(timeout=30)
        assert not sockets.exists()
    finally:
        embedded.stop_runtime(home, kill=True)
        proc.wait(timeout=30)
        shutil.rmtree(sockets, ignore_errors=True)
