"""A connection to a Flame-compatible Frontend: one gRPC channel, its stub, and a thread pool.

The session, task and application operations live in their own modules; ``Connection`` exposes
them as methods so ``connect(...)`` gives an object with the same API as the module functions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.experimental

from flame_agents._wire import fastpath, frontend_pb2_grpc
from flame_agents._wire.errors import map_rpc_error, rpc_status
from flame_agents.config import DEFAULT_CACHE_ENDPOINT, Endpoints, auth_metadata, grpc_target
from flame_agents.core import _applications, _sessions, _tasks
from flame_agents.core._validate import check_session_id, check_task_id
from flame_agents.errors import ConfigError, InvalidStateError, RuntimeUnavailableError
from flame_agents.types import (
    Application,
    ApplicationSpec,
    ResourceRequirement,
    SessionInfo,
    Task,
)

if TYPE_CHECKING:
    from flame_agents.core._session import Session

__all__ = ["MAX_MESSAGE_BYTES", "Connection"]

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


class Connection:
    """A client connection to a Frontend (our embedded runtime or a Flame session manager).

    Thread-safe; share one per process (the module-level functions of :mod:`flame_agents.core`
    do). ``close()`` cancels running watches and releases the channel.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        cache_endpoint: str | None = None,
        ca_file: str | None = None,
        rpc_timeout: float | None = 60.0,
        max_workers: int = 64,
    ) -> None:
        """Open a channel to ``endpoint`` (``http://host:port``; ``https://`` for TLS).

        Args:
            endpoint: Frontend URL.
            cache_endpoint: Object cache URL, kept for callers that need it.
            ca_file: CA bundle for TLS endpoints (system roots when omitted).
            rpc_timeout: Deadline in seconds of every unary RPC (``None`` = no deadline).
            max_workers: Threads that wait for the tasks behind :meth:`Session.run` futures.
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
        metadata = auth_metadata()
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
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="flame-agents-watch"
        )
        self._lock = threading.Lock()
        self._calls: set[Any] = set()
        self._closed = False

    @classmethod
    def from_endpoints(cls, endpoints: Endpoints, **options: Any) -> Connection:
        """Connect to resolved :class:`~flame_agents.config.Endpoints`."""
        return cls(
            endpoints.endpoint,
            cache_endpoint=endpoints.cache_endpoint,
            ca_file=endpoints.ca_file,
            **options,
        )

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

    def __enter__(self) -> Connection:
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
        return f"<Connection {self.endpoint} {state}>"

    # -- sessions ------------------------------------------------------------------------------

    def create_session(
        self,
        application: str,
        *,
        common_data: bytes | None = None,
        session_id: str | None = None,
        min_instances: int = 0,
        max_instances: int | None = None,
        priority: int = 0,
        resreq: ResourceRequirement | str | Mapping[str, Any] | None = None,
    ) -> Session:
        """Create a session of ``application``; see :func:`flame_agents.core.create_session`."""
        return _sessions.create_session(
            self,
            application,
            common_data=common_data,
            session_id=session_id,
            min_instances=min_instances,
            max_instances=max_instances,
            priority=priority,
            resreq=resreq,
        )

    def open_session(self, session_id: str, *, spec: Any = None) -> Session:
        """Open (or create from ``spec``) a session; see :func:`flame_agents.core.open_session`."""
        return _sessions.open_session(self, session_id, spec=spec)

    def get_session(self, session_id: str) -> SessionInfo:
        """A fresh snapshot of a session."""
        return _sessions.get_session(self, session_id)

    def list_sessions(self) -> list[SessionInfo]:
        """Snapshots of every session the runtime knows."""
        return _sessions.list_sessions(self)

    def close_session(self, session_id: str, *, cancel_running: bool = False) -> SessionInfo:
        """Close a session (pending tasks are cancelled); idempotent.

        ``cancel_running``: stop running tasks too (our runtime only; see Session.close).
        """
        return _sessions.close_session(self, session_id, cancel_running=cancel_running)

    # -- tasks of any session (also closed ones, which open_session refuses) -------------------

    def get_task(self, session_id: str, task_id: str) -> Task:
        """One task of a session, with input, output and events."""
        return _tasks.get_task(self, check_session_id(session_id), check_task_id(task_id))

    def list_tasks(self, session_id: str) -> list[Task]:
        """Every task of a session."""
        return _tasks.list_tasks(self, check_session_id(session_id))

    # -- applications --------------------------------------------------------------------------

    def register_application(
        self, name: str, spec: ApplicationSpec | Mapping[str, Any] | Any
    ) -> None:
        """Register an application; see :func:`flame_agents.core.register_application`."""
        _applications.register_application(self, name, spec)

    def update_application(
        self, name: str, spec: ApplicationSpec | Mapping[str, Any] | Any
    ) -> None:
        """Replace an application's spec (fails while it has open sessions)."""
        _applications.update_application(self, name, spec)

    def unregister_application(self, name: str) -> None:
        """Remove an application (fails while it has open sessions)."""
        _applications.unregister_application(self, name)

    def get_application(self, name: str) -> Application | None:
        """The application called ``name``, or ``None`` if there is none."""
        return _applications.get_application(self, name)

    def list_applications(self) -> list[Application]:
        """Every registered application."""
        return _applications.list_applications(self)
