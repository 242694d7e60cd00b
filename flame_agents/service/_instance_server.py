"""Serve Flame's ``flame.v1.Instance`` shim on a Unix socket for any handler object.

A Flame launcher (Flame's host shim, or our embedded runtime) starts a service process with
``FLAME_INSTANCE_ENDPOINT=<absolute socket path>``, waits for the socket file, then calls
``OnSessionEnter`` once, ``OnTaskInvoke`` for each task, ``OnSessionLeave`` once, and finally
sends SIGTERM to the process group (flame-wire §3.2, §3.3, §8.5). This module is that server,
generic over a small :class:`InstanceHandler` protocol so that ``FlameInstance``, the agent
layer and test doubles share one implementation:

* a handler exception becomes ``return_code=-1``, never a gRPC error, because Flame only
  surfaces ``TaskResult.message`` to clients (as the task's failure text): for a task, the
  message names the exception's class and ends with the innermost frames of its traceback
  (``flame_agents._wire.failures``); for ``OnSessionEnter``, it is ``str(exc)``;
* a reply over the message limit (``FLAME_AGENTS_MAX_MESSAGE_BYTES``, set by our runtime from
  its ``--max-message-bytes``) is not sent: the task fails with a message naming the option,
  and the instance keeps serving;
* calls into the handler run strictly one at a time, whatever the gRPC thread pool does;
* our ``/flame_agents.v1.Instance/CancelTask`` (``_wire.cancel``) is served outside that order,
  while the task runs: it calls the handler's optional ``on_task_cancel`` (see
  :class:`CancellableHandler`); a handler that ends a task by raising ``errors.Cancelled`` or
  ``asyncio.CancelledError`` has it reported as cancelled (a failure naming ``Cancelled``, which
  our runtime ends Cancelled and a Flame cluster ends Failed; our client raises ``Cancelled``);
* ``OnSessionLeave`` always answers 0: Flame's executor manager retries a failed leave forever;
* the socket is created private (0600), a stale one is replaced, and it is removed on exit.

Use :func:`serve` in a service process (blocks until SIGTERM/SIGINT) or :class:`InstanceServer`
to embed the server (tests, or a process with its own main loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import threading
from collections import deque
from concurrent import futures
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, runtime_checkable

import grpc

from flame_agents._logging import get_logger
from flame_agents._wire import shim_pb2_grpc, types_pb2
from flame_agents._wire.cancel import add_instance_cancel
from flame_agents._wire.failures import MAX_FAILURE_CHARS, format_failure
from flame_agents._wire.limits import (
    instance_hop_bytes,
    limit_from_env,
    output_budget,
    reply_too_large,
)
from flame_agents._wire.proctitle import set_instance_title
from flame_agents._wire.ready import notify_ready
from flame_agents.errors import Cancelled, ConfigError

__all__ = [
    "INSTANCE_ENDPOINT_ENV",
    "CancellableHandler",
    "InstanceHandler",
    "InstanceServer",
    "instance_endpoint",
    "serve",
]

INSTANCE_ENDPOINT_ENV = "FLAME_INSTANCE_ENDPOINT"
"""The variable a Flame launcher sets to the absolute path of the socket to serve on."""

# AF_UNIX paths are limited to 108 bytes including the terminating NUL (Linux sun_path).
_MAX_UNIX_PATH = 107

_CANCELS_KEPT = 64
"""Task ids whose cancel request is remembered (one that arrives before its task does)."""

_log = get_logger(__name__)


@runtime_checkable
class InstanceHandler(Protocol):
    """What a service must implement to be served by :class:`InstanceServer`.

    The server calls these methods one at a time. Raising from any of them reports a failure to
    the launcher with the exception's text; it never crashes the server. A handler may also
    have ``on_task_cancel(task_id)`` (optional, see :class:`CancellableHandler`), which is called
    beside a running ``on_task_invoke``.
    """

    def on_session_enter(
        self, session_id: str, application_name: str, common_data: bytes | None
    ) -> None:
        """The instance was bound to ``session_id``; ``common_data`` is the session's bytes."""

    def on_task_invoke(self, task_id: str, session_id: str, input: bytes | None) -> bytes | None:
        """Run one task and return its output bytes (``None`` leaves the output unset)."""

    def on_session_leave(self) -> None:
        """The instance is being unbound from its session; release per-session state."""


