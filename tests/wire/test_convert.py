"""Round-trips between flame_agents.types and the flame.v1 protos, in both directions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flame_agents._wire import types_pb2
from flame_agents._wire.convert import (
    application_from_proto,
    application_to_proto,
    datetime_to_ms,
    ms_to_datetime,
    resreq_from_proto,
    resreq_to_proto,
    session_from_proto,
    session_to_proto,
    task_from_proto,
    task_to_proto,
)
from flame_agents.types import (
    Application,
    ApplicationSchema,
    ApplicationSpec,
    ApplicationState,
    Event,
    ResourceRequirement,
    SessionInfo,
    SessionState,
    Shim,
    Task,
    TaskState,
)

# Generous limits: these run in CI next to process-heavy e2e tests, where timing varies.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, datetime's limit
times = st.integers(1, MAX_MS).map(lambda ms: EPOCH + timedelta(milliseconds=ms))
opt_times = st.none() | times
opt_text = st.none() | st.text(max_size=20)
uint32 = st.integers(0, 2**32 - 1)
events = st.builds(
    Event, code=st.integers(-(2**31), 2**31 - 1), message=opt_text, creation_time=opt_times
)
resreqs = st.builds(
    ResourceRequirement,
    cpu=st.integers(0, 2**64 - 1),
    memory=st.integers(0, 2**64 - 1),
    gpu=st.integers(0, 2**31 - 1),
)
schemas = st.builds(ApplicationSchema, input=opt_text, output=opt_text, common_data=opt_text)
app_specs = st.builds(
    ApplicationSpec,
    shim=st.sampled_from(Shim),
    description=opt_text,
    labels=st.lists(st.text(max_size=8), max_size=3).map(tuple),
    image=opt_text,
    command=opt_text,
    arguments=st.lists(st.text(max_size=8), max_size=3).map(tuple),
    environments=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    working_directory=opt_text,
    max_instances=st.none() | uint32,
    delay_release=st.none() | st.integers(0, 2**63 - 1),
    schema=st.none() | schemas,
    url=opt_text,
    installer=opt_text,
)
ids = st.text(min_size=1, max_size=12)
sessions = st.builds(
    SessionInfo,
    id=ids,
    application=st.text(max_size=12),
    state=st.sampled_from(SessionState),
    creation_time=opt_times,
    completion_time=opt_times,
    pending=st.integers(0, 2**31 - 1),
    running=st.integers(0, 2**31 - 1),
    succeed=st.integers(0, 2**31 - 1),
    failed=st.integers(0, 2**31 - 1),
    cancelled=st.integers(0, 2**31 - 1),
    events=st.lists(events, max_size=3).map(tuple),
    common_data=st.none() | st.binary(max_size=32),
    min_instances=uint32,
    max_instances=st.none() | uint32,
    priority=uint32,
    resreq=st.none() | resreqs,
)
tasks = st.builds(
    Task,
    id=ids,
    session_id=ids,
    state=st.sampled_from(TaskState),
    creation_time=opt_times,
    completion_time=opt_times,
    input=st.none() | st.binary(max_size=32),
    output=st.none() | st.binary(max_size=32),
    events=st.lists(events, max_size=3).map(tuple),
)
applications = st.builds(
    Application,
    name=ids,
    spec=app_specs,
    state=st.sampled_from(ApplicationState),
    creation_time=opt_times,
)


@RELAXED
@given(opt_times)
def test_times_round_trip_exactly(value: datetime | None) -> None:
    """Millisecond datetimes survive the wire's int64 milliseconds without float error."""
    assert ms_to_datetime(datetime_to_ms(value)) == value


@RELAXED
@given(resreqs)
def test_resreq_round_trip(value: ResourceRequirement) -> None:
    """ResourceRequirement -> proto -> ResourceRequirement is the identity."""
    assert resreq_from_proto(resreq_to_proto(value)) == value


@RELAXED
@given(sessions)
def test_session_round_trip(value: SessionInfo) -> None:
    """SessionInfo -> proto (and through bytes) -> SessionInfo is the identity."""
    proto = session_to_proto(value)
    wire = types_pb2.Session.FromString(proto.SerializeToString())
    assert session_from_proto(wire) == value


@RELAXED
@given(tasks)
def test_task_round_trip(value: Task) -> None:
    """Task -> proto (and through bytes) -> Task is the identity."""
    wire = types_pb2.Task.FromString(task_to_proto(value).SerializeToString())
    assert task_from_proto(wire) == value


@RELAXED
@given(applications)
def test_application_round_trip(value: Application) -> None:
    """Application -> proto (and through bytes) -> Application is the identity."""
    wire = types_pb2.Application.FromString(application_to_proto(value).SerializeToString())
    assert application_from_proto(wire) == value


@RELAXED
@given(tasks)
def test_task_proto_round_trip(value: Task) -> None:
    """proto -> Task -> proto gives the same bytes (the reverse direction)."""
    proto = task_to_proto(value)
    assert task_to_proto(task_from_proto(proto)) == proto


def test_minimal_session_reply_is_accepted() -> None:
    """A Session reply carrying only metadata.id converts (Flame clients tolerate it)."""
    info = session_from_proto(types_pb2.Session(metadata=types_pb2.Metadata(id="s-1")))
    assert info.id == "s-1"
    assert info.state is SessionState.OPEN
    assert info.resreq is None and info.common_data is None and info.max_instances is None


def test_task_session_id_falls_back_to_the_asked_session() -> None:
    """A task whose spec lacks session_id takes the session the caller asked about."""
    task = task_from_proto(types_pb2.Task(metadata=types_pb2.Metadata(id="1")), session_id="s")
    assert task.session_id == "s"


def test_out_of_range_times_become_unset() -> None:
    """A wire time beyond datetime's range converts to None instead of raising."""
    assert ms_to_datetime(2**63 - 1) is None


def test_unknown_enum_numbers_do_not_crash() -> None:
    """An enum number from a newer server maps to the default instead of raising."""
    proto = types_pb2.Application(metadata=types_pb2.Metadata(name="a"))
    proto.status.state = 7
    assert application_from_proto(proto).state is ApplicationState.ENABLED
