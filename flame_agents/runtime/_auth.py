"""Access control of the runtime's two servers: the shared bearer token and the bind rule.

Clients send ``authorization: Bearer <token>`` as gRPC metadata (the Frontend) or as a Flight
header (the object cache). A call without the right token is refused with UNAUTHENTICATED
before any handler runs. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pyarrow.flight as flight

from flame_agents.config import TOKEN_ENV
from flame_agents.errors import ConfigError

__all__ = [
    "TOKEN_ENV",
    "FlightTokenMiddlewareFactory",
    "TokenInterceptor",
    "bind_error",
    "is_loopback",
    "load_tls",
    "token_matches",
    "unauthenticated_message",
]

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    _Interceptor = grpc.aio.ServerInterceptor


def unauthenticated_message(server: str) -> str:
    """The refusal text: says what is missing and how to pass it."""
    return (
        f"the {server} requires a token: set {TOKEN_ENV} (or 'cluster.token' in the current "
        "context of ~/.flame/flame.yaml) to the runtime's token; clients send it as "
        "'authorization: Bearer <token>'"
    )


def token_matches(header: str | bytes | None, token: str) -> bool:
    """Whether an ``authorization`` header value carries ``token`` (constant-time compare)."""
    if header is None:
        return False
    if isinstance(header, bytes):
        header = header.decode("utf-8", errors="replace")
    expected = f"Bearer {token}".encode()
    return hmac.compare_digest(header.strip().encode("utf-8", errors="replace"), expected)


def is_loopback(host: str) -> bool:
    """Whether a listen address is reachable from this machine only."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname: assume it resolves to something reachable from outside


def _deny_handler(handler: Handler, message: str) -> Handler:
    async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def deny_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator

    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny_stream, des, ser)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, des, ser)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny_stream, des, ser)
    return grpc.unary_unary_rpc_method_handler(deny, des, ser)


class TokenInterceptor(_Interceptor):
    """Refuses every call of a grpc.aio server whose metadata lacks the bearer token."""

    def __init__(self, token: str) -> None:
        self._token = token
        self._message = unauthenticated_message("Frontend")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        """Pass authorised calls on; answer the others with UNAUTHENTICATED."""
        handler = await continuation(handler_call_details)
        metadata = handler_call_details.invocation_metadata or ()
        header = next((v for k, v in metadata if k == "authorization"), None)
        if handler is None or token_matches(header, self._token):
            return handler
        return _deny_handler(handler, self._message)


class _Allowed(flight.ServerMiddleware):  # type: ignore[misc]
    pass


class FlightTokenMiddlewareFactory(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    """Refuses every Flight call whose headers lack the bearer token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token
        self._message = unauthenticated_message("object cache")

    def start_call(self, info: Any, headers: dict[str, list[Any]]) -> flight.ServerMiddleware:
        """Admit the call or raise FlightUnauthenticatedError."""
        values = headers.get("authorization") or headers.get(b"authorization") or []  # type: ignore[call-overload]
        if any(token_matches(v, self._token) for v in values):
            return _Allowed()
        raise flight.FlightUnauthenticatedError(self._message)


def bind_error(host: str, *, token: str | None, insecure: bool) -> str | None:
    """Why the runtime must not listen on ``host`` as configured, or None when it may."""
    if is_loopback(host) or token or insecure:
        return None
    return (
        f"refusing to listen on {host}, which other machines can reach, without a token: "
        f"anyone reaching the runtime can run commands as this user. Set {TOKEN_ENV} (or "
        "--token-file), or pass --insecure if the network is trusted"
    )


def load_tls(cert: Path | None, key: Path | None) -> tuple[bytes, bytes] | None:
    """The PEM certificate chain and key, or None without TLS; ConfigError when unusable."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    try:
        return cert.read_bytes(), key.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the TLS certificate or key: {exc}") from exc
