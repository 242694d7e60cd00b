"""The resource ledger and capacity detection, and the GPUs the scheduler hands to instances."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from runtime_support import SERVICES

from flame_agents._wire import types_pb2
from flame_agents.runtime._launch import LaunchSpec
from flame_agents.runtime.launch._instance import InstanceProcess
from flame_agents.runtime.sessions._board import TaskBoard
from flame_agents.runtime.sessions._options import SchedulerOptions
from flame_agents.runtime.sessions._resources import (
    Allocation,
    Capacity,
    Ledger,
    detect_cpus,
    detect_gpus,
    detect_memory,
)
from flame_agents.runtime.sessions._rows import TaskRow
from flame_agents.runtime.sessions._scheduler import Scheduler
from flame_agents.runtime.sessions._store import Store
from flame_agents.types import TaskState

GIB = 1024**3


def _rr(cpu: int = 0, memory: int = 0, gpu: int = 0) -> types_pb2.ResourceRequirement:
    return types_pb2.ResourceRequirement(cpu=cpu, memory=memory, gpu=gpu)


capacities = st.builds(
    Capacity,
    cpu=st.integers(1, 16),
    memory=st.integers(0, 64).map(lambda n: n * GIB),
    gpus=st.integers(0, 4).map(lambda n: tuple(str(i) for i in range(n))),
)
requests = st.builds(
    _rr,
    cpu=st.integers(0, 20),
    memory=st.integers(0, 80).map(lambda n: n * GIB),
    gpu=st.integers(-1, 5),
)


@given(capacities, st.lists(st.tuples(st.booleans(), requests, st.integers(0, 100)), max_size=60))
def test_ledger_never_exceeds_capacity(
    cap: Capacity, steps: list[tuple[bool, types_pb2.ResourceRequirement, int]]
) -> None:
    """Whatever is acquired and released, what is held never exceeds the capacity, no GPU is
    held twice, a request is granted exactly when it fits what is free, and releasing
    everything frees the whole machine."""
    ledger = Ledger(cap)
    held: list[Allocation] = []
    for acquire, resreq, pick in steps:
        if acquire or not held:
            fits = not ledger.shortfall(resreq)
            before = ledger.free
            got = ledger.acquire(resreq)
            assert (got is not None) == fits
            if got is None:
                assert ledger.free == before
            else:
                assert (got.cpu, got.memory, len(got.gpus)) == (
                    resreq.cpu,
                    resreq.memory,
                    max(resreq.gpu, 0),
                )
                held.append(got)
        else:
            ledger.release(held.pop(pick % len(held)))
        cpu, memory, gpu = ledger.used
        assert 0 <= cpu <= cap.cpu and 0 <= memory <= cap.memory and 0 <= gpu <= cap.gpu
        gpus = [g for a in held for g in a.gpus]
        assert len(gpus) == len(set(gpus)) == gpu and set(gpus) <= set(cap.gpus)
        assert (cpu, memory) == (sum(a.cpu for a in held), sum(a.memory for a in held))
    for allocation in held:
        ledger.release(allocation)
    assert ledger.free == (cap.cpu, cap.memory, cap.gpu)


def test_release_twice_is_an_error() -> None:
    """Returning the same grant twice is refused instead of inflating what is free."""
    ledger = Ledger(Capacity(cpu=2, memory=GIB))
    got = ledger.acquire(_rr(cpu=1))
    assert got is not None
    ledger.release(got)
    with pytest.raises(ValueError, match="released twice"):
        ledger.release(got)


def test_never_fits_names_what_is_missing_and_what_the_machine_has() -> None:
    """A request over the machine's total says which dimension, what was asked and what the
    machine has; one that fits the whole machine is accepted."""
    ledger = Ledger(Capacity(cpu=2, memory=int(23.4 * GIB)))
    gpu = ledger.never_fits(_rr(gpu=1))
    assert gpu is not None
    assert gpu.startswith("resreq gpu=1 cannot fit this machine (0 GPUs; cpu 2, memory 23.4 GiB): ")
    both = ledger.never_fits(_rr(cpu=10000, memory=64 * GIB))
    assert (
        both is not None
        and "resreq cpu=10000, memory=64 GiB" in both
        and "2 cpus, 23.4 GiB memory" in both
    )
    assert ledger.never_fits(_rr(cpu=2, memory=int(23.4 * GIB))) is None
    assert ledger.never_fits(_rr(gpu=-1)) is None  # int32 on the wire: negative means none


def test_gpus_found_and_narrowed_by_cuda_visible_devices(tmp_path: Path) -> None:
    """GPUs are the driver's devices, numbered 0..n-1, or the runtime's own
    CUDA_VISIBLE_DEVICES entries (no more than the devices found; empty means none)."""
    proc = tmp_path / "gpus"
    proc.mkdir()
    for bus in ("0000:3b:00.0", "0000:5e:00.0", "0000:86:00.0"):
        (proc / bus).mkdir()
    assert detect_gpus(env={}, proc_dir=proc, smi=None) == ("0", "1", "2")
    assert detect_gpus(env={"CUDA_VISIBLE_DEVICES": "2,0"}, proc_dir=proc, smi=None) == ("2", "0")
    assert detect_gpus(env={"CUDA_VISIBLE_DEVICES": ""}, proc_dir=proc, smi=None) == ()
    assert detect_gpus(env={"CUDA_VISIBLE_DEVICES": "1,-1,2"}, proc_dir=proc, smi=None) == ("1",)
    assert detect_gpus(env={"CUDA_VISIBLE_DEVICES": "0,1,2,3,4"}, proc_dir=proc, smi=None) == (
        "0",
        "1",
        "2",
    )
    assert detect_gpus(env={}, proc_dir=tmp_path / "absent", smi=None) == ()


def test_cpus_and_memory_follow_cgroup_limits(tmp_path: Path) -> None:
    """A cgroup cpu quota (rounded up) and memory limit below the machine's are the capacity."""
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    (tmp_path / "memory.max").write_text(f"{GIB}\n")
    assert detect_cpus(cgroup_root=tmp_path) == 1
    assert detect_memory(cgroup_root=tmp_path) == GIB
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert detect_cpus(cgroup_root=tmp_path) == len(os.sched_getaffinity(0))
    assert detect_memory(cgroup_root=tmp_path) == os.sysconf("SC_PAGE_SIZE") * os.sysconf(
        "SC_PHYS_PAGES"
    )


