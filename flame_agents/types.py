"""Plain data types shared by the client, the runtime and the service layer (no gRPC here).

The shapes follow the Flame 0.6 wire (see ``flame_agents._wire.convert`` for the protobuf side)
and the names users know from flamepy: ``TaskState.SUCCEED``, ``ResourceRequirement.from_string``,
``Task.is_completed()``. Times are timezone-aware UTC datetimes (the wire carries milliseconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import IntEnum
from typing import Any

from flame_agents.errors import InvalidArgumentError

__all__ = [
    "Application",
    "ApplicationSchema",
    "ApplicationSpec",
    "ApplicationState",
    "Event",
    "ResourceRequirement",
    "SessionInfo",
    "SessionState",
    "Shim",
    "Task",
    "TaskState",
]

_UINT64_MAX = 2**64 - 1
_INT32_MAX = 2**31 - 1
_UINT32_MAX = 2**32 - 1
_INT64_MAX = 2**63 - 1


class SessionState(IntEnum):
    """Lifecycle of a session: open sessions accept tasks, closed ones never again."""

    OPEN = 0
    CLOSED = 1


class TaskState(IntEnum):
    """Lifecycle of a task. SUCCEED, FAILED and CANCELLED are terminal."""

    PENDING = 0
    RUNNING = 1
    SUCCEED = 2
    FAILED = 3
    CANCELLED = 4

    @property
    def is_terminal(self) -> bool:
        """True for states a task never leaves (SUCCEED, FAILED, CANCELLED)."""
        return self >= TaskState.SUCCEED


class Shim(IntEnum):
    """How an application's instances are launched (only HOST is supported by the runtime)."""

    HOST = 0
    WASM = 1


class ApplicationState(IntEnum):
    """Whether an application accepts new sessions (Flame always reports ENABLED)."""

    ENABLED = 0
    DISABLED = 1


@dataclass(frozen=True)
class Event:
    """Something that happened to a task or session.

    Task events use the task state as ``code`` (3 = failed, with the service's error text);
    session events use 1001 (an instance failed to bind) and 1002 (bind retry limit reached).
    """

    code: int
    """Event code: a TaskState number for task events, 1001/1002 for session events."""
    message: str | None = None
    """Human-readable text; for a failed task, the service's error message."""
    creation_time: datetime | None = None
    """When the event was recorded (UTC)."""


# Binary multipliers, exactly flamepy's (and flmctl's) memory grammar: every suffix is 1024^n.
_MEMORY_UNITS: dict[str, int] = {}
for _power, _letter in enumerate("kmgtp", start=1):
    for _suffix in (_letter, f"{_letter}b", f"{_letter}i", f"{_letter}ib"):
        _MEMORY_UNITS[_suffix] = 1024**_power
# Longest suffix first so "kib" is not read as "b"-less "ki" + garbage.
_SUFFIXES_LONGEST_FIRST = sorted(_MEMORY_UNITS, key=len, reverse=True)