@runtime_checkable
class CancellableHandler(InstanceHandler, Protocol):
    """An :class:`InstanceHandler` that can stop a running task: ``on_task_cancel`` is optional.

    A handler without it cannot be asked: our runtime then stops the instance at once to cancel
    a task it runs (as it does for flamepy's services).
    """

    def on_task_cancel(self, task_id: str) -> None:
        """Ask the running task ``task_id`` to stop; return at once, without waiting for it.

        Called on another thread while ``on_task_invoke`` for that task runs (possibly just as
        it starts, before it reached user code: remember the request; or just as it ended:
        ignore it then, task ids are never reused in a session). The task then ends
        cancelled when ``on_task_invoke`` raises ``errors.Cancelled`` (or
        ``asyncio.CancelledError``); if it returns or fails instead, the task ends as it says
        (the cancel came too late). A task whose cancel arrives before its ``on_task_invoke``
        began is answered cancelled without calling the handler. If the task has not ended
        within the runtime's grace period (``--cancel-grace``), the instance is stopped.
        """


def instance_endpoint() -> str | None:
    """The socket path from ``FLAME_INSTANCE_ENDPOINT``, or ``None`` when not launched by Flame."""
    return os.environ.get(INSTANCE_ENDPOINT_ENV) or None


def _error_text(exc: BaseException) -> str:
    # str(exc) is what Flame and flamepy report; an exception without text would otherwise
    # reach the client as an empty failure message.
    return str(exc) or type(exc).__name__