def _launch_spec(folder: Path, visible_gpus: tuple[str, ...] | None) -> LaunchSpec:
    return LaunchSpec(
        executor_id="e1",
        app_name="app",
        app=types_pb2.ApplicationSpec(),
        session_id="s1",
        common_data=None,
        socket_dir=folder,
        work_root=folder,
        log_dir=folder,
        frontend_endpoint="http://127.0.0.1:1",
        cache_endpoint=None,
        bind_timeout=5,
        visible_gpus=visible_gpus,
    )


def test_instance_environment_carries_the_granted_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance's CUDA_VISIBLE_DEVICES is its granted devices (empty for none); without a
    grant it inherits the runtime's."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")

    def env(gpus: tuple[str, ...] | None) -> str:
        return InstanceProcess(_launch_spec(tmp_path, gpus))._environment(tmp_path)[
            "CUDA_VISIBLE_DEVICES"
        ]

    assert env(("1", "3")) == "1,3"
    assert env(()) == ""
    assert env(None) == "0,1,2,3"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path (Unix socket paths are limited to ~100 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="fa-res-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _finished(board: TaskBoard, sid: str, tid: int) -> TaskRow:
    while True:
        changed = board.watch(sid, tid)
        row = board.get_task(sid, tid)
        assert row is not None
        if row.state.is_terminal:
            return row
        await asyncio.wait_for(changed.wait(), 60)


@pytest.mark.e2e
def test_scheduler_hands_each_gpu_instance_its_own_devices(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a machine with (fake) GPUs, instances of gpu=1 sessions get distinct devices in
    CUDA_VISIBLE_DEVICES, an explicit gpu=0 session gets none, and a session without a resreq
    keeps the runtime's setting."""
    store = Store(short_dir / "db.sqlite")
    store.put_app(
        "probe",
        types_pb2.ApplicationSpec(
            command=sys.executable,
            arguments=[str(SERVICES / "behave.py")],
            delay_release=600,
        ),
    )
    sessions = {
        "g1": _rr(cpu=1, gpu=1),
        "g2": _rr(cpu=1, gpu=1),
        "g0": _rr(cpu=1),
        "default": None,
    }

    async def run() -> dict[str, str]:
        board = TaskBoard(store)
        sched = Scheduler(
            board,
            store,
            SchedulerOptions(
                node_name="test",
                socket_dir=short_dir,
                work_root=short_dir / "work",
                log_dir=short_dir,
                frontend_endpoint="http://127.0.0.1:1",
                cache_endpoint=None,
            ),
            capacity=Capacity(cpu=4, memory=GIB, gpus=("4", "7")),
            launch=InstanceProcess,
        )
        seen = {}
        try:
            for sid, resreq in sessions.items():
                spec = types_pb2.SessionSpec(application="probe", batch_size=1)
                if resreq is not None:
                    spec.resreq.CopyFrom(resreq)
                board.open_session(sid, spec)
            tids = {}
            for sid in sessions:
                tids[sid] = board.create_task(sid, b"env:CUDA_VISIBLE_DEVICES").id
            for sid, tid in tids.items():
                row = await _finished(board, sid, tid)
                assert row.state == TaskState.SUCCEED and row.output is not None, row
                seen[sid] = row.output.decode()
            assert sched.resources.used == (3, 0, 2)
        finally:
            for sid in sessions:
                board.close_session(sid)
                await sched.drain(sid)
            await sched.shutdown()
        assert sched.resources.used == (0, 0, 0)
        return seen

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")  # the runtime's own setting
    try:
        seen = asyncio.run(run())
    finally:
        store.close()
    assert sorted([seen["g1"], seen["g2"]]) == ["4", "7"]
    assert seen["g0"] == ""
    assert seen["default"] == "4,7"