def _parse_int(text: str, *, what: str, entry: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise InvalidArgumentError(
            f"invalid {what} in resource requirement entry {entry!r}: expected an integer",
            entry=entry,
        ) from exc
    return value


def _parse_memory(text: str, *, entry: str) -> int:
    lowered = text.lower().strip()
    for suffix in _SUFFIXES_LONGEST_FIRST:
        if lowered.endswith(suffix):
            number = _parse_int(lowered[: -len(suffix)], what="memory size", entry=entry)
            return number * _MEMORY_UNITS[suffix]
    return _parse_int(lowered, what="memory size", entry=entry)


@dataclass(frozen=True)
class ResourceRequirement:
    """Resources one instance of a session needs: CPUs, memory in bytes, GPUs.

    Build one from flamepy's string form (``ResourceRequirement.from_string("cpu=2,mem=4g")``),
    from a mapping (``from_dict({"cpu": 2, "memory": "4g"})``), or let :meth:`coerce` accept any
    of them.
    """

    cpu: int = 0
    """Number of CPUs."""
    memory: int = 0
    """Memory in bytes."""
    gpu: int = 0
    """Number of GPUs."""

    def __post_init__(self) -> None:
        # The wire types are uint64/uint64/int32; reject what cannot be sent instead of letting
        # protobuf fail later with a less helpful message.
        for name, limit in (("cpu", _UINT64_MAX), ("memory", _UINT64_MAX), ("gpu", _INT32_MAX)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgumentError(
                    f"resource requirement {name} must be an integer, got {value!r}", field=name
                )
            if not 0 <= value <= limit:
                raise InvalidArgumentError(
                    f"resource requirement {name}={value} is out of range (0..{limit})", field=name
                )

    @classmethod
    def from_string(cls, text: str) -> ResourceRequirement:
        """Parse ``"cpu=N,mem=SIZE,gpu=N"`` (flamepy/flmctl grammar).

        Keys are case-insensitive: ``cpu``, ``mem`` or ``memory``, ``gpu``; each is optional and
        the last occurrence wins. Memory takes binary suffixes ``k``, ``m``, ``g``, ``t``, ``p``
        with optional ``b``/``i``/``ib`` (``4g`` == ``4GiB`` == 4 * 1024**3); a bare number is
        bytes. Raises :class:`InvalidArgumentError` (a ``ValueError``) naming the bad entry.
        """
        if not isinstance(text, str):
            raise InvalidArgumentError(
                f"resource requirement must be a string like 'cpu=2,mem=4g', got {text!r}"
            )
        if not text.strip():
            raise InvalidArgumentError(
                "resource requirement cannot be empty; use e.g. 'cpu=2,mem=4g,gpu=0'"
            )
        values = {"cpu": 0, "memory": 0, "gpu": 0}
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                raise InvalidArgumentError(
                    f"empty entry in resource requirement {text!r} (stray comma?)", entry=entry
                )
            key, sep, value = entry.partition("=")
            if not sep or "=" in value:
                raise InvalidArgumentError(
                    f"invalid resource requirement entry {entry!r}: expected key=value",
                    entry=entry,
                )
            key = key.strip().lower()
            value = value.strip()
            if not value:
                raise InvalidArgumentError(
                    f"missing value in resource requirement entry {entry!r}", entry=entry
                )
            if key == "cpu":
                values["cpu"] = _parse_int(value, what="cpu count", entry=entry)
            elif key in ("mem", "memory"):
                values["memory"] = _parse_memory(value, entry=entry)
            elif key == "gpu":
                values["gpu"] = _parse_int(value, what="gpu count", entry=entry)
            else:
                raise InvalidArgumentError(
                    f"unknown key {key!r} in resource requirement entry {entry!r} "
                    "(expected cpu, mem/memory or gpu)",
                    entry=entry,
                )
        return cls(**values)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResourceRequirement:
        """Build from ``{"cpu": 2, "memory": "4g", "gpu": 0}``.

        ``memory`` (or ``mem``) is an int of bytes or a size string with a suffix; ``cpu`` and
        ``gpu`` are ints (or decimal strings). Missing keys are 0; unknown keys are an error.
        """
        if not isinstance(data, Mapping):
            raise InvalidArgumentError(f"resource requirement must be a mapping, got {data!r}")
        values = {"cpu": 0, "memory": 0, "gpu": 0}
        for raw_key, value in data.items():
            key = str(raw_key).lower()
            entry = f"{raw_key}={value!r}"
            if key in ("mem", "memory"):
                key = "memory"
            elif key not in ("cpu", "gpu"):
                raise InvalidArgumentError(
                    f"unknown resource requirement key {raw_key!r} (expected cpu, memory, gpu)",
                    entry=entry,
                )
            if isinstance(value, bool):
                raise InvalidArgumentError(
                    f"resource requirement {key} must be a number, got {value!r}", entry=entry
                )
            if isinstance(value, int):
                values[key] = value
            elif isinstance(value, str) and key == "memory":
                values[key] = _parse_memory(value, entry=entry)
            elif isinstance(value, str):
                values[key] = _parse_int(value.strip(), what=f"{key} count", entry=entry)
            else:
                raise InvalidArgumentError(
                    f"resource requirement {key} must be an int"
                    + (" or a size string like '4g'" if key == "memory" else "")
                    + f", got {value!r}",
                    entry=entry,
                )
        return cls(**values)

    @classmethod
    def coerce(
        cls, value: ResourceRequirement | str | Mapping[str, Any] | None
    ) -> ResourceRequirement | None:
        """Accept ``None``, a ResourceRequirement, its string form or a mapping."""
        if value is None or isinstance(value, ResourceRequirement):
            return value
        if isinstance(value, str):
            return cls.from_string(value)
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        # Duck-type flamepy's own ResourceRequirement (and similar) so users can pass one as is.
        if all(hasattr(value, name) for name in ("cpu", "memory", "gpu")):
            return cls(cpu=value.cpu, memory=value.memory, gpu=value.gpu)
        raise InvalidArgumentError(
            "resreq must be a ResourceRequirement, a string like 'cpu=2,mem=4g', "
            f"or a mapping like {{'cpu': 2, 'memory': '4g'}}; got {value!r}"
        )

    def to_string(self) -> str:
        """The string form :meth:`from_string` reads back, memory in the largest exact unit."""
        memory = str(self.memory)
        for letter, power in (("p", 5), ("t", 4), ("g", 3), ("m", 2), ("k", 1)):
            unit = 1024**power
            if self.memory and self.memory % unit == 0:
                memory = f"{self.memory // unit}{letter}"
                break
        return f"cpu={self.cpu},mem={memory},gpu={self.gpu}"

    def __str__(self) -> str:
        return self.to_string()


@dataclass(frozen=True)
class ApplicationSchema:
    """JSON-Schema texts describing an application's input, output and common data."""

    input: str | None = None
    """JSON Schema of task input."""
    output: str | None = None
    """JSON Schema of task output."""
    common_data: str | None = None
    """JSON Schema of the session's common data."""


_SHIM_NAMES = {"host": Shim.HOST, "wasm": Shim.WASM}


def _coerce_shim(value: Any) -> Shim:
    if isinstance(value, Shim):
        return value
    if isinstance(value, str) and value.lower() in _SHIM_NAMES:
        return _SHIM_NAMES[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return Shim(value)
    # flamepy's own Shim enum (or any enum) carries the number in .value.
    if isinstance(getattr(value, "value", None), int) and value.value in (0, 1):
        return Shim(value.value)
    raise InvalidArgumentError(f"shim must be 'host' or 'wasm', got {value!r}", field="shim")


def _coerce_schema(value: Any) -> ApplicationSchema | None:
    if value is None or isinstance(value, ApplicationSchema):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - {"input", "output", "common_data"}
        if unknown:
            raise InvalidArgumentError(
                f"unknown schema keys {sorted(unknown)} (expected input, output, common_data)",
                field="schema",
            )
        return ApplicationSchema(**value)
    if all(hasattr(value, name) for name in ("input", "output", "common_data")):
        return ApplicationSchema(value.input, value.output, value.common_data)
    raise InvalidArgumentError(f"schema must be a mapping, got {value!r}", field="schema")


@dataclass(frozen=True)
class ApplicationSpec:
    """How to launch an application's service process (Flame's ApplicationSpec).

    Field names are flamepy's ``ApplicationAttributes``; :meth:`from_dict` accepts such a dict.
    """

    shim: Shim = Shim.HOST
    """Launcher kind; only HOST runs processes."""
    description: str | None = None
    """Free text for people."""
    labels: tuple[str, ...] = ()
    """Free-form labels."""
    image: str | None = None
    """Container image (unused by the host shim)."""
    command: str | None = None
    """Executable to run; ``$VAR``/``${VAR}`` are expanded."""
    arguments: tuple[str, ...] = ()
    """Arguments to ``command``."""
    environments: dict[str, str] = field(default_factory=dict)
    """Extra environment variables of the service process."""
    working_directory: str | None = None
    """Absolute working directory of the service process."""
    max_instances: int | None = None
    """Upper bound of instances (stored, not enforced by Flame's scheduler)."""
    delay_release: int | None = None
    """Seconds an idle instance waits for more tasks before it is released."""
    schema: ApplicationSchema | None = None
    """JSON Schemas of input/output/common data."""
    url: str | None = None
    """Where to fetch the application package from."""
    installer: str | None = None
    """Package installer (``python`` or ``binary``)."""

    def __post_init__(self) -> None:
        # Checked here so a bad value fails with our error, not protobuf's range ValueError.
        for name, limit in (("max_instances", _UINT32_MAX), ("delay_release", _INT64_MAX)):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
                raise InvalidArgumentError(
                    f"application spec {name} must be an integer in 0..{limit}, got {value!r}",
                    field=name,
                )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApplicationSpec:
        """Build from a mapping with flamepy's ``ApplicationAttributes`` field names.

        ``shim`` may be ``"host"``/``"wasm"`` (any case) or a number; ``schema`` a mapping;
        ``None`` values mean "unset". Unknown keys are an error so typos do not pass silently.
        """
        if not isinstance(data, Mapping):
            raise InvalidArgumentError(f"application spec must be a mapping, got {data!r}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidArgumentError(
                f"unknown application spec keys {sorted(unknown)} (expected some of "
                f"{sorted(known)})",
                keys=sorted(unknown),
            )
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if v is not None}
        if "shim" in kwargs:
            kwargs["shim"] = _coerce_shim(kwargs["shim"])
        if "schema" in kwargs:
            kwargs["schema"] = _coerce_schema(kwargs["schema"])
        for name in ("labels", "arguments"):
            if name in kwargs:
                if isinstance(kwargs[name], str):
                    raise InvalidArgumentError(
                        f"application spec {name} must be a list of strings, not one string",
                        field=name,
                    )
                kwargs[name] = tuple(str(item) for item in kwargs[name])
        if "environments" in kwargs:
            envs = kwargs["environments"]
            if not isinstance(envs, Mapping):
                raise InvalidArgumentError(
                    f"application spec environments must be a mapping, got {envs!r}",
                    field="environments",
                )
            kwargs["environments"] = {str(k): str(v) for k, v in envs.items()}
        return cls(**kwargs)

    @classmethod
    def coerce(cls, value: ApplicationSpec | Mapping[str, Any] | Any) -> ApplicationSpec:
        """Accept an ApplicationSpec, a mapping, or an object with the same attributes
        (such as flamepy's ``ApplicationAttributes``)."""
        if isinstance(value, ApplicationSpec):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        names = [f.name for f in fields(cls)]
        if all(hasattr(value, name) for name in names):
            return cls.from_dict({name: getattr(value, name) for name in names})
        raise InvalidArgumentError(
            f"application spec must be an ApplicationSpec or a mapping, got {value!r}"
        )


@dataclass(frozen=True)
class Application:
    """A registered application, as the Frontend reports it."""

    name: str
    """Unique application name."""
    spec: ApplicationSpec
    """How its service process is launched."""
    state: ApplicationState = ApplicationState.ENABLED
    """Always ENABLED on Flame 0.6."""
    creation_time: datetime | None = None
    """When it was registered (UTC)."""


@dataclass(frozen=True)
class SessionInfo:
    """A snapshot of a session: spec, state, task counters and session events."""

    id: str
    """Session id (chosen by the client)."""
    application: str
    """Name of the application serving the session."""
    state: SessionState = SessionState.OPEN
    """OPEN or CLOSED."""
    creation_time: datetime | None = None
    """When the session was created (UTC)."""
    completion_time: datetime | None = None
    """When the session was closed (UTC), if it is."""
    pending: int = 0
    """Number of pending tasks."""
    running: int = 0
    """Number of running tasks."""
    succeed: int = 0
    """Number of succeeded tasks."""
    failed: int = 0
    """Number of failed tasks."""
    cancelled: int = 0
    """Number of cancelled tasks (pending when the session closed)."""
    events: tuple[Event, ...] = ()
    """Session events (1001 bind failure, 1002 retry limit reached)."""
    common_data: bytes | None = None
    """Opaque bytes handed to every instance of the session."""
    min_instances: int = 0
    """Instances kept warm even without tasks."""
    max_instances: int | None = None
    """Upper bound of concurrent instances; ``None`` = unlimited."""
    priority: int = 0
    """Scheduling priority, higher first."""
    resreq: ResourceRequirement | None = None
    """Resources per instance (the runtime echoes the resolved value)."""


_FAILED_EVENT = int(TaskState.FAILED)


@dataclass(frozen=True)
class Task:
    """A task of a session: its input, output once done, state and events."""

    id: str
    """Task id: a decimal string, sequential per session starting at "1"."""
    session_id: str
    """The session the task belongs to."""
    state: TaskState = TaskState.PENDING
    """Current state."""
    creation_time: datetime | None = None
    """When the task was created (UTC)."""
    completion_time: datetime | None = None
    """When the task reached a terminal state (UTC)."""
    input: bytes | None = None
    """Input bytes as given to ``create_task``."""
    output: bytes | None = None
    """Output bytes of the service (``None`` when it returned nothing)."""
    events: tuple[Event, ...] = ()
    """Task events; a failed task carries code 3 with the service's error text."""

    def is_completed(self) -> bool:
        """True once the task is terminal: succeeded, failed or cancelled."""
        return self.state.is_terminal

    def is_failed(self) -> bool:
        """True if the service failed the task."""
        return self.state == TaskState.FAILED

    def error_message(self) -> str | None:
        """The service's error text of a failed task (``None`` unless FAILED)."""
        if not self.is_failed():
            return None
        for event in reversed(self.events):
            if event.code == _FAILED_EVENT and event.message:
                return event.message
        return "task failed without an error message"
