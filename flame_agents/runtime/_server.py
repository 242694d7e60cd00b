"""Assemble and run one embedded runtime: :class:`Runtime` starts and stops the store, the
TaskBoard, the scheduler, the Frontend and the cache; :func:`serve` runs it until signalled."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import grpc
import grpc.aio

from flame_agents._logging import get_logger
from flame_agents._wire import cancel, fastpath, frontend_pb2_grpc
from flame_agents._wire.cache.aliases import RefAliases
from flame_agents.config import RuntimeInfo, runtime_info_path, write_runtime_info
from flame_agents.errors import ConfigError
from flame_agents.runtime import _auth
from flame_agents.runtime._home import EndpointHistory, HomeLayout, HomeLock
from flame_agents.runtime._launch import InstanceCredentials
from flame_agents.runtime._parent_watch import wait_for_exit
from flame_agents.runtime.launch._instance import InstanceProcess
from flame_agents.runtime.launch._prestart import PrestartPool
from flame_agents.runtime.sessions._apps import builtin_applications
from flame_agents.runtime.sessions._board import TaskBoard
from flame_agents.runtime.sessions._builtins import reconcile_builtins
from flame_agents.runtime.sessions._frontend import DEFAULT_MAX_ID_BYTES, FrontendServicer
from flame_agents.runtime.sessions._malformed import MalformedRequestInterceptor
from flame_agents.runtime.sessions._options import SchedulerOptions, SchedulingLimits
from flame_agents.runtime.sessions._protos import node_name
from flame_agents.runtime.sessions._scheduler import Scheduler
from flame_agents.runtime.sessions._store import Store

__all__ = ["Runtime", "RuntimeOptions", "serve"]

_log = get_logger(__name__)

UNREQUESTED_CALL_SECONDS = 24 * 3600
"""How long a received call may wait for the busy server to pick it up (see serve())."""


@dataclass(frozen=True)
class RuntimeOptions:
    """Command-line options of the runtime process."""

    home: Path
    host: str = "127.0.0.1"
    """Listen address of both servers; anything but loopback needs a token or ``insecure``."""
    port: int = 0
    """Frontend port; 0 picks a free one."""
    cache_port: int = 0
    """Object cache (Arrow Flight) port; 0 picks a free one."""
    scheduling: SchedulingLimits = field(default_factory=SchedulingLimits)
    """Instance caps, timeouts and retry limits (handed to the scheduler as they are)."""
    token: str | None = None
    """Shared token both servers require (``authorization: Bearer <token>``); None = open."""
    insecure: bool = False
    """Allow a non-loopback ``host`` without a token."""
    tls_cert: Path | None = None
    """PEM certificate chain: with ``tls_key``, both servers speak TLS (https://, grpcs://)."""
    tls_key: Path | None = None
    """PEM private key of ``tls_cert``."""
    max_message_bytes: int = 64 * 1024 * 1024
    """Largest message on every hop: client <-> Frontend and runtime <-> instance (the core
    client's limit is 64 MiB)."""
    max_id_bytes: int = DEFAULT_MAX_ID_BYTES
    """Longest session id accepted."""
    max_object_bytes: int | None = None
    """Largest cache upload (None = the cache server's default)."""
    prestart: int = 2
    """Prestarted interpreters kept ready for new instances of the runtime's Python (0 = off)."""
    exit_with_pid: int | None = None
    """Stop gracefully once this process has exited (None = run until signalled)."""
    fsync: bool = False
    """Flush every database commit and cache write to disk before acknowledging it (survives
    power loss and OS crashes); off, acknowledged writes survive a kill of any process."""


def _port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on ``host:port`` (probed without SO_REUSEPORT, which gRPC sets:
    a bind that shares the port with another server would split its connections)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _start_cache(layout: HomeLayout, opts: RuntimeOptions, previous_port: int) -> object | None:
    try:
        from flame_agents.runtime.cache.server import CacheServer
    except ImportError:  # the cache is optional for the Frontend to work
        _log.warning("object cache unavailable: flame_agents.runtime.cache.server not importable")
        return None
    limits = {} if opts.max_object_bytes is None else {"max_object_bytes": opts.max_object_bytes}
    ports = [opts.cache_port]
    if opts.cache_port == 0 and previous_port and _port_is_free(opts.host, previous_port):
        ports.insert(0, previous_port)  # the same address as before, so earlier refs still work
    for port in ports:
        try:
            server = CacheServer(
                layout.cache,
                host=opts.host,
                port=port,
                token=opts.token,
                tls=_auth.load_tls(opts.tls_cert, opts.tls_key),
                fsync=opts.fsync,
                **limits,
            )
        except OSError:
            if port == ports[-1]:
                raise
            _log.info("previous cache port taken, picking another", port=port)
            continue
        server.serve_in_background()
        return server
    return None


def _listen(server: grpc.aio.Server, opts: RuntimeOptions, previous_port: int) -> int:
    """Add the Frontend's listening port (the previous run's when free); returns the port."""
    tls = _auth.load_tls(opts.tls_cert, opts.tls_key)
    ports = [opts.port]
    if opts.port == 0 and previous_port and _port_is_free(opts.host, previous_port):
        ports.insert(0, previous_port)
    for port in ports:
        try:
            if tls is None:
                bound = server.add_insecure_port(f"{opts.host}:{port}")
            else:
                credentials = grpc.ssl_server_credentials([(tls[1], tls[0])])
                bound = server.add_secure_port(f"{opts.host}:{port}", credentials)
        except RuntimeError as exc:
            if port == ports[-1]:
                raise OSError(f"cannot listen on {opts.host}:{port}: {exc}") from exc
            continue
        if bound != 0:
            return bound
    raise OSError(f"cannot listen on {opts.host}:{opts.port} (address in use?)")


def _tighten_permissions(layout: HomeLayout) -> None:
    """Make files an older runtime (or a wider umask) left in the home private to the owner."""
    for path in (
        layout.db,
        *layout.home.glob("flame.db-*"),
        layout.lock,
        layout.logs,
        *layout.logs.glob("*"),
    ):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path, 0o700 if path.is_dir() else 0o600)


