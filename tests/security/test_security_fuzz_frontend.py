"""Hostile input to the Frontend: every RPC with generated fields gets OK or a clear error,
the runtime keeps serving, and no file appears outside its home."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security_support import FUZZ_EXAMPLES, FUZZ_TIMEOUT, MIB, frontend_healthy, raw_frontend, tree

from flame_agents._wire import frontend_pb2 as fpb
from flame_agents._wire import frontend_pb2_grpc, types_pb2
from flame_agents.testing import LocalRuntime

CLEAR = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
"""Codes a hostile request may get; anything else (UNKNOWN, INTERNAL, UNAVAILABLE) is a bug."""

TRICKY = [
    "",
    ".",
    "..",
    "../x",
    "../../etc/passwd",
    "a/b",
    "/abs",
    "a\\b",
    "a\x00b",
    "\x00",
    "x\n",
    "x" * 253,
    "x" * 254,
    "s" * 513,
    "é" * 300,
    "*",
    "flmping",
    "1",
    "-1",
    "18446744073709551616",
]

texts = st.one_of(
    st.sampled_from(TRICKY),
    st.text(max_size=40),
    st.text(min_size=2000, max_size=6000),
)
uint32s = st.one_of(st.sampled_from([0, 1, 2**32 - 1]), st.integers(0, 2**32 - 1))
blobs = st.one_of(st.none(), st.binary(max_size=64), st.sampled_from([b"", b"\x00" * 4096]))

resreqs = st.builds(
    types_pb2.ResourceRequirement,
    cpu=st.integers(0, 2**64 - 1),
    memory=st.integers(0, 2**64 - 1),
    gpu=st.integers(-(2**31), 2**31 - 1),
)

pytestmark = pytest.mark.timeout(FUZZ_TIMEOUT)


@st.composite
def session_specs(draw: st.DrawFn) -> types_pb2.SessionSpec:
    spec = types_pb2.SessionSpec(
        application=draw(st.one_of(st.just("flmping"), texts)),
        min_instances=draw(st.sampled_from([0, 1, 2**32 - 1])),
        priority=draw(uint32s),
    )
    if draw(st.booleans()):
        spec.max_instances = draw(st.sampled_from([0, 1, 2**32 - 1]))
    if draw(st.booleans()):
        spec.resreq.CopyFrom(draw(resreqs))
    data = draw(blobs)
    if data is not None:
        spec.common_data = data
    return spec


@st.composite
def app_specs(draw: st.DrawFn) -> types_pb2.ApplicationSpec:
    spec = types_pb2.ApplicationSpec(
        shim=draw(st.sampled_from([0, 1, 7, 2**31 - 1, -1])),
        labels=draw(st.lists(texts, max_size=3)),
        arguments=draw(st.lists(texts, max_size=3)),
        environments=[
            types_pb2.Environment(name=n, value=v)
            for n, v in draw(st.lists(st.tuples(texts, texts), max_size=2))
        ],
    )
    for name in ("command", "working_directory", "description", "url", "image", "installer"):
        if draw(st.booleans()):
            setattr(spec, name, draw(texts))
    if draw(st.booleans()):
        spec.max_instances = draw(uint32s)
    if draw(st.booleans()):
        spec.delay_release = draw(st.integers(-(2**63), 2**63 - 1))
    if draw(st.booleans()):
        spec.schema.input = draw(texts)
    return spec


def requests() -> st.SearchStrategy[tuple[str, Any]]:
    """(method, request) pairs covering every Frontend RPC."""
    name = st.one_of(st.just("flmping"), texts)
    sid = st.one_of(st.just(OPEN_SESSION), texts)
    task_ids = st.one_of(texts, st.integers(-(2**70), 2**70).map(str), st.sampled_from(["1", "+1"]))
    task = st.builds(
        types_pb2.TaskSpec, session_id=sid, input=st.one_of(st.binary(max_size=64), st.just(b""))
    )
    return st.one_of(
        st.tuples(
            st.just("RegisterApplication"),
            st.builds(fpb.RegisterApplicationRequest, name=name, application=app_specs()),
        ),
        st.tuples(
            st.just("UpdateApplication"),
            st.builds(fpb.UpdateApplicationRequest, name=name, application=app_specs()),
        ),
        st.tuples(
            st.just("UnregisterApplication"),
            st.builds(fpb.UnregisterApplicationRequest, name=texts),
        ),
        st.tuples(st.just("GetApplication"), st.builds(fpb.GetApplicationRequest, name=name)),
        st.tuples(st.just("ListApplication"), st.just(fpb.ListApplicationRequest())),
        st.tuples(st.just("ListExecutor"), st.just(fpb.ListExecutorRequest())),
        st.tuples(st.just("ListNodes"), st.just(fpb.ListNodesRequest())),
        st.tuples(st.just("GetNode"), st.builds(fpb.GetNodeRequest, name=texts)),
        st.tuples(
            st.just("CreateSession"),
            st.builds(fpb.CreateSessionRequest, session_id=sid, session=session_specs()),
        ),
        st.tuples(
            st.just("OpenSession"),
            st.one_of(
                st.builds(fpb.OpenSessionRequest, session_id=sid, session=session_specs()),
                st.builds(fpb.OpenSessionRequest, session_id=sid),
            ),
        ),
        st.tuples(st.just("CloseSession"), st.builds(fpb.CloseSessionRequest, session_id=sid)),
        st.tuples(st.just("DeleteSession"), st.builds(fpb.DeleteSessionRequest, session_id=sid)),
        st.tuples(st.just("GetSession"), st.builds(fpb.GetSessionRequest, session_id=sid)),
        st.tuples(st.just("ListSession"), st.just(fpb.ListSessionRequest())),
        st.tuples(st.just("CreateTask"), st.builds(fpb.CreateTaskRequest, task=task)),
        st.tuples(
            st.just("GetTask"), st.builds(fpb.GetTaskRequest, session_id=sid, task_id=task_ids)
        ),
        st.tuples(
            st.just("WatchTask"), st.builds(fpb.WatchTaskRequest, session_id=sid, task_id=task_ids)
        ),
        st.tuples(st.just("ListTask"), st.builds(fpb.ListTaskRequest, session_id=sid)),
    )


STREAMING = {"WatchTask", "ListTask"}
OPEN_SESSION = "fz-open"
"""A session that exists, so task lookups get past the session check."""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Path]:
    """A folder that holds only the runtime's home; anything else appearing in it is a leak."""
    root = Path(tempfile.mkdtemp(prefix="flame-agents-fuzz-")).resolve()
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def target(sandbox: Path) -> Iterator[tuple[LocalRuntime, frontend_pb2_grpc.FrontendStub]]:
    """A runtime capped at two instances (fuzzed sessions may ask for billions) and a raw stub."""
    with LocalRuntime(sandbox / "home", set_env=False, extra_args=["--max-instances", "2"]) as rt:
        channel, stub = raw_frontend(rt.endpoint)
        with channel:
            spec = types_pb2.SessionSpec(application="flmping")
            stub.CreateSession(
                fpb.CreateSessionRequest(session_id=OPEN_SESSION, session=spec), timeout=30
            )
            yield rt, stub


