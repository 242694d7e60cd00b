"""map_rpc_error turns each gRPC status into the one matching flame-agents error class."""

from __future__ import annotations

import grpc
import pytest

from flame_agents._wire.errors import map_rpc_error
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


class FakeRpcError(grpc.RpcError):
    """An RpcError with a status, as grpc raises them from calls."""

    def __init__(self, code: grpc.StatusCode, details: str | None) -> None:
        super().__init__()
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str | None:
        return self._details


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.UNAVAILABLE, RuntimeUnavailableError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, InvocationTimeoutError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.ALREADY_EXISTS, AlreadyExistsError),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (grpc.StatusCode.FAILED_PRECONDITION, InvalidStateError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, LimitExceededError),
        (grpc.StatusCode.ABORTED, CommitConflictError),
        (grpc.StatusCode.UNAUTHENTICATED, ConfigError),
        (grpc.StatusCode.PERMISSION_DENIED, ConfigError),
        (grpc.StatusCode.INTERNAL, InternalError),
        (grpc.StatusCode.UNKNOWN, InternalError),
        (grpc.StatusCode.CANCELLED, InternalError),
    ],
)
def test_status_code_maps_to_class(code: grpc.StatusCode, cls: type[FlameAgentsError]) -> None:
    """Each status code yields its class with message '<op>: <details>' and the given fields."""
    err = map_rpc_error(FakeRpcError(code, "it broke"), op="get_session", session_id="s-1")
    assert type(err) is cls
    assert str(err) == "get_session: it broke"
    assert err.session_id == "s-1"
    assert err.grpc_code == code.name


def test_missing_details_fall_back_to_code_name() -> None:
    """An error without details still says which status it was."""
    err = map_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, None), op="list_sessions")
    assert str(err) == "list_sessions: UNAVAILABLE"


def test_rpc_error_without_status_is_internal() -> None:
    """A bare RpcError (no code()) becomes InternalError rather than crashing the mapper."""
    err = map_rpc_error(grpc.RpcError("weird"), op="x")
    assert isinstance(err, InternalError)
    assert "weird" in str(err)
