"""Pure pieces of the runtime: store, home layout, application rules, variable expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from flame_agents._wire import types_pb2
from flame_agents.errors import ConfigError
from flame_agents.runtime._home import HomeLayout, HomeLock
from flame_agents.runtime._launch import describe_exit, expand_vars
from flame_agents.runtime.sessions._apps import SpecError, name_error, with_defaults
from flame_agents.runtime.sessions._board import TaskBoard
from flame_agents.runtime.sessions._store import Store
from flame_agents.types import TaskState


def test_expand_vars_like_shellexpand() -> None:
    """$VAR and ${VAR} expand from the environment; unknown names become empty."""
    env = {"HOME": "/h", "APP": "x"}
    assert expand_vars("$HOME/bin/${APP}-svc $NOPE.", env) == "/h/bin/x-svc ."


def test_describe_exit() -> None:
    """Exit statuses read as 'signal 9 (SIGKILL)' or 'exit code N'."""
    assert describe_exit(-9) == "signal 9 (SIGKILL)"
    assert describe_exit(3) == "exit code 3"


def test_socket_dir_falls_back_when_home_path_is_long(tmp_path: Path) -> None:
    """A home too deep for AF_UNIX socket paths gets a short socket folder under the temp dir."""
    name = "00000000-0000-0000-0000-000000000000.sock"
    short = HomeLayout(Path("/tmp/h"))
    assert short.sockets == Path("/tmp/h/sock")
    deep = HomeLayout(tmp_path / ("d" * 120))
    assert len(str(deep.sockets / name)) <= 107
    assert not deep.sockets.is_relative_to(deep.home)


def test_home_lock_is_exclusive(tmp_path: Path) -> None:
    """A second lock on the same home fails naming the holder's pid."""
    layout = HomeLayout(tmp_path / "home")
    layout.create()
    first, second = HomeLock(layout), HomeLock(layout)
    first.acquire()
    try:
        with pytest.raises(ConfigError, match="pid"):
            second.acquire()
    finally:
        first.release()
    second.acquire()
    second.release()


def test_application_rules() -> None:
    """Names follow Flame's grammar; absent fields get Flame's defaults; bad specs are refused."""
    assert name_error("my-app_1.v2") is None
    for bad in ("", ".hidden", "-x", "a..b", "a/b", "x" * 254):
        assert name_error(bad)
    spec = with_defaults(types_pb2.ApplicationSpec(command="/bin/true"))
    assert (spec.max_instances, spec.delay_release) == (1_000_000, 60)
    with pytest.raises(SpecError):
        with_defaults(types_pb2.ApplicationSpec(working_directory="relative"))
    with pytest.raises(SpecError):
        with_defaults(
            types_pb2.ApplicationSpec(schema=types_pb2.ApplicationSchema(input="{not json"))
        )


def test_store_sequential_ids_and_recovery(tmp_path: Path) -> None:
    """Task ids count from 1 per session and Running tasks are found for recovery."""
    store = Store(tmp_path / "flame.db")
    try:
        board = TaskBoard(store)
        board.open_session("a", types_pb2.SessionSpec(application="app"))
        board.open_session("b", types_pb2.SessionSpec(application="app"))
        assert [board.create_task("a", b"x").id for _ in range(3)] == [1, 2, 3]
        assert board.create_task("b", None).id == 1
        store.start_task("a", 2)
        assert store.running_tasks() == [("a", 2)]
        store.requeue_task("a", 2, message="back", lost=True)
        row = store.get_task("a", 2)
        assert row is not None and row.state == TaskState.PENDING and row.losses == 1
        assert row.attempts == 1
        assert store.close_session("a")[0] == [1, 2, 3]
        assert store.counters("a") == {TaskState.CANCELLED: 3}
    finally:
        store.close()
    reopened = Store(tmp_path / "flame.db")
    try:
        assert reopened.get_task("b", 1) is not None
        assert [e.code for e in reopened.events("a", 2)] == [0, 1, 0]
    finally:
        reopened.close()


def test_kill_orphans_targets_only_this_homes_instances(tmp_path: Path) -> None:
    """Processes whose FLAME_INSTANCE_ENDPOINT lies in the socket folder are killed, others not."""
    import subprocess
    import sys

    from flame_agents.runtime._home import kill_orphans

    ours_dir, other_dir = tmp_path / "sock", tmp_path / "other"
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    ours = subprocess.Popen(sleep, env={"FLAME_INSTANCE_ENDPOINT": f"{ours_dir}/a.sock"})
    other = subprocess.Popen(sleep, env={"FLAME_INSTANCE_ENDPOINT": f"{other_dir}/a.sock"})
    try:
        assert kill_orphans(ours_dir) == 1
        assert ours.wait(timeout=30) == -9
        assert other.poll() is None
    finally:
        for p in (ours, other):
            p.kill()
            p.wait()
