"""The plumbing under a connection: one gRPC channel to a Frontend, its stub, and a thread pool.

:class:`Transport` runs unary calls with the connection's deadline and maps their errors,
tracks streaming calls so closing cancels them, and runs futures' waits on its pool. The
operation modules (``_tasks``, ``_sessions``, ``_applications``, ``_executors``, ``_fastpath``,
``_cancel``) take a Transport; :class:`~flame_agents.core.Connection` adds them on top as
methods, so the imports of ``core`` run one way: Transport, operations, Connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.experimental

from flame_agents._wire import cancel, fastpath, frontend_pb2_grpc
from flame_agents._wire.errors import map_rpc_error, rpc_status
from flame_agents.config import DEFAULT_CACHE_ENDPOINT, auth_metadata, grpc_target
from flame_agents.errors import ConfigError, InvalidStateError, RuntimeUnavailableError

__all__ = ["MAX_MESSAGE_BYTES", "Transport"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest gRPC message sent or received (task input/output, common data); the runtime uses the
same limit so anything one side accepts the other can carry."""

_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Keepalive notices a dead peer under a long WatchTask. Five minutes matches gRPC servers'
    # default minimum ping interval, so no server answers our pings with GOAWAY(too_many_pings).
    ("grpc.keepalive_time_ms", 300_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
    # Streams (RunTask, WatchTask) are read on the caller's thread: otherwise gRPC Python starts
    # a polling thread for the channel on each call, a third of a streamed invoke's client cost.
    (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
]

T = TypeVar("T")
_T = TypeVar("_T", bound="Transport")


if TYPE_CHECKING:
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStream = grpc.UnaryStreamClientInterceptor[Any, Any]
else:
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor
    _UnaryStream = grpc.UnaryStreamClientInterceptor


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, base: Any, metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = base.wait_for_ready
        self.compression = base.compression


class _AuthInterceptor(_UnaryUnary, _UnaryStream):
    """Adds ``authorization: Bearer <token>`` to every call (the runtime's shared token)."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _details(self, details: Any) -> _CallDetails:
        return _CallDetails(details, (*(details.metadata or ()), *self._metadata))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        """Send the token with a unary call."""
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        """Send the token with a streaming call (WatchTask, ListTask)."""
        return continuation(self._details(details), request)


class Transport:
    """A gRPC channel to a Frontend with the calls every operation needs (thread-safe).

    ``close()`` cancels running streams and releases the channel.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        cache_endpoint: str | None = None,
        ca_file: str | None = None,
        rpc_timeout: float | None = 60.0,
        max_workers: int = 64,
        token: str | None = None,
    ) -> None:
        """Open a channel to ``endpoint`` (``http://host:port``; ``https://`` for TLS).

        Args:
            endpoint: Frontend URL.
            cache_endpoint: Object cache URL, kept for callers that need it.
            ca_file: CA bundle for TLS endpoints (system roots when omitted).
            rpc_timeout: Deadline in seconds of every unary RPC (``None`` = no deadline).
            max_workers: Threads that wait for the tasks behind :meth:`Session.run` futures.
            token: Shared token sent with every call (``authorization: Bearer``); default
                ``$FLAME_AGENTS_TOKEN`` or the current context's token in ``~/.flame/flame.yaml``.
        """
        target = grpc_target(endpoint)
        self.endpoint = endpoint
        """The Frontend URL."""
        self.cache_endpoint = cache_endpoint or DEFAULT_CACHE_ENDPOINT
        """The object cache URL."""
        self.rpc_timeout = rpc_timeout
        """Deadline of unary RPCs in seconds."""
        if target.tls:
            root_certs = None
            if ca_file:
                try:
                    root_certs = Path(ca_file).read_bytes()
                except OSError as exc:
                    raise ConfigError(
                        f"cannot read CA file {ca_file!r} for {endpoint}: {exc}", ca_file=ca_file
                    ) from exc
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certs)
            self._channel = grpc.secure_channel(target.target, credentials, _CHANNEL_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(target.target, _CHANNEL_OPTIONS)
        metadata = (("authorization", f"Bearer {token}"),) if token else auth_metadata()
        channel = (
            grpc.intercept_channel(self._channel, _AuthInterceptor(metadata))
            if metadata
            else self._channel
        )
        self.stub: Any = frontend_pb2_grpc.FrontendStub(channel)
        self.run_task: Any = fastpath.run_task_callable(channel)
        """Our RunTask fast path (see ``_wire.fastpath``); Flame itself does not serve it."""
        self.fast_path: bool | None = None
        """Whether the Frontend serves RunTask: None until the first call tells."""
        self.cancel_task_rpc: Any = cancel.cancel_task_callable(channel)
        """Our CancelTask (see ``_wire.cancel``); Flame itself does not serve it."""
        self.cancel_supported: bool | None = None
        """Whether the Frontend serves CancelTask: None until the first cancel tells."""
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="flame-agents-watch"
        )
        self._lock = threading.Lock()
        self._calls: set[Any] = set()
        self._closed = False

    # -- plumbing shared by the operation modules ------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def call(
        self,
        op: str,
        method: Callable[..., T],
        request: Any,
        *,
        metadata: tuple[tuple[str, str], ...] | None = None,
        **fields: Any,
    ) -> T:
        """Run a unary RPC with the connection's deadline; gRPC errors become our errors."""
        self.check_open(op)
        try:
            return method(request, timeout=self.rpc_timeout, metadata=metadata)
        except grpc.RpcError as exc:
            raise self.error(exc, op=op, **fields) from exc
        except KeyboardInterrupt:
            # Ctrl-C while waiting for the reply: the traceback ends here, not in gRPC.
            raise KeyboardInterrupt from None

    def error(self, exc: grpc.RpcError, *, op: str, **fields: Any) -> Exception:
        """Map ``exc`` like :func:`map_rpc_error`, naming the endpoint when it is unreachable.

        A call cancelled because this connection was closed under it becomes
        :class:`InvalidStateError` saying so, not gRPC's bare CANCELLED.
        """
        if self._closed and rpc_status(exc)[0] == grpc.StatusCode.CANCELLED:
            return InvalidStateError(
                f"{op}: the connection to {self.endpoint} was closed",
                endpoint=self.endpoint,
                **fields,
            )
        err = map_rpc_error(exc, op=op, endpoint=self.endpoint, **fields)
        if isinstance(err, RuntimeUnavailableError):
            err = RuntimeUnavailableError(
                f"{err.message} (is the runtime at {self.endpoint} running? "
                "`flame-agents up` starts one)",
                **err.fields,
            )
        return err

    def track(self, call: Any) -> None:
        """Remember a streaming call so :meth:`close` can cancel it."""
        with self._lock:
            if self._closed:
                call.cancel()
            self._calls.add(call)

    def untrack(self, call: Any) -> None:
        """Forget a finished streaming call."""
        with self._lock:
            self._calls.discard(call)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the connection's thread pool and return its Future."""
        self.check_open("run")
        return self._executor.submit(fn)

    def check_open(self, op: str) -> None:
        """Raise InvalidStateError if the connection was closed."""
        if self._closed:
            raise InvalidStateError(f"{op}: the connection to {self.endpoint} is closed")

    def close(self) -> None:
        """Cancel running watches, stop the thread pool and close the channel (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            calls = list(self._calls)
            self._calls.clear()
        for call in calls:
            call.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._channel.close()

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.endpoint} {state}>"
