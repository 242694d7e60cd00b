"""Conversion between :mod:`flame_agents.types` and the ``flame.v1`` protobuf messages.

Both directions live here so the client and the runtime agree on every field: optional proto
fields (explicit presence) map to ``None``, wire times are Unix milliseconds and become UTC
datetimes (a zero time means "unset"), and enum numbers map to our IntEnums.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from flame_agents._wire.flame_v1 import types_pb2 as _types_pb2
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

__all__ = [
    "application_from_proto",
    "application_spec_from_proto",
    "application_spec_to_proto",
    "application_to_proto",
    "datetime_to_ms",
    "event_from_proto",
    "event_to_proto",
    "events_from_proto",
    "ms_to_datetime",
    "resreq_from_proto",
    "resreq_to_proto",
    "session_from_proto",
    "session_spec_to_proto",
    "session_to_proto",
    "task_from_proto",
    "task_to_proto",
]

# Typed as Any: the generated stubs want their own enum types where we pass IntEnum numbers.
types_pb2: Any = _types_pb2

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)


def ms_to_datetime(ms: int) -> datetime | None:
    """Wire milliseconds to a UTC datetime; 0 (the proto default) means unset.

    A value outside datetime's range (years 1..9999) from a foreign server is also treated as
    unset: a bad timestamp must not make a whole reply unreadable.
    """
    if not ms:
        return None
    try:
        # Integer timedelta arithmetic: exact, unlike datetime.fromtimestamp(ms / 1000).
        return _EPOCH + ms * _ONE_MS
    except OverflowError:
        return None


def datetime_to_ms(value: datetime | None) -> int:
    """A datetime to wire milliseconds (naive datetimes are taken as UTC); None -> 0."""
    if value is None:
        return 0
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - _EPOCH) // _ONE_MS


def _opt(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def event_to_proto(event: Event) -> Any:
    """An Event to ``flame.v1.Event``."""
    return types_pb2.Event(
        code=event.code,
        message=event.message,
        creation_time=datetime_to_ms(event.creation_time),
    )


def event_from_proto(message: Any) -> Event:
    """A ``flame.v1.Event`` to an Event."""
    return Event(
        code=message.code,
        message=_opt(message, "message"),
        creation_time=ms_to_datetime(message.creation_time),
    )


def events_from_proto(messages: Iterable[Any]) -> tuple[Event, ...]:
    """Repeated ``flame.v1.Event`` to a tuple of Events."""
    return tuple(event_from_proto(m) for m in messages)


def resreq_to_proto(resreq: ResourceRequirement) -> Any:
    """A ResourceRequirement to ``flame.v1.ResourceRequirement``."""
    return types_pb2.ResourceRequirement(cpu=resreq.cpu, memory=resreq.memory, gpu=resreq.gpu)


def resreq_from_proto(message: Any) -> ResourceRequirement:
    """A ``flame.v1.ResourceRequirement`` to a ResourceRequirement (negative gpu -> 0)."""
    # gpu is int32 on the wire; a foreign server could send a negative one, which means none.
    return ResourceRequirement(cpu=message.cpu, memory=message.memory, gpu=max(message.gpu, 0))


def application_spec_to_proto(spec: ApplicationSpec) -> Any:
    """An ApplicationSpec to ``flame.v1.ApplicationSpec`` (unset fields stay absent)."""
    schema = None
    if spec.schema is not None:
        schema = types_pb2.ApplicationSchema(
            input=spec.schema.input,
            output=spec.schema.output,
            common_data=spec.schema.common_data,
        )
    return types_pb2.ApplicationSpec(
        shim=int(spec.shim),
        description=spec.description,
        labels=list(spec.labels),
        image=spec.image,
        command=spec.command,
        arguments=list(spec.arguments),
        environments=[
            types_pb2.Environment(name=name, value=value)
            for name, value in spec.environments.items()
        ],
        working_directory=spec.working_directory,
        max_instances=spec.max_instances,
        delay_release=spec.delay_release,
        schema=schema,
        url=spec.url,
        installer=spec.installer,
    )


def application_spec_from_proto(message: Any) -> ApplicationSpec:
    """A ``flame.v1.ApplicationSpec`` to an ApplicationSpec."""
    schema = None
    if message.HasField("schema"):
        schema = ApplicationSchema(
            input=_opt(message.schema, "input"),
            output=_opt(message.schema, "output"),
            common_data=_opt(message.schema, "common_data"),
        )
    return ApplicationSpec(
        shim=_enum(Shim, message.shim, Shim.HOST),
        description=_opt(message, "description"),
        labels=tuple(message.labels),
        image=_opt(message, "image"),
        command=_opt(message, "command"),
        arguments=tuple(message.arguments),
        environments={env.name: env.value for env in message.environments},
        working_directory=_opt(message, "working_directory"),
        max_instances=_opt(message, "max_instances"),
        delay_release=_opt(message, "delay_release"),
        schema=schema,
        url=_opt(message, "url"),
        installer=_opt(message, "installer"),
    )


def application_to_proto(app: Application) -> Any:
    """An Application to ``flame.v1.Application`` (metadata id and name are both the name)."""
    return types_pb2.Application(
        metadata=types_pb2.Metadata(id=app.name, name=app.name),
        spec=application_spec_to_proto(app.spec),
        status=types_pb2.ApplicationStatus(
            state=int(app.state), creation_time=datetime_to_ms(app.creation_time)
        ),
    )


def application_from_proto(message: Any) -> Application:
    """A ``flame.v1.Application`` to an Application."""
    return Application(
        name=message.metadata.name or message.metadata.id,
        spec=application_spec_from_proto(message.spec),
        state=_enum(ApplicationState, message.status.state, ApplicationState.ENABLED),
        creation_time=ms_to_datetime(message.status.creation_time),
    )


def session_spec_to_proto(
    application: str,
    *,
    common_data: bytes | None = None,
    min_instances: int = 0,
    max_instances: int | None = None,
    priority: int = 0,
    resreq: ResourceRequirement | None = None,
) -> Any:
    """The ``flame.v1.SessionSpec`` of a new session (batch_size is always 1 on Flame)."""
    return types_pb2.SessionSpec(
        application=application,
        common_data=common_data,
        min_instances=min_instances,
        max_instances=max_instances,
        batch_size=1,
        priority=priority,
        resreq=resreq_to_proto(resreq) if resreq is not None else None,
    )


def session_to_proto(info: SessionInfo) -> Any:
    """A SessionInfo to ``flame.v1.Session``."""
    spec = session_spec_to_proto(
        info.application,
        common_data=info.common_data,
        min_instances=info.min_instances,
        max_instances=info.max_instances,
        priority=info.priority,
        resreq=info.resreq,
    )
    status = types_pb2.SessionStatus(
        state=int(info.state),
        creation_time=datetime_to_ms(info.creation_time),
        pending=info.pending,
        running=info.running,
        succeed=info.succeed,
        failed=info.failed,
        cancelled=info.cancelled,
        events=[event_to_proto(e) for e in info.events],
    )
    if info.completion_time is not None:
        status.completion_time = datetime_to_ms(info.completion_time)
    return types_pb2.Session(
        metadata=types_pb2.Metadata(id=info.id, name=info.id), spec=spec, status=status
    )


def session_from_proto(message: Any) -> SessionInfo:
    """A ``flame.v1.Session`` to a SessionInfo (a reply with only ``metadata.id`` is accepted)."""
    spec, status = message.spec, message.status
    return SessionInfo(
        id=message.metadata.id or message.metadata.name,
        application=spec.application,
        state=_enum(SessionState, status.state, SessionState.OPEN),
        creation_time=ms_to_datetime(status.creation_time),
        completion_time=(
            ms_to_datetime(status.completion_time) if status.HasField("completion_time") else None
        ),
        pending=status.pending,
        running=status.running,
        succeed=status.succeed,
        failed=status.failed,
        cancelled=status.cancelled,
        events=events_from_proto(status.events),
        common_data=_opt(spec, "common_data"),
        min_instances=spec.min_instances,
        max_instances=_opt(spec, "max_instances"),
        priority=spec.priority,
        resreq=resreq_from_proto(spec.resreq) if spec.HasField("resreq") else None,
    )


def task_to_proto(task: Task) -> Any:
    """A Task to ``flame.v1.Task``."""
    status = types_pb2.TaskStatus(
        state=int(task.state),
        creation_time=datetime_to_ms(task.creation_time),
        events=[event_to_proto(e) for e in task.events],
    )
    if task.completion_time is not None:
        status.completion_time = datetime_to_ms(task.completion_time)
    return types_pb2.Task(
        metadata=types_pb2.Metadata(id=task.id, name=task.id),
        spec=types_pb2.TaskSpec(session_id=task.session_id, input=task.input, output=task.output),
        status=status,
    )


def task_from_proto(message: Any, *, session_id: str | None = None) -> Task:
    """A ``flame.v1.Task`` to a Task.

    ``session_id`` fills in the session when the server left ``spec.session_id`` empty (flamepy
    does the same: it knows which session it asked about).
    """
    spec, status = message.spec, message.status
    return Task(
        id=message.metadata.id or message.metadata.name,
        session_id=spec.session_id or session_id or "",
        state=_enum(TaskState, status.state, TaskState.PENDING),
        creation_time=ms_to_datetime(status.creation_time),
        completion_time=(
            ms_to_datetime(status.completion_time) if status.HasField("completion_time") else None
        ),
        input=_opt(spec, "input"),
        output=_opt(spec, "output"),
        events=events_from_proto(status.events),
    )


def _enum(enum_type: Any, number: int, default: Any) -> Any:
    # Unknown enum numbers from a newer server should not crash a read; treat them as default.
    try:
        return enum_type(number)
    except ValueError:
        return default
