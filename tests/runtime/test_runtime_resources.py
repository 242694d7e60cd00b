"""Resource requirements on one machine: refused when they can never fit, waited for otherwise.

The probe service logs ``enter``/``leave`` of each instance, so the order of instance starts is
read from what the services recorded, never from the clock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_support import Frontend, Watcher, wait_until

from flame_agents import core
from flame_agents._wire import frontend_pb2 as fpb
from flame_agents._wire import types_pb2
from flame_agents.errors import InvalidArgumentError, NotFoundError
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

PROBE = "res-probe"


@pytest.fixture(scope="module")
def probe_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("probe") / "log"


@pytest.fixture(scope="module")
def fe(runtime: LocalRuntime, probe_log: Path) -> Iterator[Frontend]:
    with Frontend(runtime.endpoint) as frontend:
        env = [types_pb2.Environment(name="PROBE_LOG", value=str(probe_log))]
        # Instances stay idle for long: only the resource rules may make them leave early.
        assert (
            frontend.register(
                PROBE, service="resource_probe", environments=env, delay_release=600
            ).return_code
            == 0
        )
        yield frontend


def _node(fe: Frontend) -> types_pb2.Node:
    return fe.stub.GetNode(fpb.GetNodeRequest(name="")).node


def _cpus(fe: Frontend) -> int:
    return int(_node(fe).status.capacity.cpu)


def _order(log: Path, *sids: str) -> list[str]:
    """``enter <sid>`` / ``leave <sid>`` lines of the probe log for ``sids``, in log order."""
    text = log.read_text() if log.exists() else ""
    lines = (line.split() for line in text.splitlines())
    return [f"{event} {sid}" for event, sid, _pid in lines if sid in sids]


def _hold(fe: Frontend, sid: str, folder: Path) -> types_pb2.Task:
    """Start a task that keeps its instance busy until ``folder/go`` exists."""
    folder.mkdir()
    task = fe.create_task(sid, f"hold:{folder}".encode())
    wait_until(lambda: any(folder.iterdir()), what=f"{sid}'s hold task running")
    return task


def _rr(cpu: int) -> types_pb2.ResourceRequirement:
    return types_pb2.ResourceRequirement(cpu=cpu, memory=1024**2, gpu=0)


@pytest.mark.parametrize("resreq", ["gpu", "cpu=10000"])
def test_request_that_can_never_fit_is_refused(
    fe: Frontend, runtime: LocalRuntime, resreq: str
) -> None:
    """A resreq beyond the machine (more GPUs than it has, cpu=10000) fails session creation
    with InvalidArgumentError naming what was asked and what the machine has; no session is
    left, through CreateSession and OpenSession alike."""
    cap = _node(fe).status.capacity
    if resreq == "gpu":
        resreq = f"gpu={cap.gpu + 1}"
        has = f"{cap.gpu} GPU" + ("" if cap.gpu == 1 else "s")
    else:
        has = f"{cap.cpu} cpu"
    with core.connect(runtime.endpoint) as conn:
        with pytest.raises(InvalidArgumentError) as created:
            conn.create_session(PROBE, session_id="r-never", resreq=resreq)
        with pytest.raises(InvalidArgumentError) as opened:
            conn.open_session("r-never", spec={"application": PROBE, "resreq": resreq})
        for exc in (created.value, opened.value):
            assert f"resreq {resreq} cannot fit this machine" in str(exc)
            assert has in str(exc)
        with pytest.raises(NotFoundError):
            conn.get_session("r-never")
        assert "r-never" not in {s.id for s in conn.list_sessions()}


def test_second_session_waits_until_the_first_is_closed(
    fe: Frontend, probe_log: Path, tmp_path: Path
) -> None:
    """Two sessions each asking for every cpu: the second's instance starts only after the
    first session is closed and its instance gone; the node shows the cpus as taken meanwhile,
    and a session without a resreq (which reserves nothing) still runs."""
    cpus = _cpus(fe)
    fe.create_session("r-first", PROBE, resreq=_rr(cpus))
    assert fe.get_session("r-first").spec.resreq == _rr(cpus)
    held = _hold(fe, "r-first", tmp_path / "hold")
    node = _node(fe).status
    assert (node.allocatable.cpu, node.allocatable.gpu) == (0, node.capacity.gpu)

    fe.create_session("r-second", PROBE, resreq=_rr(cpus))
    second = Watcher(fe, "r-second", fe.create_task("r-second", b"pid").metadata.id)
    assert fe.executors("r-second") == []  # launch decisions are made within CreateTask
    assert fe.get_session("r-second").status.pending == 1

    fe.create_session("r-default", PROBE)
    assert fe.run("r-default", b"pid").status.state == types_pb2.Succeed
    fe.close_session("r-default")

    closing = threading.Thread(target=fe.close_session, args=("r-first",))
    closing.start()  # returns once the running hold task is done
    wait_until(lambda: fe.get_session("r-first").status.state == types_pb2.Closed)
    assert fe.executors("r-second") == []
    (tmp_path / "hold" / "go").touch()
    closing.join()
    assert fe.get_task("r-first", held.metadata.id).status.state == types_pb2.Succeed
    assert second.result()[-1].status.state == types_pb2.Succeed
    assert _order(probe_log, "r-first", "r-second") == [
        "enter r-first",
        "leave r-first",
        "enter r-second",
    ]
    fe.close_session("r-second")


def test_idle_instance_makes_room_for_a_waiting_session(
    fe: Frontend, probe_log: Path, tmp_path: Path
) -> None:
    """An instance that goes idle, or is idle, while another session's tasks wait for what it
    holds is released for them, without closing its own session."""
    cpus = _cpus(fe)
    fe.create_session("r-idle", PROBE, resreq=_rr(cpus))
    held = _hold(fe, "r-idle", tmp_path / "hold")
    fe.create_session("r-needs", PROBE, resreq=_rr(cpus))
    needs = Watcher(fe, "r-needs", fe.create_task("r-needs", b"pid").metadata.id)
    assert fe.executors("r-needs") == []
    (tmp_path / "hold" / "go").touch()  # r-idle's instance goes idle: it makes room
    assert fe.watch("r-idle", held.metadata.id)[-1].status.state == types_pb2.Succeed
    assert needs.result()[-1].status.state == types_pb2.Succeed
    assert fe.get_session("r-idle").status.state == types_pb2.Open
    # Now r-needs' instance is idle: a new task of r-idle has it released at once.
    assert fe.run("r-idle", b"pid").status.state == types_pb2.Succeed
    assert _order(probe_log, "r-idle", "r-needs") == [
        "enter r-idle",
        "leave r-idle",
        "enter r-needs",
        "leave r-needs",
        "enter r-idle",
    ]
    fe.close_session("r-needs")
    fe.close_session("r-idle")


def test_waiting_session_is_not_starved_by_smaller_ones(
    fe: Frontend, probe_log: Path, tmp_path: Path
) -> None:
    """A session waiting for every cpu with no instance holds back a later session that would
    fit in what is free, so the larger request starts first."""
    cpus = _cpus(fe)
    if cpus < 2:
        pytest.skip("needs a machine with at least 2 cpus")
    fe.create_session("r-small1", PROBE, resreq=_rr(1))
    held = _hold(fe, "r-small1", tmp_path / "hold")
    fe.create_session("r-big", PROBE, resreq=_rr(cpus))
    big = Watcher(fe, "r-big", fe.create_task("r-big", b"pid").metadata.id)
    fe.create_session("r-small2", PROBE, resreq=_rr(1))
    small2 = Watcher(fe, "r-small2", fe.create_task("r-small2", b"pid").metadata.id)
    assert fe.executors("r-big") == [] and fe.executors("r-small2") == []

    (tmp_path / "hold" / "go").touch()
    assert fe.watch("r-small1", held.metadata.id)[-1].status.state == types_pb2.Succeed
    assert big.result()[-1].status.state == types_pb2.Succeed
    assert small2.result()[-1].status.state == types_pb2.Succeed
    assert _order(probe_log, "r-small1", "r-big", "r-small2") == [
        "enter r-small1",
        "leave r-small1",
        "enter r-big",
        "leave r-big",
        "enter r-small2",
    ]
    for sid in ("r-small1", "r-big", "r-small2"):
        fe.close_session(sid)