class Runtime:
    """One embedded runtime over its home: :meth:`start` brings up the store, the TaskBoard, the
    scheduler, the Frontend and the cache; :meth:`stop` takes them down in reverse."""

    def __init__(self, opts: RuntimeOptions) -> None:
        self.opts = opts
        self.layout = HomeLayout(opts.home.resolve())
        self.endpoint = ""
        """The Frontend's advertised address (set by :meth:`start`)."""
        self._lock: HomeLock | None = None
        self._store: Store | None = None
        self._cache: object | None = None
        self._server: grpc.aio.Server | None = None
        self._prestart: PrestartPool | None = None
        self._scheduler: Scheduler | None = None

    async def start(self) -> None:
        """Lock the home and serve; ConfigError if the options or the home lock forbid it (a
        failed start leaves nothing running)."""
        opts = self.opts
        if problem := _auth.bind_error(opts.host, token=opts.token, insecure=opts.insecure):
            raise ConfigError(problem, host=opts.host)
        _auth.load_tls(opts.tls_cert, opts.tls_key)  # fail before touching the home
        layout = self.layout
        layout.create()
        _tighten_permissions(layout)
        lock = HomeLock(layout)
        lock.acquire()
        self._lock = lock
        try:
            layout.clear_leftovers()
            await self._start_locked()
        except BaseException:
            await self.stop()
            raise

    async def _start_locked(self) -> None:
        opts, layout = self.opts, self.layout
        store = self._store = Store(layout.db, fsync=opts.fsync)
        # A user's override or unregistration of a built-in survives the restart (see _builtins).
        reconcile_builtins(store, layout.home, builtin_applications())
        history = EndpointHistory.load(layout)
        cache = self._cache = _start_cache(layout, opts, history.cache_port)
        cache_endpoint: str | None = getattr(cache, "endpoint", None)
        former = history.former(cache_endpoint) if cache_endpoint else ()
        if cache is not None:
            cache.former_endpoints = former  # type: ignore[attr-defined]
        server = self._server = _frontend_server(opts)
        tls = _auth.load_tls(opts.tls_cert, opts.tls_key)
        port = _listen(server, opts, history.frontend_port)
        history.record(layout, frontend_port=port, cache_endpoint=cache_endpoint)
        # A wildcard listen address cannot be dialled by clients or instances: advertise loopback.
        advertised = "127.0.0.1" if opts.host in ("0.0.0.0", "", "::") else opts.host
        self.endpoint = f"{'https' if tls else 'http'}://{advertised}:{port}"
        prestart = self._prestart = PrestartPool(
            opts.prestart, work_dir=layout.work, log_path=layout.logs / "prestart.log"
        )
        board = TaskBoard(store)
        scheduler = self._scheduler = Scheduler(
            board,
            store,
            SchedulerOptions(
                node_name=node_name(),
                socket_dir=layout.sockets,
                work_root=layout.work,
                log_dir=layout.logs,
                frontend_endpoint=self.endpoint,
                cache_endpoint=cache_endpoint,
                former_cache_endpoints=former,
                limits=opts.scheduling,
                max_message_bytes=opts.max_message_bytes,
                credentials=_instance_credentials(opts),
            ),
            launch=partial(InstanceProcess, prestart=prestart if opts.prestart > 0 else None),
        )
        servicer = FrontendServicer(
            store,
            board,
            scheduler,
            max_id_bytes=opts.max_id_bytes,
            refs=RefAliases(current=cache_endpoint or "", former=former),
        )
        frontend_pb2_grpc.add_FrontendServicer_to_server(servicer, server)
        fastpath.add_to_server(servicer.RunTask, server)
        cancel.add_to_server(servicer.CancelTask, server)
        prestart.start()
        board.recover()
        scheduler.start()
        await server.start()
        write_runtime_info(
            RuntimeInfo(
                endpoint=self.endpoint,
                cache_endpoint=cache_endpoint or "",
                home=str(layout.home),
                pid=os.getpid(),
                former_cache_endpoints=former,
            )
        )
        _log.info(
            "runtime ready",
            endpoint=self.endpoint,
            cache_endpoint=cache_endpoint,
            home=str(layout.home),
        )

    async def stop(self) -> None:
        """Stop every instance (running tasks are re-run after a restart), then the servers;
        release the home. Stops what a failed :meth:`start` got to start."""
        with contextlib.suppress(FileNotFoundError):
            runtime_info_path(self.layout.home).unlink()
        if self._scheduler is not None:
            await self._scheduler.shutdown()
        if self._prestart is not None:
            await self._prestart.stop()
        if self._server is not None:
            await self._server.stop(grace=1.0)
        if self._cache is not None:
            self._cache.shutdown()  # type: ignore[attr-defined]
        if self._store is not None:
            self._store.close()
            _log.info("runtime stopped")
        if self._lock is not None:
            # Every instance is gone by now (or start-up failed before launching any).
            self.layout.remove_outside_sockets()
            self._lock.release()
        self._scheduler = self._prestart = self._server = self._cache = None
        self._store = self._lock = None


