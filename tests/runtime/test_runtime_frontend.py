"""Frontend semantics of the embedded runtime (flame-wire §2 with the recommended fixes)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from runtime_support import Frontend

from flame_agents._wire import frontend_pb2 as fpb
from flame_agents._wire import types_pb2
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fe(runtime: LocalRuntime) -> Iterator[Frontend]:
    with Frontend(runtime.endpoint) as frontend:
        assert frontend.register("fe-app").return_code == 0
        yield frontend


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code()


def test_register_fills_defaults(fe: Frontend) -> None:
    """A registered application reads back with max_instances 1_000_000 and delay_release 60."""
    app = fe.stub.GetApplication(fpb.GetApplicationRequest(name="fe-app"))
    assert app.metadata.name == "fe-app"
    assert app.spec.max_instances == 1_000_000
    assert app.spec.delay_release == 60
    assert app.spec.HasField("schema")


def test_register_errors_are_results(fe: Frontend) -> None:
    """Duplicate and invalid names come back as return_code -1 with gRPC OK."""
    dup = fe.register("fe-app")
    assert dup.return_code == -1 and "already exists" in dup.message
    bad = fe.register("../evil")
    assert bad.return_code == -1 and "invalid application name" in bad.message
    gone = fe.stub.UnregisterApplication(fpb.UnregisterApplicationRequest(name="nope"))
    assert gone.return_code == -1


def test_relative_working_directory_is_invalid_argument(fe: Frontend) -> None:
    """A relative working_directory is rejected with INVALID_ARGUMENT."""
    assert (
        _code(lambda: fe.register("fe-rel", working_directory="rel/dir"))
        == grpc.StatusCode.INVALID_ARGUMENT
    )


def test_unknown_application_is_not_found(fe: Frontend) -> None:
    """GetApplication and CreateSession on an unknown application answer NOT_FOUND."""
    assert (
        _code(lambda: fe.stub.GetApplication(fpb.GetApplicationRequest(name="nope")))
        == grpc.StatusCode.NOT_FOUND
    )
    assert _code(lambda: fe.create_session("s-none", "nope")) == grpc.StatusCode.NOT_FOUND


def test_builtin_flmping_is_registered(fe: Frontend) -> None:
    """flmping is pre-registered and echoes task input."""
    names = [
        a.metadata.name for a in fe.stub.ListApplication(fpb.ListApplicationRequest()).applications
    ]
    assert "flmping" in names
    fe.create_session("ping-1", "flmping")
    done = fe.run("ping-1", b"hello")
    assert done.status.state == types_pb2.Succeed and done.spec.output == b"hello"
    fe.close_session("ping-1")


def test_create_session_echoes_resolved_spec(fe: Frontend) -> None:
    """CreateSession forces batch_size 1, echoes the default resreq, and rejects duplicates."""
    s = fe.create_session("fe-s1", "fe-app", batch_size=7, common_data=b"CD")
    assert s.metadata.id == s.metadata.name == "fe-s1"
    assert s.spec.batch_size == 1
    assert (s.spec.resreq.cpu, s.spec.resreq.memory, s.spec.resreq.gpu) == (1, 1024**3, 0)
    assert s.spec.common_data == b"CD"
    assert s.status.state == types_pb2.Open
    assert _code(lambda: fe.create_session("fe-s1", "fe-app")) == grpc.StatusCode.ALREADY_EXISTS
    fe.close_session("fe-s1")


def test_open_session_create_or_get(fe: Frontend) -> None:
    """OpenSession creates a missing session, returns a matching one, names a mismatch."""
    spec = types_pb2.SessionSpec(application="fe-app", min_instances=0)
    made = fe.stub.OpenSession(fpb.OpenSessionRequest(session_id="fe-open", session=spec))
    assert made.metadata.id == "fe-open"
    again = fe.stub.OpenSession(fpb.OpenSessionRequest(session_id="fe-open"))
    assert again.metadata.id == "fe-open"
    other = types_pb2.SessionSpec(application="fe-app", priority=3)
    with pytest.raises(grpc.RpcError) as info:
        fe.stub.OpenSession(fpb.OpenSessionRequest(session_id="fe-open", session=other))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        "session fe-open spec mismatch: priority differs (expected 0, got 3)"
    )
    assert (
        _code(lambda: fe.stub.OpenSession(fpb.OpenSessionRequest(session_id="fe-missing")))
        == grpc.StatusCode.NOT_FOUND
    )
    fe.close_session("fe-open")
    closed = _code(lambda: fe.stub.OpenSession(fpb.OpenSessionRequest(session_id="fe-open")))
    assert closed == grpc.StatusCode.INVALID_ARGUMENT


def test_task_errors(fe: Frontend) -> None:
    """Unknown ids -> NOT_FOUND, a bad task id -> INVALID_ARGUMENT, closed -> PRECONDITION."""
    assert _code(lambda: fe.create_task("fe-nosuch", b"x")) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: fe.get_task("fe-nosuch", "1")) == grpc.StatusCode.NOT_FOUND
    fe.create_session("fe-t", "fe-app")
    assert _code(lambda: fe.get_task("fe-t", "abc")) == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: fe.get_task("fe-t", "9")) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: fe.watch("fe-t", "9")) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: fe.watch("fe-nosuch", "1")) == grpc.StatusCode.NOT_FOUND
    fe.close_session("fe-t")
    assert _code(lambda: fe.create_task("fe-t", b"x")) == grpc.StatusCode.FAILED_PRECONDITION


def test_close_is_idempotent_and_delete_removes(fe: Frontend) -> None:
    """Closing twice succeeds; DeleteSession needs a closed session and then removes it."""
    fe.create_session("fe-del", "fe-app")
    assert (
        _code(lambda: fe.stub.DeleteSession(fpb.DeleteSessionRequest(session_id="fe-del")))
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    fe.close_session("fe-del")
    assert fe.close_session("fe-del").status.state == types_pb2.Closed
    deleted = fe.stub.DeleteSession(fpb.DeleteSessionRequest(session_id="fe-del"))
    assert deleted.metadata.id == "fe-del"
    assert _code(lambda: fe.get_session("fe-del")) == grpc.StatusCode.NOT_FOUND


def test_unregister_refused_with_open_sessions(fe: Frontend) -> None:
    """An application with open sessions cannot be unregistered or updated."""
    assert fe.register("fe-busy").return_code == 0
    fe.create_session("fe-busy-s", "fe-busy")
    res = fe.stub.UnregisterApplication(fpb.UnregisterApplicationRequest(name="fe-busy"))
    assert res.return_code == -1 and "open session" in res.message
    fe.close_session("fe-busy-s")
    ok = fe.stub.UnregisterApplication(fpb.UnregisterApplicationRequest(name="fe-busy"))
    assert ok.return_code == 0


def test_nodes(fe: Frontend) -> None:
    """ListNodes/GetNode describe this machine as one Ready node."""
    nodes = fe.stub.ListNodes(fpb.ListNodesRequest()).nodes
    assert len(nodes) == 1
    node = nodes[0]
    assert node.status.state == types_pb2.Ready and node.status.capacity.cpu >= 1
    got = fe.stub.GetNode(fpb.GetNodeRequest(name=node.metadata.name)).node
    assert got.spec.hostname == node.spec.hostname
    assert (
        _code(lambda: fe.stub.GetNode(fpb.GetNodeRequest(name="other-node")))
        == grpc.StatusCode.NOT_FOUND
    )
