"""Start one service process the way Flame's host shim does, and wait until it is ready.

A :class:`LaunchedProcess` is the process side of one executor (the Instance RPCs that drive it
are ``_instance``'s): a fresh process per session binding, spawned directly (no shell) in its
own process group with the application's command, arguments, environments and working directory,
and ``FLAME_INSTANCE_ENDPOINT`` naming a Unix socket (or, for a launch of the runtime's own
Python, handed to a prestarted interpreter: ``_prestart``). The application's package is
installed first when its spec names an installer (``_installer``). We wait (with a timeout,
unlike Flame) for the readiness byte on ``FLAME_AGENTS_READY_FD`` or the socket file, whichever
comes first, then for the gRPC channel to the socket. At the end the process group is sent
SIGTERM (SIGKILL after a grace period), the process reaped and the socket removed.

The channel's messages both ways are bounded by the runtime's ``--max-message-bytes`` (see
``_wire.limits``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from flame_agents._logging import get_logger
from flame_agents._wire import shim_pb2_grpc
from flame_agents._wire.limits import instance_hop_bytes
from flame_agents._wire.ready import READY_BYTE, READY_FD_ENV
from flame_agents.runtime._launch import (
    BIND_PROCESS_FAILED,
    BindError,
    LaunchSpec,
    describe_exit,
    expand_vars,
    stderr_tail_text,
    working_directory_error,
)
from flame_agents.runtime.launch._environment import instance_environment
from flame_agents.runtime.launch._installer import (
    BIND_INSTALL_FAILED,
    Installed,
    InstallError,
    PackageRequest,
    install,
)
from flame_agents.runtime.launch._prestart import PrestartPool, launch_target
from flame_agents.runtime.launch._spawn import PipeReader, launch_argv, resolve_command

__all__ = ["LaunchedProcess"]


class LaunchedProcess:
    """One service process bound to one session: started, ready on its Unix socket, ended."""

    def __init__(self, spec: LaunchSpec, *, prestart: PrestartPool | None = None) -> None:
        """``prestart``: the pool a launch of the runtime's own Python may take a spare from."""
        self.spec = spec
        self._prestart = prestart
        self.socket_path = spec.socket_dir / f"{spec.executor_id}.sock"
        self._proc: asyncio.subprocess.Process | None = None
        self._exit_waiter: asyncio.Task[int] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: shim_pb2_grpc.InstanceStub | None = None
        self._scratch = spec.work_root / spec.executor_id
        """Per-instance folder we own: the cwd without a working_directory, and TMPDIR."""
        self._entered = False
        self._ready: PipeReader | None = None
        self._ready_from = 0
        """Offset in the pipe's data after which the readiness byte counts."""
        self.prestarted = False
        """True when a prestarted interpreter runs this instance."""
        self.started_at: int | None = None
        """When the process started serving this instance (epoch ms; a spare: when it took the
        launch), None before."""
        # Named after the subclass's module, as are all its records (the Instance RPCs' too).
        self._log = get_logger(type(self).__module__).bind(
            executor_id=spec.executor_id, session_id=spec.session_id
        )
        self._package: Installed | None = None
        """What the application's installed package adds to the environment (see prepare)."""

    @property
    def pid(self) -> int | None:
        """Process id of the service (None before it started)."""
        return self._proc.pid if self._proc else None

    @property
    def exited(self) -> bool:
        """True once the service process is gone."""
        return self._proc is not None and self._proc.returncode is not None

    # -- launch -----------------------------------------------------------------------------

    def _environment(self, cwd: Path) -> dict[str, str]:
        return instance_environment(
            self.spec,
            cwd=cwd,
            socket_path=self.socket_path,
            scratch=self._scratch,
            package=self._package,
        )

    async def prepare(self) -> None:
        """Install the application's package if its spec names an ``installer`` (once per
        application and registration; see ``_installer``); raises BindError(10) on failure."""
        spec = self.spec
        if self._package is not None or not spec.app.installer:
            return
        try:
            self._package = await install(
                PackageRequest(
                    app_name=spec.app_name,
                    installer=spec.app.installer,
                    url=spec.app.url or None,
                    app_env={
                        e.name: expand_vars(e.value, os.environ) for e in spec.app.environments
                    },
                    registered=spec.app_created,
                    apps_dir=spec.apps_dir or spec.work_root.parent / "apps",
                    own_cache=spec.cache_endpoint,
                    former_caches=spec.former_cache_endpoints,
                    credentials=spec.credentials.environment(),
                )
            )
        except InstallError as exc:
            raise BindError(BIND_INSTALL_FAILED, str(exc)) from exc
        except OSError as exc:  # the home's apps folder: full disk, permissions
            raise BindError(
                BIND_INSTALL_FAILED,
                f"installing the package of application {spec.app_name} failed: {exc}",
            ) from exc

    async def start(self) -> None:
        """Spawn the process (or hand the launch to a prestarted interpreter) and wait for its
        socket; raises BindError(10) if its package cannot be installed, BindError(11) if it
        cannot start."""
        await self.prepare()
        spec = self.spec
        cwd = Path(spec.app.working_directory) if spec.app.working_directory else self._scratch
        try:
            if spec.app.working_directory:
                # Checked at registration too; never created on the user's behalf (it may be
                # anywhere on the machine), so a folder removed since is a bind failure.
                if problem := working_directory_error(spec.app.working_directory):
                    raise BindError(BIND_PROCESS_FAILED, problem)
            else:
                cwd.mkdir(parents=True, exist_ok=True)
            env = self._environment(cwd)
            command = expand_vars(spec.app.command, env) if spec.app.command else ""
            if not command:
                raise BindError(
                    BIND_PROCESS_FAILED, f"application {spec.app_name} has no command to run"
                )
            args = [expand_vars(a, env) for a in spec.app.arguments]
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            out_path = spec.log_dir / f"{spec.executor_id}.out"
            err_path = self._err_log()
            exe = resolve_command(command, env)
            if not await self._start_prestarted(exe, args, env, cwd, out_path, err_path):
                await self._spawn(exe, args, env, cwd, out_path, err_path)
        except BindError:
            raise
        except OSError as exc:
            raise BindError(BIND_PROCESS_FAILED, f"failed to start {command!r}: {exc}") from exc
        assert self._proc is not None
        self.started_at = int(time.time() * 1000)
        self._exit_waiter = asyncio.ensure_future(self._proc.wait())
        self._log.info(
            "instance started", pid=self._proc.pid, app=spec.app_name, prestarted=self.prestarted
        )
        try:
            await self._wait_ready()
        finally:
            if self._ready is not None:
                self._ready.close()
            if self.prestarted and self._prestart is not None:
                self._prestart.launched()

    async def _spawn(
        self,
        exe: str,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        out_path: Path,
        err_path: Path,
    ) -> None:
        """Start a fresh process, with the write end of a readiness pipe."""
        read_fd, write_fd = os.pipe()
        try:
            self._ready = PipeReader(read_fd)
        except BaseException:
            os.close(read_fd)
            os.close(write_fd)
            raise
        try:
            out = open(out_path, "wb")  # noqa: SIM115
            err = open(err_path, "wb")  # noqa: SIM115
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *launch_argv(exe, args),
                    cwd=str(cwd),
                    env={**env, READY_FD_ENV: str(write_fd)},
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    pass_fds=(write_fd,),
                )
            finally:
                out.close()
                err.close()
        finally:
            os.close(write_fd)

    async def _start_prestarted(
        self,
        exe: str,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        out_path: Path,
        err_path: Path,
    ) -> bool:
        """Hand the launch to a warm prestarted interpreter; False when none can take it."""
        pool = self._prestart
        if pool is None:
            return False
        target = launch_target(exe, args, cwd=cwd)
        if target is None:
            return False
        key = (exe, tuple(args), str(cwd), env.get("PYTHONPATH"))
        spare = pool.take(env, key=key)
        if spare is None:
            return False
        # The files exist (and are emptied) before the spare opens them, as for a fresh launch.
        out_path.open("wb").close()
        err_path.open("wb").close()
        try:
            declined = await spare.hand_off(
                target, env=env, cwd=cwd, out=out_path, err=err_path, timeout=self.spec.bind_timeout
            )
        except BaseException:
            pool.declined(spare, key=())  # cancelled (runtime stopping) before we own it
            raise
        if declined is not None:
            self._log.info("prestarted interpreter declined the launch", reason=declined)
            pool.declined(spare, key=key)
            return False
        self._proc = spare.proc
        self._ready = spare.pipe
        self._ready_from = 2  # after the spare's own "W" (warm) and "A" (accepted)
        self.prestarted = True
        return True

    async def _wait_ready(self) -> None:
        """Wait for the readiness byte or the socket file, then for the channel, both within
        the bind timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.bind_timeout
        assert self._exit_waiter is not None
        delay = 0.001
        # A service that knows the readiness pipe wakes us at once. For others (flamepy's) we
        # poll for the socket file: cheap, on the launch path only, and over once it exits.
        while not (self._signalled_ready() or self.socket_path.is_socket()):
            if self.exited:
                raise BindError(
                    BIND_PROCESS_FAILED,
                    f"service process exited before binding its socket "
                    f"({describe_exit(self._returncode())}){self._stderr_tail()}",
                )
            if loop.time() >= deadline:
                raise BindError(
                    BIND_PROCESS_FAILED,
                    f"service did not bind {self.socket_path} within "
                    f"{self.spec.bind_timeout:g}s{self._stderr_tail()}",
                )
            wake: set[asyncio.Future[Any]] = {self._exit_waiter}
            if self._ready is not None and not self._ready.eof:
                wake.add(self._ready.changed())
            await asyncio.wait(
                wake,
                timeout=min(delay, max(deadline - loop.time(), 0)),
                return_when=asyncio.FIRST_COMPLETED,
            )
            delay = min(delay * 2, 0.02)
        hop = instance_hop_bytes(self.spec.max_message_bytes)
        self._channel = grpc.aio.insecure_channel(
            f"unix:{self.socket_path}",
            options=[
                ("grpc.max_send_message_length", hop),
                ("grpc.max_receive_message_length", hop),
            ],
        )
        self._stub = shim_pb2_grpc.InstanceStub(self._channel)
        try:
            await asyncio.wait_for(self._channel.channel_ready(), max(deadline - loop.time(), 0.5))
        except asyncio.TimeoutError as exc:
            raise BindError(
                BIND_PROCESS_FAILED,
                f"service socket {self.socket_path} accepts no connection{self._stderr_tail()}",
            ) from exc

    def _signalled_ready(self) -> bool:
        ready = self._ready
        return ready is not None and READY_BYTE in ready.data[self._ready_from :]

    def _returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    def _err_log(self) -> Path:
        return self.spec.log_dir / f"{self.spec.executor_id}.err"

    def _stderr_tail(self) -> str:
        """``; last lines of its stderr (<log>): ...`` for a start-up failure's text."""
        return stderr_tail_text(self._err_log())

    # -- the process's end ---------------------------------------------------------------------

    def on_exit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) as soon as the process has exited."""
        if self._exit_waiter is not None:
            self._exit_waiter.add_done_callback(lambda _: callback())

    def exit_description(self) -> str:
        """How the process ended so far ('signal 9 (SIGKILL)', 'exit code 0', 'still running')."""
        return describe_exit(self._returncode())

    def terminate(self) -> None:
        """SIGTERM the process group now (runtime shutdown while a task runs)."""
        self._signal_group(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the process group now (a cancelled task past its grace period)."""
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    async def _shut_down(self) -> None:
        """SIGTERM/SIGKILL the group, reap the process, close the channel, remove the socket and
        the scratch folder."""
        if self._proc is not None and self._exit_waiter is not None:
            if not self.exited:
                self._signal_group(signal.SIGTERM)
                try:
                    await asyncio.wait_for(asyncio.shield(self._exit_waiter), self.spec.stop_grace)
                except asyncio.TimeoutError:
                    self._signal_group(signal.SIGKILL)
            # Always kill the rest of the group: children the service left behind must not leak.
            self._signal_group(signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._exit_waiter)
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close(None)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        shutil.rmtree(self._scratch, ignore_errors=True)
        self._log.info("instance stopped", exit=describe_exit(self._returncode()))
