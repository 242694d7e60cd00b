"""Malformed Frontend requests (bytes that are not the method's protobuf message, or strings
that are not UTF-8) answered with INVALID_ARGUMENT instead of gRPC's bare UNKNOWN.

gRPC runs a method's deserializer before any handler: when it raises, the client only sees
"Unexpected DecodeError". The interceptor below makes parsing lenient (a failure becomes a
marker object) and has the handler refuse the marker with a message naming the message type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

__all__ = ["MalformedRequestInterceptor"]

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    _Interceptor = grpc.aio.ServerInterceptor

Ctx = grpc.aio.ServicerContext[Any, Any]


class _Malformed:
    """Stands in for a request that could not be parsed."""

    def __init__(self, error: str) -> None:
        self.error = error


def _lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def lenient(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:  # any parse failure is the client's bad input
            return _Malformed(str(exc) or type(exc).__name__)

    return lenient


async def _refuse(request: _Malformed, context: Ctx) -> None:
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"malformed request: {request.error[:300]} (send the method's protobuf message; "
        "strings must be UTF-8)",
    )


def _guarded(handler: Handler) -> Handler:
    parse = handler.request_deserializer
    if handler.request_streaming or parse is None:
        return handler  # the Frontend has no client-streaming methods
    ser = handler.response_serializer
    if handler.response_streaming:
        stream: Any = handler.unary_stream  # an async generator function on a grpc.aio server

        async def guarded_stream(request: Any, context: Ctx) -> AsyncIterator[Any]:
            if isinstance(request, _Malformed):
                await _refuse(request, context)
            async for item in stream(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(guarded_stream, _lenient(parse), ser)
    unary: Any = handler.unary_unary  # a coroutine function on a grpc.aio server

    async def guarded(request: Any, context: Ctx) -> Any:
        if isinstance(request, _Malformed):
            await _refuse(request, context)
        return await unary(request, context)

    return grpc.unary_unary_rpc_method_handler(guarded, _lenient(parse), ser)


class MalformedRequestInterceptor(_Interceptor):
    """Answers requests that do not parse with INVALID_ARGUMENT and a message."""

    def __init__(self) -> None:
        # Handlers are fixed per method: wrap each once, not on every call.
        self._guarded: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        """Wrap the method's handler so its parsing cannot fail with UNKNOWN."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        guarded = self._guarded.get(method)
        if guarded is None:
            guarded = self._guarded[method] = _guarded(handler)
        return guarded