class _Servicer(shim_pb2_grpc.InstanceServicer):  # type: ignore[misc]
    """Translates the three Instance RPCs into handler calls, serialized by one lock, and our
    CancelTask into ``on_task_cancel`` calls beside them."""

    def __init__(self, handler: InstanceHandler, *, max_message_bytes: int) -> None:
        self._handler = handler
        self._limit = max_message_bytes
        # Flame never overlaps calls to one instance, but a misbehaving or foreign launcher
        # could; the handler (and user entrypoints) are written for one call at a time.
        self._lock = threading.Lock()
        # What CancelTask needs to know of the task in on_task_invoke (never the lock above:
        # a cancel must get through while the task holds it).
        self._state = threading.Lock()
        self._running: str | None = None
        self._cancels: deque[str] = deque(maxlen=_CANCELS_KEPT)
        self._on_cancel = getattr(handler, "on_task_cancel", None)

    def busy(self) -> bool:
        """True while a handler call holds the lock."""
        return self._lock.locked()

    def OnSessionEnter(self, request: Any, context: grpc.ServicerContext) -> Any:
        common_data = request.common_data if request.HasField("common_data") else None
        log = _log.bind(session_id=request.session_id, app=request.application.name)
        # ps names the session (also under Flame's launcher, which passes no names to a title).
        set_instance_title(request.application.name, request.session_id)
        with self._lock:
            try:
                self._handler.on_session_enter(
                    request.session_id, request.application.name, common_data
                )
            except BaseException as exc:  # reported to the launcher instead (SystemExit too)
                log.error("on_session_enter failed", exc_info=exc)
                return types_pb2.Result(return_code=-1, message=_error_text(exc))
        log.debug("session entered")
        return types_pb2.Result(return_code=0)

    def OnTaskInvoke(self, request: Any, context: grpc.ServicerContext) -> Any:
        data = request.input if request.HasField("input") else None
        tid, sid = request.task_id, request.session_id
        log = _log.bind(session_id=sid, task_id=tid)
        with self._lock:
            with self._state:
                early = tid in self._cancels
                self._running = None if early else tid
            if early:  # its cancel overtook it: the handler never sees it
                log.info("task cancelled before it started")
                cancelled = Cancelled(
                    "its cancel arrived before it started", session_id=sid, task_id=tid
                )
                self._done(tid)
                return self._failed(cancelled)
            try:
                output = self._handler.on_task_invoke(tid, sid, data)
            except BaseException as exc:  # becomes the task's failure text
                with self._state:
                    requested = tid in self._cancels
                failure = _as_cancelled(exc, sid, tid, requested=requested)
                if failure is not None:
                    log.info("task cancelled", reason=failure.message)
                    return self._failed(failure)
                log.warning("task failed", error=_error_text(exc), exc_info=exc)
                return self._failed(exc)
            finally:
                self._done(tid)
        if output is None:
            return types_pb2.TaskResult(return_code=0)
        data = bytes(output)
        if len(data) > output_budget(self._limit):
            # Checked here rather than left to gRPC: its failure would look like a lost
            # instance to the launcher, which would kill us and run the handler again.
            log.warning("reply over the message limit", size=len(data), limit=self._limit)
            message = reply_too_large(request.task_id, len(data), self._limit)
            return types_pb2.TaskResult(return_code=-1, message=message)
        return types_pb2.TaskResult(return_code=0, output=data)

    def _done(self, tid: str) -> None:
        with self._state:
            self._running = None
            with contextlib.suppress(ValueError):
                self._cancels.remove(tid)  # answered: a late request for it is never needed

    def _failed(self, exc: BaseException) -> Any:
        message = format_failure(exc, max_chars=min(MAX_FAILURE_CHARS, output_budget(self._limit)))
        return types_pb2.TaskResult(return_code=-1, message=message)

    def CancelTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Our extension: ask the handler to stop task ``request.task_id`` (not under the lock)."""
        tid = request.task_id
        if self._on_cancel is None:
            return types_pb2.Result(
                return_code=1,
                message="the service's handler has no on_task_cancel: it cannot stop a task",
            )
        with self._state:
            self._cancels.append(tid)
            running = self._running == tid
        if running:
            try:
                self._on_cancel(tid)
            except BaseException as exc:  # the runtime stops the instance instead
                _log.error("on_task_cancel failed", task_id=tid, exc_info=exc)
                return types_pb2.Result(return_code=-1, message=_error_text(exc))
        _log.debug("cancel requested", task_id=tid, running=running)
        return types_pb2.Result(return_code=0)

    def OnSessionLeave(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            try:
                self._handler.on_session_leave()
            except BaseException as exc:  # a failed leave makes Flame's manager loop
                _log.error("on_session_leave failed (reported as success)", exc_info=exc)
        return types_pb2.Result(return_code=0)


def _as_cancelled(exc: BaseException, sid: str, tid: str, *, requested: bool) -> Cancelled | None:
    """``exc`` as the report of a cancelled task, or None when it is a plain failure."""
    if isinstance(exc, Cancelled):
        return exc
    if isinstance(exc, (asyncio.CancelledError, futures.CancelledError)):
        why = "stopped by its service on request" if requested else "its handler was cancelled"
        cancelled = Cancelled(why, session_id=sid, task_id=tid)
        cancelled.__cause__ = exc
        cancelled.__traceback__ = exc.__traceback__
        return cancelled
    return None


def _prepare_socket_path(path: Path) -> None:
    """Check ``path`` can be bound and remove a stale socket left by a dead process."""
    if not path.is_absolute():
        raise ConfigError(
            f"{INSTANCE_ENDPOINT_ENV}={str(path)!r} must be an absolute socket path "
            "(no scheme), e.g. /tmp/flame/executor-1.sock",
            path=str(path),
        )
    if len(os.fsencode(path)) > _MAX_UNIX_PATH:
        raise ConfigError(
            f"socket path {str(path)!r} is longer than {_MAX_UNIX_PATH} bytes, the AF_UNIX "
            "limit; use a shorter directory",
            path=str(path),
        )
    if not path.parent.is_dir():
        raise ConfigError(
            f"directory {str(path.parent)!r} for the instance socket does not exist",
            path=str(path),
        )
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(
            f"{str(path)!r} exists and is not a socket; refusing to replace it", path=str(path)
        )
    if _is_live(path):
        raise ConfigError(f"another process is already serving on {str(path)!r}", path=str(path))
    path.unlink(missing_ok=True)


def _is_live(path: Path) -> bool:
    """True when something accepts connections on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(os.fspath(path))
        except OSError:
            return False
    return True