def _call(stub: frontend_pb2_grpc.FrontendStub, method: str, request: Any) -> None:
    # A watch of a task that could run for long is bounded; the deadline is not an error here.
    try:
        # A watched task may wait behind fuzzed sessions holding both instance slots: a short
        # deadline bounds the wait (its expiry is not a failure).
        reply = getattr(stub, method)(request, timeout=2 if method == "WatchTask" else 20)
        if method in STREAMING:
            for _ in reply:
                pass
    except grpc.RpcError as exc:
        code = exc.code()
        if method == "WatchTask" and code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return
        assert code in CLEAR, f"{method}: {code} {exc.details()!r}"
        assert exc.details(), f"{method}: {code} without a message"
        assert len(exc.details() or "") < 2000, f"{method}: message echoes the whole input"


@settings(
    max_examples=FUZZ_EXAMPLES * 5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(batch=st.lists(requests(), min_size=1, max_size=4))
def test_frontend_answers_every_hostile_request(
    target: tuple[LocalRuntime, frontend_pb2_grpc.FrontendStub], batch: list[tuple[str, Any]]
) -> None:
    """Every generated request gets OK or a clear status with a short message, and the Frontend
    answers a health check after each batch."""
    _, stub = target
    for method, request in batch:
        _call(stub, method, request)
    assert frontend_healthy(stub)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None)
