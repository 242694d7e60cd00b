"""Instance starts are limited to ``--max-concurrent-starts`` at once; the rest queue."""

from __future__ import annotations

import itertools
from pathlib import Path

from runtime_support import Frontend

from flame_agents._wire import types_pb2
from flame_agents.testing import LocalRuntime


def _start_windows(log: Path) -> list[tuple[float, float]]:
    """(start, ready) of every process in the log, by start time."""
    starts: dict[str, float] = {}
    ready: dict[str, float] = {}
    for line in log.read_text().splitlines():
        what, pid, at = line.split()
        (starts if what == "start" else ready)[pid] = float(at)
    return sorted((starts[pid], ready[pid]) for pid in starts)


def test_instances_start_one_at_a_time_with_a_limit_of_one(tmp_path: Path) -> None:
    """With a limit of 1, six sessions' instances start strictly one after another, all serve."""
    log = tmp_path / "starts.log"
    with (
        LocalRuntime(set_env=False, extra_args=["--max-concurrent-starts", "1"]) as rt,
        Frontend(rt.endpoint) as fe,
    ):
        env = [types_pb2.Environment(name="START_LOG", value=str(log))]
        fe.register("slow", service="slow_start", environments=env)
        sids = [f"slow-{i}" for i in range(6)]
        for sid in sids:
            fe.create_session(sid, "slow")
        tasks = [(sid, fe.create_task(sid, f"echo:{sid}".encode())) for sid in sids]
        for sid, task in tasks:
            final = fe.watch(sid, task.metadata.id)[-1]
            assert final.status.state == types_pb2.Succeed, final
            assert final.spec.output == f"{sid}|cd=<none>".encode()
        windows = _start_windows(log)
        assert len(windows) == 6
        for (_, ready), (next_start, _) in itertools.pairwise(windows):
            assert next_start >= ready, windows  # the next began only after this one was up
        for sid in sids:
            fe.close_session(sid)


def test_default_limit_lets_starts_overlap(tmp_path: Path) -> None:
    """Without the option (one per CPU, at least 2), two instances start side by side."""
    log = tmp_path / "starts.log"
    with LocalRuntime(set_env=False) as rt, Frontend(rt.endpoint) as fe:
        # Each instance gets ready only once both have started: with starts one at a time the
        # first would wait out its quorum and the order check below fails, whatever the speed.
        env = [
            types_pb2.Environment(name="START_LOG", value=str(log)),
            types_pb2.Environment(name="START_QUORUM", value="2"),
        ]
        fe.register("slow", service="slow_start", environments=env)
        for sid in ("a", "b"):
            fe.create_session(sid, "slow")
        tasks = [(sid, fe.create_task(sid, b"echo:x")) for sid in ("a", "b")]
        for sid, task in tasks:
            assert fe.watch(sid, task.metadata.id)[-1].status.state == types_pb2.Succeed
        (_, first_ready), (second_start, _) = _start_windows(log)
        assert second_start < first_ready
        for sid in ("a", "b"):
            fe.close_session(sid)
