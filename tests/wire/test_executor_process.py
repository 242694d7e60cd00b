"""The executor-process extension: pid and start time ride in a field Flame's Executor lacks."""

from __future__ import annotations

from flamepy.proto import types_pb2 as flamepy_types
from hypothesis import given
from hypothesis import strategies as st

from flame_agents._wire import types_pb2
from flame_agents._wire.executor_process import (
    ExecutorProcess,
    add_executor_process,
    executor_process,
)


def _executor() -> types_pb2.Executor:
    return types_pb2.Executor(
        metadata=types_pb2.Metadata(id="e-1", name="e-1"),
        spec=types_pb2.ExecutorSpec(node="n"),
        status=types_pb2.ExecutorStatus(state=4, session_id="s-1"),  # type: ignore[arg-type]
    )


@given(st.integers(1, 2**32), st.integers(0, 2**63 - 1))
def test_process_round_trips_through_the_wire(pid: int, start: int) -> None:
    """An Executor with the process, serialized and parsed again, gives the same pid and time."""
    msg = _executor()
    add_executor_process(msg, ExecutorProcess(pid=pid, start_time=start))
    parsed = types_pb2.ExecutorList.FromString(
        types_pb2.ExecutorList(executors=[msg]).SerializeToString()
    ).executors[0]
    assert executor_process(parsed) == ExecutorProcess(pid=pid, start_time=start)
    assert parsed.metadata.id == "e-1" and parsed.status.session_id == "s-1"


def test_flamepy_parses_an_executor_carrying_the_process() -> None:
    """flamepy's own generated Executor reads the message with every Flame field intact."""
    msg = _executor()
    add_executor_process(msg, ExecutorProcess(pid=4242, start_time=1_700_000_000_000))
    theirs = flamepy_types.Executor.FromString(msg.SerializeToString())
    assert theirs.metadata.id == "e-1"
    assert theirs.spec.node == "n"
    assert theirs.status.state == 4 and theirs.status.session_id == "s-1"


def test_an_executor_without_the_field_has_no_process() -> None:
    """A Flame cluster's Executor (no field 1000) or a malformed one gives None."""
    assert executor_process(_executor()) is None
    broken = _executor()
    broken.MergeFromString(b"\xc2\x3e\x02\xff\xff")  # field 1000, a body that is not a message
    assert executor_process(broken) is None
