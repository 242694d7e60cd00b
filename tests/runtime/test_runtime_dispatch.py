"""Dispatch through real instance processes: lifecycle, counters, events, watch, sizing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from runtime_support import Frontend, Watcher, events, read_pid, wait_until

from flame_agents._wire import frontend_pb2 as fpb
from flame_agents._wire import types_pb2
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

APP = "disp-app"
QUICK = "disp-quick"
"""Same service with delay_release 0: instances leave as soon as they are idle."""


@pytest.fixture(scope="module")
def fe(runtime: LocalRuntime) -> Iterator[Frontend]:
    with Frontend(runtime.endpoint) as frontend:
        assert frontend.register(APP).return_code == 0
        assert frontend.register(QUICK, delay_release=0).return_code == 0
        yield frontend


def test_task_lifecycle_counters_and_events(fe: Frontend) -> None:
    """A task goes Pending -> Running -> Succeed with events 0, 1, 2 and counters to match."""
    fe.create_session("d-life", APP, common_data=b"CD")
    first = fe.create_task("d-life", b"echo:a")
    assert first.metadata.id == "1" and first.status.state == types_pb2.Pending
    second = fe.create_task("d-life", b"echo:b")
    assert second.metadata.id == "2"
    for task in (first, second):
        last = fe.watch("d-life", task.metadata.id)[-1]
        assert last.status.state == types_pb2.Succeed
    got = fe.get_task("d-life", "1")
    assert got.spec.output == b"a|cd=CD" and got.spec.input == b"echo:a"
    assert [c for c, _ in events(got)] == [0, 1, 2]
    assert got.status.completion_time >= got.status.creation_time
    s = fe.get_session("d-life")
    assert (s.status.pending, s.status.running, s.status.succeed, s.status.failed) == (0, 0, 2, 0)
    listed = list(fe.stub.ListTask(fpb.ListTaskRequest(session_id="d-life")))
    assert [t.metadata.id for t in listed] == ["1", "2"]
    fe.close_session("d-life")


def test_none_input_and_output(fe: Frontend) -> None:
    """A task without input reaches the service; a None result leaves the output unset."""
    fe.create_session("d-none", APP)
    done = fe.run("d-none", b"none")
    assert done.status.state == types_pb2.Succeed and not done.spec.HasField("output")
    empty = fe.run("d-none", None)
    assert empty.status.state == types_pb2.Succeed and empty.spec.output == b""
    fe.close_session("d-none")


def test_failure_text_reaches_watchers(fe: Frontend) -> None:
    """A handler exception fails the task with event 3 carrying its class, text and frames."""
    fe.create_session("d-fail", APP)
    done = fe.run("d-fail", b"fail:the disk is on fire")
    assert done.status.state == types_pb2.Failed
    failures = [text for code, text in events(done) if code == 3]
    assert len(failures) == 1
    assert failures[0].startswith("RuntimeError: the disk is on fire")
    assert "behave.py" in failures[0] and "on_task_invoke" in failures[0]
    # The session keeps serving after a failed task.
    assert fe.run("d-fail", b"echo:ok").spec.output == b"ok|cd=<none>"
    s = fe.get_session("d-fail")
    assert (s.status.succeed, s.status.failed) == (1, 1)
    fe.close_session("d-fail")


def test_watch_of_terminal_task_is_immediate(fe: Frontend) -> None:
    """Watching a finished task yields exactly one terminal message and ends."""
    fe.create_session("d-term", APP)
    task = fe.run("d-term", b"echo:x")
    again = fe.watch("d-term", task.metadata.id)
    assert len(again) == 1 and again[0].status.state == types_pb2.Succeed
    fe.close_session("d-term")


def test_close_cancels_pending_and_ends_watches(fe: Frontend, tmp_path: Path) -> None:
    """Closing waits for the running task, cancels pending ones, and ends their watches."""
    fe.create_session("d-close", APP, max_instances=1)
    running = fe.create_task("d-close", f"block:{tmp_path}".encode())
    read_pid(tmp_path)
    queued = fe.create_task("d-close", b"echo:never")
    watcher = Watcher(fe, "d-close", queued.metadata.id)
    with ThreadPoolExecutor(1) as pool:
        closing = pool.submit(fe.close_session, "d-close")
        assert watcher.result()[-1].status.state == types_pb2.Cancelled
        assert not closing.done()  # still waiting for the running task
        # Kill the blocked service: the lost task is cancelled since the session is closed.
        os.kill(read_pid(tmp_path), 9)
        closed = closing.result(timeout=60)
    assert closed.status.state == types_pb2.Closed
    assert closed.status.cancelled == 2
    assert fe.get_task("d-close", running.metadata.id).status.state == types_pb2.Cancelled


def test_parallel_instances_and_max_instances(fe: Frontend) -> None:
    """Tasks run on several instances in parallel, never more than the session's max."""
    fe.create_session("d-par", APP, max_instances=2)
    # Eight one-second tasks: a second instance starts long before one could finish them all.
    tasks = [fe.create_task("d-par", b"sleep:1") for _ in range(8)]
    counts: list[int] = []

    def two_serving() -> bool:
        counts.append(len(fe.executors("d-par")))
        return counts[-1] == 2

    wait_until(two_serving, what="a second instance serves the queued tasks")
    for t in tasks:
        assert fe.watch("d-par", t.metadata.id)[-1].status.state == types_pb2.Succeed
        counts.append(len(fe.executors("d-par")))
    assert max(counts) == 2, counts
    fe.close_session("d-par")
    wait_until(lambda: not fe.executors("d-par"), what="instances released on close")


