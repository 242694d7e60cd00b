"""Durability across restarts, the one-runtime-per-home lock, and the runtime-wide cap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from runtime_support import Frontend, events, read_pid, wait_until

from flame_agents._wire import types_pb2
from flame_agents.embedded import start_runtime
from flame_agents.errors import ConfigError
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("kill", [False, True], ids=["graceful", "kill-9"])
def test_restart_keeps_state_and_reruns_running(kill: bool, tmp_path: Path) -> None:
    """Sessions, tasks and results survive a restart; a task that was Running runs again."""
    marker = tmp_path / "marker"
    marker.mkdir()
    with LocalRuntime(set_env=False) as rt:
        with Frontend(rt.endpoint) as fe:
            assert fe.register("r-app").return_code == 0
            fe.create_session("r-s", "r-app", common_data=b"CD")
            done = fe.run("r-s", b"echo:before")
            blocked = fe.create_task("r-s", f"block:{marker}".encode())
            pid = read_pid(marker)
        rt.restart(kill=kill)
        wait_until(lambda: not _alive(pid), what="old instance gone with the old runtime")
        with Frontend(rt.endpoint) as fe:
            kept = fe.get_task("r-s", done.metadata.id)
            assert kept.spec.output == b"before|cd=CD"
            final = fe.watch("r-s", blocked.metadata.id)[-1]
            assert final.status.state == types_pb2.Succeed and final.spec.output == b"done"
            texts = [m for c, m in events(fe.get_task("r-s", blocked.metadata.id)) if c == 0]
            assert any("restarted" in t or "stopping" in t for t in texts)
            assert fe.get_session("r-s").status.state == types_pb2.Open
            nxt = fe.run("r-s", b"echo:after")
            assert nxt.metadata.id == "3" and nxt.spec.output == b"after|cd=CD"
            fe.close_session("r-s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_second_runtime_on_same_home_is_refused(runtime: LocalRuntime) -> None:
    """A second runtime on a home in use exits with an error naming the first one's pid."""
    with pytest.raises(ConfigError) as info:
        start_runtime(runtime.home or Path("."), timeout=30)
    assert f"pid {runtime.pid}" in str(info.value)


def test_runtime_cap_releases_idle_instances() -> None:
    """At the runtime-wide cap, an idle instance of another session is released for a task."""
    with (
        LocalRuntime(set_env=False, extra_args=["--max-instances", "1"]) as rt,
        Frontend(rt.endpoint) as fe,
    ):
        assert fe.register("cap-app").return_code == 0
        fe.create_session("cap-a", "cap-app")
        assert fe.run("cap-a", b"echo:a").status.state == types_pb2.Succeed
        assert len(fe.executors("cap-a")) == 1  # idle, kept for delay_release (60 s)
        fe.create_session("cap-b", "cap-app")
        assert fe.run("cap-b", b"echo:b").spec.output == b"b|cd=<none>"
        assert not fe.executors("cap-a")
        assert len(fe.executors()) <= 1
