"""Helpers of the security tests: raw Frontend and Flight clients, health checks, file snapshots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pyarrow.flight as flight

from flame_agents._wire import frontend_pb2 as fpb
from flame_agents._wire import frontend_pb2_grpc
from flame_agents.config import TOKEN_ENV, grpc_target

FUZZ_EXAMPLES = int(os.environ.get("FLAME_AGENTS_FUZZ_EXAMPLES", "60"))
"""Examples per fuzz test: small in CI; raise it (e.g. 5000) for a long run."""

FUZZ_TIMEOUT = max(120, FUZZ_EXAMPLES)
"""Per-test timeout of the fuzz tests: the suite's 120 s, more for a long run."""

MIB = 1024 * 1024


def raw_frontend(
    endpoint: str, *, token: str | None = None, max_bytes: int = 256 * MIB
) -> tuple[grpc.Channel, frontend_pb2_grpc.FrontendStub]:
    """A Frontend stub that sends exactly what a test gives it (no client-side checks)."""
    options = [
        ("grpc.max_send_message_length", max_bytes),
        ("grpc.max_receive_message_length", max_bytes),
    ]
    channel = grpc.insecure_channel(grpc_target(endpoint).target, options)
    if token is not None:
        header = (("authorization", f"Bearer {token}"),)
        channel = grpc.intercept_channel(channel, _Metadata(header))
    return channel, frontend_pb2_grpc.FrontendStub(channel)


class _Metadata(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _with(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return details._replace(metadata=[*(details.metadata or ()), *self._metadata])  # type: ignore[attr-defined, no-any-return]

    def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with(details), request)

    def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with(details), request)


def flight_options(token: str | None) -> flight.FlightCallOptions:
    """Call options carrying the bearer token (or none)."""
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return flight.FlightCallOptions(headers=headers, timeout=30)


def frontend_healthy(stub: frontend_pb2_grpc.FrontendStub) -> bool:
    """Whether the Frontend still answers a plain call."""
    stub.ListApplication(fpb.ListApplicationRequest(), timeout=30)
    return True


def cache_healthy(client: flight.FlightClient, token: str | None = None) -> bool:
    """Whether the cache still answers a plain call."""
    list(client.list_actions(options=flight_options(token)))
    return True


def tree(root: Path) -> set[str]:
    """Every path under ``root``, relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@contextmanager
def token_env(token: str) -> Iterator[None]:
    """Export the token for the body (the runtime and the clients read it), then restore."""
    old = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = token
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = old
