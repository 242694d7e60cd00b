"""LocalRuntime: an embedded runtime on a temporary home, for tests and examples.

::

    with LocalRuntime(set_env=False) as rt, rt.connect() as conn:
        service.Session("echo-app", connection=conn)  # bound to this runtime, no environment
        rt.restart(kill=True)                         # same home, same ports: state survives

    with LocalRuntime() as rt:       # the default also exports FLAME_ENDPOINT etc. for the body
        ...                          # so clients without a connection find it too

Several runtimes can be alive at once, each with its own connections.

Leaving the block stops the runtime and every instance process it started, even when the body
raised, and removes the temporary home.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from flame_agents.config import RuntimeInfo, instance_socket_dir
from flame_agents.embedded import start_runtime, stop_runtime
from flame_agents.errors import InvalidStateError

if TYPE_CHECKING:
    from flame_agents.core import Connection

__all__ = ["LocalRuntime"]

_ENV_KEYS = ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT", "FLAME_AGENTS_HOME")


def _reset_clients() -> None:
    # The core connection and the cache clients are process-wide: after the environment
    # changes they must be re-created to point at this runtime.
    with contextlib.suppress(ImportError):
        from flame_agents.core import reset_default_connection

        reset_default_connection()
    with contextlib.suppress(ImportError):
        from flame_agents.cache import reset_clients

        reset_clients()


class LocalRuntime:
    """A runtime process on its own (temporary) home, managed as a context manager."""

    def __init__(
        self,
        home: Path | str | None = None,
        *,
        set_env: bool = True,
        extra_args: Sequence[str] = (),
        token: str | None = None,
        follow_process: bool = True,
    ) -> None:
        """Prepare (not start) a runtime.

        ``home``: keep state there (not removed on exit); default a fresh temp dir that is
        removed. ``set_env``: export the endpoints in ``os.environ`` for the body (and point
        the process's default clients at this runtime); with ``set_env=False`` the environment
        is left alone and clients get this runtime through :meth:`connect`. ``extra_args``:
        more ``python -m flame_agents.runtime`` options (e.g. ``["--max-instances", "2"]``).
        ``token``: protect the runtime with this shared token (``env()`` then carries
        ``FLAME_AGENTS_TOKEN`` so clients send it). ``follow_process``: the runtime stops by
        itself when this process exits, even by SIGKILL (an interrupted test run leaves no
        runtime or instance behind); turn it off for a runtime that must outlive its starter.
        """
        self._given_home = home is not None
        self.home = Path(home).resolve() if home is not None else None
        self._set_env = set_env
        self._extra_args = tuple(extra_args)
        self.token = token
        """The runtime's shared token, or None."""
        self._follow_process = follow_process
        self._proc: subprocess.Popen[bytes] | None = None
        self._info: RuntimeInfo | None = None
        self._saved_env: dict[str, str | None] = {}
        self._ports = (0, 0)
        self._connections: list[Connection] = []

    # -- attributes -------------------------------------------------------------------------

    def _require(self) -> RuntimeInfo:
        if self._info is None:
            raise InvalidStateError("LocalRuntime is not running; use it as a context manager")
        return self._info

    @property
    def endpoint(self) -> str:
        """Frontend URL (``http://127.0.0.1:<port>``)."""
        return self._require().endpoint

    @property
    def cache_endpoint(self) -> str:
        """Object cache URL (``grpc://127.0.0.1:<port>``)."""
        return self._require().cache_endpoint

    @property
    def pid(self) -> int:
        """Process id of the runtime."""
        return self._require().pid

    def env(self) -> dict[str, str]:
        """The environment that points clients at this runtime."""
        info = self._require()
        env = {
            "FLAME_ENDPOINT": info.endpoint,
            "FLAME_CACHE_ENDPOINT": info.cache_endpoint,
            "FLAME_AGENTS_HOME": str(self.home),
        }
        if self.token is not None:
            env["FLAME_AGENTS_TOKEN"] = self.token
        return env

    def connect(self, **options: Any) -> Connection:
        """A new client connection to this runtime, found without the environment.

        Pass it on: ``core`` calls as its methods, ``service.Session(..., connection=c)``,
        ``AgentSession(..., connection=c)``. It carries the runtime's token and stores new
        objects in this runtime's cache. ``options`` go to :class:`~flame_agents.core.Connection`
        (``ca_file``, ``rpc_timeout``, ...). It outlives :meth:`restart` (same ports) and is
        closed with the runtime, or earlier by ``close()``/``with``.
        """
        from flame_agents.core import Connection

        info = self._require()
        conn = Connection(
            info.endpoint, cache_endpoint=info.cache_endpoint, token=self.token, **options
        )
        self._connections.append(conn)
        return conn

    def instance_pids(self) -> list[int]:
        """Pids of the runtime's live descendants (instance processes and their children).

        Spare prestarted interpreters are left out until they are handed a launch.
        """
        import psutil

        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [
            c.pid
            for c in children
            if c.is_running()
            and c.status() != psutil.STATUS_ZOMBIE
            # Prestarted interpreters waiting for a launch are not instances (yet).
            and not c.name().startswith("flame-spare")
        ]

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> LocalRuntime:
        """Start the runtime (on the remembered ports after a restart)."""
        if self.home is None:
            self.home = Path(tempfile.mkdtemp(prefix="flame-agents-rt-")).resolve()
        extra_args = self._extra_args
        if self._follow_process:
            extra_args = (*extra_args, "--exit-with-pid", str(os.getpid()))
        if self.token is not None:
            # A file, not --token: other users can read a process's command line.
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
            token_file = self.home / "token"
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(self.token)
            extra_args = (*extra_args, "--token-file", str(token_file))
        self._proc, self._info = start_runtime(
            self.home,
            port=self._ports[0],
            cache_port=self._ports[1],
            extra_args=extra_args,
        )
        self._ports = (_port(self._info.endpoint), _port(self._info.cache_endpoint))
        if self._set_env:
            for key, value in self.env().items():
                self._saved_env.setdefault(key, os.environ.get(key))
                os.environ[key] = value
            _reset_clients()
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Stop the runtime (SIGTERM, or SIGKILL of the runtime only) and reap it."""
        if self._info is None or self.home is None:
            return
        stop_runtime(self.home, kill=kill)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=30)
        self._proc = None
        self._info = None

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same home and the same ports."""
        self.stop(kill=kill)
        self.start()

    def close(self) -> None:
        """Stop everything (runtime, instance process groups), close the connections handed
        out, restore env, remove temp home."""
        leftovers: list[int] = []
        for conn in self._connections:
            conn.close()
        self._connections.clear()
        try:
            if self._info is not None:
                with contextlib.suppress(Exception):
                    leftovers = self.instance_pids()
                self.stop()
        finally:
            for pid in leftovers:
                # Instances live in their own process groups; whatever survived the runtime's
                # shutdown is killed with its group.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if self._set_env:
                for key, old in self._saved_env.items():
                    if old is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = old
                self._saved_env.clear()
                _reset_clients()
            if self.home is not None:
                _remove_socket_dir(self.home)
                if not self._given_home:
                    shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> LocalRuntime:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].rstrip("/")) if url else 0


def _remove_socket_dir(home: Path) -> None:
    sockets = instance_socket_dir(home)
    if not sockets.is_relative_to(home):
        shutil.rmtree(sockets, ignore_errors=True)
