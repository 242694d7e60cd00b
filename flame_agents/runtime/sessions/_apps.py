"""Application rules of the session manager: name and spec validation, defaults, built-in apps."""

from __future__ import annotations

import json
import re
import sys

from flame_agents._wire import types_pb2
from flame_agents.runtime import flmexec

__all__ = [
    "DEFAULT_DELAY_RELEASE",
    "DEFAULT_MAX_INSTANCES",
    "TASK_TIMEOUT_LABEL",
    "SpecError",
    "builtin_applications",
    "name_error",
    "task_timeout",
    "with_defaults",
]

DEFAULT_MAX_INSTANCES = 1_000_000
DEFAULT_DELAY_RELEASE = 60
"""Seconds an idle instance stays bound before it is released (Flame's default)."""

TASK_TIMEOUT_LABEL = "flame-agents.task-timeout"
"""Application label ``flame-agents.task-timeout=<seconds>``: how long one task may run (Flame's
ApplicationSpec has no field for it). ``0`` disables the runtime's ``--task-timeout`` default."""

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}$")


class SpecError(ValueError):
    """An ApplicationSpec field is malformed (answered with INVALID_ARGUMENT)."""


def name_error(name: str) -> str | None:
    """Why ``name`` is not a valid application name, or None if it is."""
    if not _NAME.match(name) or ".." in name:
        return (
            f"invalid application name {name!r}: use 1-253 characters of [A-Za-z0-9._-], "
            "not starting with '.' or '-' and without '..'"
        )
    return None


def task_timeout(spec: types_pb2.ApplicationSpec) -> float | None:
    """Seconds from the task-timeout label (0.0 = none); None without it; SpecError if bad."""
    for label in spec.labels:
        key, sep, value = label.partition("=")
        if sep and key.strip() == TASK_TIMEOUT_LABEL:
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if not seconds >= 0 or seconds == float("inf"):
                raise SpecError(
                    f"label {label!r}: the task timeout must be a number of seconds >= 0 "
                    f"(0 = no timeout), e.g. {TASK_TIMEOUT_LABEL}=300"
                )
            return seconds
    return None


def with_defaults(spec: types_pb2.ApplicationSpec) -> types_pb2.ApplicationSpec:
    """Validate ``spec`` (raising SpecError) and fill Flame's defaults for absent fields."""
    out = types_pb2.ApplicationSpec()
    out.CopyFrom(spec)
    task_timeout(out)  # validates the label
    if out.HasField("working_directory"):
        if not out.working_directory:
            out.ClearField("working_directory")
        elif not out.working_directory.startswith("/"):
            raise SpecError(
                f"working_directory must be an absolute path, got {out.working_directory!r}"
            )
    if out.HasField("schema"):
        for field in ("input", "output", "common_data"):
            if out.schema.HasField(field):
                try:
                    json.loads(getattr(out.schema, field))
                except ValueError as exc:
                    raise SpecError(f"schema.{field} is not valid JSON: {exc}") from exc
    else:
        out.schema.SetInParent()
    if not out.HasField("max_instances"):
        out.max_instances = DEFAULT_MAX_INSTANCES
    if not out.HasField("delay_release"):
        out.delay_release = DEFAULT_DELAY_RELEASE
    return out


def builtin_applications() -> dict[str, types_pb2.ApplicationSpec]:
    """Applications registered at start-up: ``flmping`` (our Python ping service),
    ``flmexec`` (our Python script executor, see :mod:`flame_agents.runtime.flmexec`) and
    ``flmrun`` (flamepy's runner service on the runtime's interpreter; see
    :mod:`flame_agents.runtime.launch._installer` for its ``python`` installer)."""
    ping = types_pb2.ApplicationSpec(
        shim=types_pb2.Shim.Host,
        description="No-op ping service: echoes task input (built into the runtime)",
        command=sys.executable,
        arguments=["-m", "flame_agents.runtime.flmping"],
    )
    execute = types_pb2.ApplicationSpec(
        shim=types_pb2.Shim.Host,
        description="The Flame Executor application, which is used to run scripts "
        "(python and shell; built into the runtime)",
        command=sys.executable,
        arguments=["-m", "flame_agents.runtime.flmexec"],
        schema=types_pb2.ApplicationSchema(
            input=flmexec.INPUT_SCHEMA, output=flmexec.OUTPUT_SCHEMA
        ),
    )
    runner = types_pb2.ApplicationSpec(
        shim=types_pb2.Shim.Host,
        description="Python runner template cloned by flamepy.runner.Runner: runs the "
        "runner's uploaded package, installed by the python installer (built into the runtime)",
        command=sys.executable,
        arguments=["-m", "flamepy.runner.runpy"],
        installer="python",
    )
    return {
        "flmping": with_defaults(ping),
        "flmexec": with_defaults(execute),
        "flmrun": with_defaults(runner),
    }