class InstanceServer:
    """A ``flame.v1.Instance`` gRPC server bound to one Unix socket.

    ``start()`` binds (the socket file appears, mode 0600, which is the launcher's readiness
    signal); ``stop()`` shuts down and removes the socket. Also a context manager.
    """

    def __init__(
        self,
        handler: InstanceHandler,
        socket_path: str | os.PathLike[str],
        *,
        max_message_bytes: int | None = None,
    ) -> None:
        """Prepare a server for ``handler`` on ``socket_path`` (absolute, no ``unix://``).

        ``max_message_bytes``: the message limit of the runtime (default: the one it passed in
        ``FLAME_AGENTS_MAX_MESSAGE_BYTES``, else 64 MiB); a larger reply fails its task.
        """
        self._handler = handler
        self._path = Path(socket_path)
        self._limit = max_message_bytes if max_message_bytes is not None else limit_from_env()
        self._server: grpc.Server | None = None
        self._servicer: _Servicer | None = None
        self._bound = False  # only a socket we bound is ours to remove
        self._stopped = threading.Event()

    @property
    def socket_path(self) -> Path:
        """The Unix socket this server binds."""
        return self._path

    def start(self) -> None:
        """Bind the socket and start answering; returns immediately."""
        if self._server is not None:
            raise RuntimeError("InstanceServer.start() called twice")
        _prepare_socket_path(self._path)
        # One call runs at a time anyway; a few threads let a second RPC queue on the lock
        # instead of being rejected while a long task runs.
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="flame-instance"),
            options=[
                # The launcher's limit, with its allowance for the task's envelope: anything
                # its Frontend accepted arrives, and replies are checked before they are sent.
                ("grpc.max_receive_message_length", instance_hop_bytes(self._limit)),
                ("grpc.max_send_message_length", instance_hop_bytes(self._limit)),
            ],
        )
        self._servicer = _Servicer(self._handler, max_message_bytes=self._limit)
        shim_pb2_grpc.add_InstanceServicer_to_server(self._servicer, server)
        add_instance_cancel(self._servicer.CancelTask, server)
        # The socket must never be reachable by other users, even briefly: create it under
        # a restrictive umask rather than chmod-ing it after bind.
        old_umask = os.umask(0o177)
        cause: RuntimeError | None = None
        try:
            port = server.add_insecure_port(f"unix:{self._path}")
        except RuntimeError as exc:
            port, cause = 0, exc
        finally:
            os.umask(old_umask)
        if port == 0:
            raise ConfigError(
                f"cannot bind instance socket {str(self._path)!r}", path=str(self._path)
            ) from cause
        self._bound = True
        os.chmod(self._path, 0o600)
        server.start()
        self._server = server
        notify_ready()
        set_instance_title()  # from the launcher's FLAME_AGENTS_APP/_SESSION, when given
        _log.debug("instance server listening", socket=str(self._path))

    def stop(self, grace: float | None = 5.0) -> None:
        """Stop serving (letting a running call finish within ``grace`` s) and remove the socket."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait()
        if self._bound:
            self._bound = False
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(self._path.lstat().st_mode):
                    self._path.unlink()
        self._stopped.set()

    def busy(self) -> bool:
        """True while a handler call is running (it may outlive :meth:`stop`'s grace period)."""
        return self._servicer is not None and self._servicer.busy()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` has run; ``False`` if ``timeout`` passed first."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> InstanceServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(handler: InstanceHandler, *, socket_path: str | os.PathLike[str] | None = None) -> None:
    """Serve ``handler`` until SIGTERM or SIGINT, then stop cleanly and remove the socket.

    ``socket_path`` defaults to ``FLAME_INSTANCE_ENDPOINT``. Must be called from the main
    thread (it installs signal handlers, restoring the previous ones on return).
    """
    path = socket_path if socket_path is not None else instance_endpoint()
    if path is None:
        raise ConfigError(
            f"{INSTANCE_ENDPOINT_ENV} is not set: a Flame launcher sets it to the socket path "
            "this service must listen on",
        )
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = InstanceServer(handler, path)
    try:
        server.start()
        # A bounded wait keeps the main thread returning to the interpreter, where signal
        # handlers run, even on platforms where a blocking wait is not interruptible.
        while not stop.wait(0.5):
            pass
        _log.debug("stop signal received; shutting down")
    finally:
        server.stop(grace=2.0)
        for sig, handler_ in previous.items():
            signal.signal(sig, handler_)
    if server.busy():
        # A handler call is still running after the grace period. Its reply can no longer be
        # delivered, and the interpreter would wait for the worker thread at exit, so a
        # SIGTERM-ed instance could hang on a long task: leave now.
        _log.warning("exiting with a task still running")
        os._exit(0)
