"""The one place where gRPC errors become flame-agents errors.

Every client call site catches ``grpc.RpcError`` and raises ``map_rpc_error(exc, op=...)`` from
it, so a status code means the same exception class everywhere. A message over a size limit
(gRPC's RESOURCE_EXHAUSTED "message larger than max") says which option raises the limit.
"""

from __future__ import annotations

from typing import Any

import grpc

from flame_agents._wire.limits import grpc_size_hint
from flame_agents.errors import (
    AlreadyExistsError,
    CommitConflictError,
    ConfigError,
    FlameAgentsError,
    InternalError,
    InvalidArgumentError,
    InvalidStateError,
    InvocationTimeoutError,
    LimitExceededError,
    NotFoundError,
    RuntimeUnavailableError,
)

__all__ = ["map_rpc_error", "rpc_status"]

_BY_CODE: dict[grpc.StatusCode, type[FlameAgentsError]] = {
    grpc.StatusCode.UNAVAILABLE: RuntimeUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: InvocationTimeoutError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidStateError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitExceededError,
    grpc.StatusCode.ABORTED: CommitConflictError,
    grpc.StatusCode.UNAUTHENTICATED: ConfigError,
    grpc.StatusCode.PERMISSION_DENIED: ConfigError,
}


def rpc_status(exc: grpc.RpcError) -> tuple[grpc.StatusCode | None, str]:
    """The status code and details of an RpcError (``None``/``str(exc)`` if it has none)."""
    # Not every RpcError is a grpc.Call (e.g. some channel-level failures); be defensive.
    code_fn = getattr(exc, "code", None)
    details_fn = getattr(exc, "details", None)
    code = code_fn() if callable(code_fn) else None
    details = details_fn() if callable(details_fn) else None
    return code, (details or (code.name if code is not None else str(exc)) or "")


def map_rpc_error(exc: grpc.RpcError, *, op: str, **fields: Any) -> FlameAgentsError:
    """The flame-agents error for a failed RPC; its message is ``"<op>: <details>"``.

    ``fields`` (``session_id=...``, ``task_id=...``) become attributes of the error, along with
    ``grpc_code`` (the status code name) so callers can still tell codes apart.
    """
    code, details = rpc_status(exc)
    cls = _BY_CODE.get(code, InternalError) if code is not None else InternalError
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        details = grpc_size_hint(details) or details
    return cls(f"{op}: {details}", grpc_code=code.name if code is not None else None, **fields)