@given(
    method=st.sampled_from(["GetSession", "CreateSession", "WatchTask", "RegisterApplication"]),
    payload=st.binary(max_size=200),
)
def test_frontend_refuses_garbage_bytes(
    target: tuple[LocalRuntime, frontend_pb2_grpc.FrontendStub], method: str, payload: bytes
) -> None:
    """Raw bytes that are not the method's message get INVALID_ARGUMENT (or parse as a valid
    message and get a normal answer), never UNKNOWN."""
    rt, stub = target
    channel, _ = raw_frontend(rt.endpoint)
    with channel:
        path = f"/flame.v1.Frontend/{method}"
        call = channel.unary_stream(path) if method == "WatchTask" else channel.unary_unary(path)
        try:
            reply = call(payload, timeout=20)
            if method == "WatchTask":
                list(reply)
        except grpc.RpcError as exc:
            assert exc.code() in CLEAR | {grpc.StatusCode.DEADLINE_EXCEEDED}, exc.details()
    assert frontend_healthy(stub)


def test_session_id_rules(target: tuple[LocalRuntime, frontend_pb2_grpc.FrontendStub]) -> None:
    """Traversal, separators, NUL and over-long session ids are refused with INVALID_ARGUMENT
    that names the rule or the limit."""
    _, stub = target
    spec = types_pb2.SessionSpec(application="flmping")
    for sid, words in [
        ("../x", "'..'"),
        ("a/b", "'/'"),
        ("a\x00b", "NUL"),
        ("a\\b", "'\\'"),
        ("s" * 513, "limit is 512 bytes"),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            stub.CreateSession(fpb.CreateSessionRequest(session_id=sid, session=spec), timeout=20)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in (info.value.details() or "")


def test_task_id_rules(target: tuple[LocalRuntime, frontend_pb2_grpc.FrontendStub]) -> None:
    """Task ids outside a 64-bit integer, or not ASCII digits, get INVALID_ARGUMENT; in range but
    unknown ones get NOT_FOUND."""
    _, stub = target
    for task_id in ["9223372036854775808", "1" * 40, " 1", "1_0", "\u0661", "x"]:
        with pytest.raises(grpc.RpcError) as info:
            stub.GetTask(fpb.GetTaskRequest(session_id=OPEN_SESSION, task_id=task_id), timeout=20)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, task_id
        assert "64-bit integer" in (info.value.details() or "")
    for task_id in ["-9223372036854775808", "0", "9223372036854775807"]:
        with pytest.raises(grpc.RpcError) as info:
            stub.GetTask(fpb.GetTaskRequest(session_id=OPEN_SESSION, task_id=task_id), timeout=20)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND, task_id


def test_application_spec_rules(
    target: tuple[LocalRuntime, frontend_pb2_grpc.FrontendStub],
) -> None:
    """An unknown shim, NUL in argv or a negative delay_release is refused at registration."""
    _, stub = target
    bad = [
        (types_pb2.ApplicationSpec(shim=42, command="x"), "unknown shim 42"),
        (types_pb2.ApplicationSpec(command="x\x00y"), "NUL"),
        (types_pb2.ApplicationSpec(command="x", arguments=["a\x00"]), "NUL"),
        (types_pb2.ApplicationSpec(command="x", delay_release=-1), "delay_release"),
    ]
    for spec, words in bad:
        with pytest.raises(grpc.RpcError) as info:
            stub.RegisterApplication(
                fpb.RegisterApplicationRequest(name="fuzz-bad", application=spec), timeout=20
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in (info.value.details() or "")


def test_message_size_limit(target: tuple[LocalRuntime, frontend_pb2_grpc.FrontendStub]) -> None:
    """A task input over the 64 MiB default gets RESOURCE_EXHAUSTED naming the limit."""
    _, stub = target
    task = types_pb2.TaskSpec(session_id="none", input=b"x" * (64 * MIB + 1))
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateTask(fpb.CreateTaskRequest(task=task), timeout=60)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(64 * MIB) in (info.value.details() or "")
    assert frontend_healthy(stub)


def test_no_file_outside_home(
    sandbox: Path, target: tuple[LocalRuntime, frontend_pb2_grpc.FrontendStub]
) -> None:
    """After the fuzzing, the sandbox holds the home and nothing else."""
    _, stub = target
    assert frontend_healthy(stub)
    assert {p.name for p in sandbox.iterdir()} == {"home"}
    assert not any(".." in part for part in tree(sandbox))
