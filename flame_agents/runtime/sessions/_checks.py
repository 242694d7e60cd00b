"""What the Frontend checks before it acts: ids, names, application and session specs.

Each check returns the problem as a message for the client (None when there is none), or aborts
the call with INVALID_ARGUMENT saying what is wrong; messages echo a client's value only cut
to a printable size (see :func:`show`).
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

import grpc
import grpc.aio

from flame_agents._wire import types_pb2
from flame_agents.runtime._launch import working_directory_error
from flame_agents.runtime.sessions._apps import (
    SpecError,
    name_error,
    with_defaults,
)
from flame_agents.runtime.sessions._resources import resolved_spec

__all__ = [
    "DEFAULT_MAX_ID_BYTES",
    "Ctx",
    "abort",
    "app_name_error",
    "checked_spec",
    "given_spec",
    "mismatch",
    "resolve_spec",
    "result",
    "session_id_error",
    "show",
    "task_number",
]

Ctx = grpc.aio.ServicerContext[Any, Any]

DEFAULT_MAX_ID_BYTES = 512
"""Longest session id accepted (UTF-8 bytes); ``--max-id-bytes`` changes it."""

_SHOWN_CHARS = 128


def show(value: str) -> str:
    """``value`` for an error message: as is when short and printable, else a cut repr.

    Error messages travel in a gRPC trailer, which is small: echoing a client's megabyte-long
    or binary field would turn a clear INVALID_ARGUMENT into a broken reply.
    """
    if len(value) <= _SHOWN_CHARS and value.isprintable():
        return value
    return f"{value[: _SHOWN_CHARS // 2]!r}... ({len(value)} characters)"


def session_id_error(sid: str, *, max_bytes: int = DEFAULT_MAX_ID_BYTES) -> str | None:
    """Why ``sid`` is not an acceptable session id, or None if it is.

    The rule is the core client's (no path separators, NUL or ``..``: Flame's fs engine makes
    a directory of the id) plus a length cap and no control characters (ids end up in logs).
    """
    if not sid:
        return "session id must not be empty"
    size = len(sid.encode("utf-8"))
    if size > max_bytes:
        return f"session id is {size} bytes long; the limit is {max_bytes} bytes (--max-id-bytes)"
    if any(c in sid for c in "/\\") or ".." in sid or not sid.isprintable():
        return (
            f"invalid session id {show(sid)}: it must not contain '/', '\\', '..', "
            "NUL or other control characters"
        )
    return None


def _spec_error(spec: types_pb2.ApplicationSpec) -> str | None:
    """A problem no launch could get past (NUL in an argv or env string, unknown shim), or None."""
    if spec.shim not in types_pb2.Shim.values():
        return f"unknown shim {spec.shim}: expected one of {sorted(types_pb2.Shim.keys())}"
    if spec.HasField("delay_release") and spec.delay_release < 0:
        return f"delay_release must be >= 0 seconds, got {spec.delay_release}"
    texts = [("command", spec.command), ("working_directory", spec.working_directory)]
    texts += [("arguments", a) for a in spec.arguments]
    texts += [("environments", e.name + e.value) for e in spec.environments]
    for field, text in texts:
        if "\x00" in text:
            return f"{field} must not contain NUL characters"
    for env in spec.environments:
        if not env.name or "=" in env.name:
            return f"invalid environment variable name {show(env.name)}: empty or contains '='"
    return None


async def abort(ctx: Ctx, code: grpc.StatusCode, message: str) -> NoReturn:
    await ctx.abort(code, message)
    raise AssertionError("unreachable")  # ctx.abort always raises


_TASK_NUMBER = re.compile(r"[+-]?[0-9]{1,19}")
_I64_MAX = 2**63 - 1


def task_number(task_id: str) -> int | None:
    """The task id parsed as Flame parses it (an i64, ASCII digits only), or None."""
    if not _TASK_NUMBER.fullmatch(task_id):
        return None
    number = int(task_id)
    return number if -_I64_MAX - 1 <= number <= _I64_MAX else None


def app_name_error(name: str) -> str | None:
    if len(name) > 253:  # checked first so the message does not echo a huge name
        return f"invalid application name {show(name)}: longer than 253 characters"
    return name_error(name)


async def checked_spec(spec: types_pb2.ApplicationSpec, ctx: Ctx) -> types_pb2.ApplicationSpec:
    """``spec`` validated and with Flame's defaults, or INVALID_ARGUMENT saying what is wrong.

    Beyond Flame's checks, a given working_directory must exist on this machine: Flame would
    accept it and fail every launch later (and clients such as flamepy register directly, so
    the CLI cannot be the only check).
    """
    if problem := _spec_error(spec):
        await abort(ctx, grpc.StatusCode.INVALID_ARGUMENT, problem)
    try:
        checked = with_defaults(spec)
    except SpecError as exc:
        await abort(ctx, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    if checked.HasField("working_directory") and (
        problem := working_directory_error(checked.working_directory)
    ):
        await abort(ctx, grpc.StatusCode.INVALID_ARGUMENT, problem)
    return checked


def result(message: str | None = None) -> types_pb2.Result:
    if message is None:
        return types_pb2.Result(return_code=0)
    return types_pb2.Result(return_code=-1, message=message)


def given_spec(spec: types_pb2.SessionSpec) -> types_pb2.SessionSpec:
    """The spec as stored: batch_size 1, resreq only when the client gave one.

    Whether resreq was given matters: only a given one is accounted (see ``_resources``);
    clients are shown Flame's default in its place (``_protos.session``).
    """
    out = types_pb2.SessionSpec()
    out.CopyFrom(spec)
    out.batch_size = 1
    return out


def resolve_spec(spec: types_pb2.SessionSpec) -> types_pb2.SessionSpec:
    return resolved_spec(given_spec(spec))


def mismatch(sid: str, have: types_pb2.SessionSpec, want: types_pb2.SessionSpec) -> str | None:
    """The first differing field as Flame words it, or None when the specs agree."""

    def rr(r: types_pb2.ResourceRequirement) -> str:
        return f"cpu={r.cpu},mem={r.memory},gpu={r.gpu}"

    def mx(s: types_pb2.SessionSpec) -> str:
        return str(s.max_instances) if s.HasField("max_instances") else "unlimited"

    checks = [
        ("application", have.application, want.application),
        ("resreq", rr(have.resreq), rr(want.resreq)),
        ("min_instances", str(have.min_instances), str(want.min_instances)),
        ("max_instances", mx(have), mx(want)),
        ("priority", str(have.priority), str(want.priority)),
    ]
    for name, expected, got in checks:
        if expected != got:
            return (
                f"session {sid} spec mismatch: {name} differs "
                f"(expected {show(expected)}, got {show(got)})"
            )
    return None