def _instance_credentials(opts: RuntimeOptions) -> InstanceCredentials:
    """Instances are clients of both servers: they get the token, and with TLS the certificate
    to trust (it is its own CA when self-signed) unless the environment names a CA already."""
    ca_file = None
    if opts.tls_cert is not None and not os.environ.get("FLAME_CA_FILE"):
        ca_file = opts.tls_cert.resolve()
    return InstanceCredentials(token=opts.token, ca_file=ca_file)


def _frontend_server(opts: RuntimeOptions) -> grpc.aio.Server:
    return grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", opts.max_message_bytes),
            ("grpc.max_send_message_length", opts.max_message_bytes),
            # gRPC cancels a call that waited this long for the server to pick it up (default
            # 30 s): under a burst on a busy machine that turned queued CreateTask calls into
            # CANCELLED. A queued call should wait for its own deadline instead.
            ("grpc.server_max_unrequested_time_in_server", UNREQUESTED_CALL_SECONDS),
        ],
        # The token check runs first: an unauthenticated caller learns nothing about parsing.
        interceptors=[
            *([_auth.TokenInterceptor(opts.token)] if opts.token else []),
            MalformedRequestInterceptor(),
        ],
    )


async def serve(opts: RuntimeOptions) -> None:
    """Run the runtime until SIGTERM/SIGINT (or the exit of ``opts.exit_with_pid``); the home
    lock must be free (else ConfigError)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runtime = Runtime(opts)
    await runtime.start()
    follow = (
        None
        if opts.exit_with_pid is None
        else asyncio.ensure_future(_stop_after_exit_of(opts.exit_with_pid, stop))
    )
    try:
        await stop.wait()
        _log.info("runtime stopping")
    finally:
        if follow is not None:
            follow.cancel()
        await runtime.stop()


async def _stop_after_exit_of(pid: int, stop: asyncio.Event) -> None:
    await wait_for_exit(pid)
    _log.info("stopping: the process this runtime follows exited", pid=pid)
    stop.set()