def test_min_instances_prewarm(fe: Frontend) -> None:
    """min_instances launches bound instances before any task exists."""
    fe.create_session("d-warm", QUICK, min_instances=2)
    wait_until(
        lambda: (
            [
                e for e in fe.executors("d-warm") if e.status.state == types_pb2.ExecutorBound
            ].__len__()
            == 2
        ),
        what="two prewarmed instances",
    )
    # delay_release 0 does not release below min_instances.
    assert fe.run("d-warm", b"echo:x").status.state == types_pb2.Succeed
    assert len(fe.executors("d-warm")) == 2
    fe.close_session("d-warm")
    wait_until(lambda: not fe.executors("d-warm"), what="prewarmed instances released")


def test_delay_release(fe: Frontend) -> None:
    """An idle instance stays for delay_release seconds (60 default) and leaves at 0."""
    fe.create_session("d-keep", APP)
    fe.create_session("d-quick", QUICK)
    assert fe.run("d-keep", b"echo:x").status.state == types_pb2.Succeed
    assert fe.run("d-quick", b"echo:x").status.state == types_pb2.Succeed
    wait_until(lambda: not fe.executors("d-quick"), what="idle instance released")
    assert len(fe.executors("d-keep")) == 1
    executor = fe.executors("d-keep")[0]
    assert executor.status.state == types_pb2.ExecutorBound
    assert executor.spec.resreq.cpu == 1
    fe.close_session("d-keep")
    fe.close_session("d-quick")


def test_flamepy_raw_service(fe: Frontend) -> None:
    """The published flamepy FlameService runs under the runtime's launcher unchanged."""
    assert fe.register("d-flamepy", service="flamepy_raw").return_code == 0
    fe.create_session("d-fp", "d-flamepy", common_data=b"CD")
    assert fe.run("d-fp", b"hi").spec.output == b"hi|cd=CD"
    failed = fe.run("d-fp", b"fail:nope")
    assert failed.status.state == types_pb2.Failed and (3, "nope") in events(failed)
    fe.close_session("d-fp")


def test_many_concurrent_watches(fe: Frontend) -> None:
    """Hundreds of tasks with concurrent watch streams all end Succeed."""
    fe.create_session("d-many", APP, max_instances=4)
    tasks = [fe.create_task("d-many", b"echo:%d" % i) for i in range(200)]
    with ThreadPoolExecutor(32) as pool:
        finals = list(pool.map(lambda t: fe.watch("d-many", t.metadata.id)[-1], tasks))
    assert all(f.status.state == types_pb2.Succeed for f in finals)
    assert [f.spec.output for f in finals] == [b"%d|cd=<none>" % i for i in range(200)]
    fe.close_session("d-many")


def test_watch_from_pending_never_misses_the_end(fe: Frontend) -> None:
    """Watches opened while tasks are pending see Running then the end, even for fast tasks.

    The completion of a fast task often lands while the stream is still sending its Running
    message; the watch must not miss it.
    """
    fe.create_session("d-race", APP, max_instances=2)

    def submit_and_watch(i: int) -> types_pb2.Task:
        task = fe.create_task("d-race", b"echo:%d" % i)
        return fe.watch("d-race", task.metadata.id)[-1]

    with ThreadPoolExecutor(16) as pool:
        finals = list(pool.map(submit_and_watch, range(300)))
    assert [f.spec.output for f in finals] == [b"%d|cd=<none>" % i for i in range(300)]
    fe.close_session("d-race")


def test_launch_environment(fe: Frontend, runtime: LocalRuntime, tmp_path: Path) -> None:
    """Instances get Flame's host-shim environment, the app's variables and working directory."""
    assert (
        fe.register(
            "d-env",
            working_directory=str(tmp_path),
            environments=[types_pb2.Environment(name="GREETING", value="hi-$HOME")],
        ).return_code
        == 0
    )
    fe.create_session("d-env-s", "d-env")

    def ask(what: bytes) -> str:
        return fe.run("d-env-s", what).spec.output.decode()

    socket_path = ask(b"env:FLAME_INSTANCE_ENDPOINT")
    assert socket_path.startswith("/") and socket_path.endswith(".sock")
    assert ask(b"env:FLAME_ENDPOINT") == runtime.endpoint
    assert ask(b"env:FLAME_CACHE_ENDPOINT") == runtime.cache_endpoint
    assert ask(b"env:GREETING") == f"hi-{os.environ['HOME']}"
    assert Path(ask(b"env:TMPDIR")).is_dir()
    assert ask(b"cwd") == str(tmp_path)
    executor = fe.executors("d-env-s")[0].metadata.id
    assert runtime.home is not None
    assert (runtime.home / "logs" / f"{executor}.err").exists()
    fe.close_session("d-env-s")
    wait_until(lambda: not Path(socket_path).exists(), what="socket removed at teardown")
