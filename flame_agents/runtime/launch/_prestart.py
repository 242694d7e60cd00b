"""Prestarted interpreters: spare Python processes, already past their imports, for new instances.

Most of a Python service's start-up is the interpreter starting and importing grpc, protobuf,
pyarrow and flame_agents. The pool keeps ``size`` spare processes of the runtime's own
interpreter (:mod:`flame_agents.runtime.launch._spare`) that did exactly that and wait. A
launch whose command is that interpreter running a script (``python app.py ...``) or a module
(``python -m pkg ...``), with no interpreter flags, takes a warm spare instead of a new process:
the spare receives the launch (argv, environment, working directory, log files) and becomes
the service. Anything else, a launch while no spare is warm, or one the spare cannot serve
exactly like a fresh interpreter (see :func:`launch_target` and the spare's own check), starts
a fresh process as before.

A spare is started like any instance (the parent-death exec shim, its own session and process
group, the runtime's environment), so once handed over it is tracked, signalled and reaped like
a fresh one. A used spare is replaced in the background once the launches that took spares are
serving, so the refill never competes with the start it just served. The pool never holds more
than ``size`` spares and stops them all at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import site
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flame_agents._logging import get_logger
from flame_agents._wire.ready import READY_FD_ENV
from flame_agents.runtime.launch._spare import BOOT
from flame_agents.runtime.launch._spawn import PipeReader, launch_argv

__all__ = ["LaunchTarget", "PrestartPool", "Spare", "launch_target"]

_log = get_logger(__name__)

REFILL_DELAY = 0.2
"""Seconds between handing out a spare and starting its replacement (which takes a CPU for a
while): the launch that took the spare should have that CPU first."""

WARM_TIMEOUT = 120.0
"""Seconds a spare may spend importing before it is considered stuck and killed."""

MAX_FAILURES = 3
"""Spares in a row that die before they are warm, after which the pool stops trying."""

_STARTUP_ENV_PREFIXES = (
    "PYTHON",  # interpreter settings read once at start (PYTHONPATH is applied by the spare)
    "LD_",  # the dynamic loader
    "GLIBC_",
    "MALLOC_",
    "LANG",
    "LC_",  # the locale and filesystem encoding
    "GRPC_",  # read by gRPC's core when it loads
    "PROTOCOL_BUFFERS_",  # protobuf's implementation choice, read at import
    "ARROW_",  # pyarrow's memory pool, read at import
    "JE_",
)
"""Variables that shape an interpreter at start-up or modules at import: a spare started with
one set of them cannot stand in for a launch with another."""


@dataclass(frozen=True)
class LaunchTarget:
    """A launch a spare can run: the interpreter with a script or a module, and the rest."""

    exe: str
    """The command as resolved on PATH (becomes ``sys.executable``)."""
    args: list[str]
    """All arguments after the interpreter (becomes ``sys.orig_argv[1:]``)."""
    module: str | None
    """``-m`` module, or None for a script."""
    script: str | None
    """Script path as given, or None for a module."""
    argv: list[str]
    """Arguments after the module or script (``sys.argv[1:]``)."""


def launch_target(exe: str, args: list[str], *, cwd: Path) -> LaunchTarget | None:
    """What a spare would run for ``exe args``; None when the launch must be a fresh process."""
    if not _is_own_interpreter(exe) or not args:
        return None
    if args[0] == "-m":
        if len(args) < 2 or not args[1] or args[1].startswith("-"):
            return None
        return LaunchTarget(exe, list(args), args[1], None, list(args[2:]))
    script = args[0]
    # Only plain source files: a directory, zip or compiled file runs differently, and a missing
    # file must fail with the interpreter's own message.
    if script.startswith("-") or not script.endswith(".py") or not (cwd / script).is_file():
        return None
    return LaunchTarget(exe, list(args), None, script, list(args[1:]))


def _is_own_interpreter(exe: str) -> bool:
    # Same file and same bin folder: python and python3 of one virtual environment qualify, the
    # same base interpreter in another environment (other site-packages) does not.
    own = Path(sys.executable)
    path = Path(exe)
    if not path.is_absolute() or path.parent != own.parent:
        return False
    try:
        return os.path.samefile(path, own)
    except OSError:
        return False


def _startup_env_differs(spare: Mapping[str, str], launch: Mapping[str, str]) -> str | None:
    for name in sorted({*spare, *launch}):
        if name == "PYTHONPATH" or not name.startswith(_STARTUP_ENV_PREFIXES):
            continue
        if spare.get(name) != launch.get(name):
            return name
    if site.ENABLE_USER_SITE and spare.get("HOME") != launch.get("HOME"):
        return "HOME"  # it locates the user site-packages folder
    return None


class Spare:
    """One prestarted interpreter: its process and the read end of its pipe."""

    def __init__(
        self, proc: asyncio.subprocess.Process, pipe: PipeReader, child_fd: int, env: dict[str, str]
    ) -> None:
        self.proc = proc
        self.pipe = pipe
        self.child_fd = child_fd
        """Number of the pipe's write end in the spare (its ``FLAME_AGENTS_READY_FD``)."""
        self.env = env
        """The environment the spare started with."""

    @property
    def warm(self) -> bool:
        """True once the spare finished its imports and waits for a launch."""
        return self.proc.returncode is None and self.pipe.data[:1] == b"W"

    async def hand_off(
        self,
        target: LaunchTarget,
        *,
        env: Mapping[str, str],
        cwd: Path,
        out: Path,
        err: Path,
        timeout: float,
    ) -> str | None:
        """Give the spare a launch. None: it runs it now; else why it declined (it then exits)."""
        request = {
            "exe": target.exe,
            "args": target.args,
            "module": target.module,
            "script": target.script,
            "argv": target.argv,
            "env": {**env, READY_FD_ENV: str(self.child_fd)},
            "cwd": str(cwd),
            "out": str(out),
            "err": str(err),
        }
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request).encode())
            self.proc.stdin.close()
        except (OSError, RuntimeError) as exc:
            return f"spare unreachable: {exc}"
        answered = await self.pipe.wait_for(lambda: len(self.pipe.data) > 1, timeout)
        if not answered:
            return "spare did not answer"
        if self.pipe.data[1:2] == b"A":
            return None
        return bytes(self.pipe.data[2:]).decode(errors="replace") or "spare declined"

    def kill(self) -> None:
        """SIGKILL the spare's process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


class PrestartPool:
    """Keeps up to ``size`` warm spares and hands them to launches of the runtime's Python."""

    def __init__(self, size: int, *, work_dir: Path, log_path: Path) -> None:
        """``work_dir``: the spares' working directory; ``log_path``: where their output goes
        until they are handed a launch (import errors, for instance)."""
        self.size = max(0, size)
        self._work_dir = work_dir
        self._log_path = log_path
        self._spares: list[Spare] = []
        self._starting = 0
        self._launching = 0
        """Launches that took a spare and are still starting."""
        self._failures = 0
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._refill: asyncio.TimerHandle | None = None
        self._default_path: str | None = None
        """JSON of the interpreter's sys.path without PYTHONPATH (found once, see _spawn)."""
        self._declined: set[tuple[object, ...]] = set()
        """Launches a spare declined: they are not offered to spares again."""

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start filling the pool (returns at once)."""
        if self.size == 0:
            return
        self._fill()

    async def stop(self) -> None:
        """Stop every spare (and any being started) and wait for them to exit."""
        self._stopping = True
        if self._refill is not None:
            self._refill.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        spares, self._spares = self._spares, []
        await asyncio.gather(*(self._stop_spare(spare) for spare in spares))

    async def _stop_spare(self, spare: Spare) -> None:
        if spare.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(spare.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(spare.proc.wait(), 5)
            except asyncio.TimeoutError:
                spare.kill()
                with contextlib.suppress(Exception):
                    await spare.proc.wait()
        spare.kill()  # anything the spare itself started goes too
        spare.pipe.close()

    # -- handing out --------------------------------------------------------------------------

    def take(self, launch_env: Mapping[str, str], *, key: tuple[object, ...] = ()) -> Spare | None:
        """A spare that can stand in for a launch with ``launch_env``, or None.

        A warm spare if there is one, else one still importing: what it has left to do is less
        than a fresh process would have. The spare leaves the pool (the caller owns it from now
        on) and a refill is scheduled. ``key`` names the launch (see :meth:`declined`).
        """
        if self._stopping or (key and key in self._declined):
            return None
        live = [s for s in self._spares if s.proc.returncode is None]
        if not live:
            return None
        spare = next((s for s in live if s.warm), live[0])
        if (name := _startup_env_differs(spare.env, launch_env)) is not None:
            _log.debug("prestarted interpreter not used", reason=f"{name} differs")
            return None
        self._spares.remove(spare)
        self._launching += 1
        return spare

    def launched(self) -> None:
        """A launch that took a spare is serving (or failed): refill once no such launch is
        still starting, so warming a new spare never slows a start down."""
        self._launching = max(0, self._launching - 1)
        if self._launching == 0:
            self._schedule_refill()

    def declined(self, spare: Spare, *, key: tuple[object, ...]) -> None:
        """A spare declined launch ``key``: stop it, and launch ``key`` fresh from now on
        (its answer would not change, and each try costs a spare)."""
        if key:
            self._declined.add(key)
        self.discard(spare)
        self.launched()

    def discard(self, spare: Spare) -> None:
        """Stop a spare that was taken but not used (it declined the launch)."""
        task = asyncio.ensure_future(self._stop_spare(spare))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _schedule_refill(self) -> None:
        if self._refill is None and not self._stopping:
            loop = asyncio.get_running_loop()
            self._refill = loop.call_later(REFILL_DELAY, self._refill_now)

    def _refill_now(self) -> None:
        self._refill = None
        self._fill()

    # -- filling ------------------------------------------------------------------------------

    def _fill(self) -> None:
        while (
            not self._stopping
            and self._failures < MAX_FAILURES
            and len(self._spares) + self._starting < self.size
        ):
            self._starting += 1
            task = asyncio.ensure_future(self._start_spare())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _start_spare(self) -> None:
        try:
            spare = await self._spawn()
        except Exception:
            _log.exception("cannot start a prestarted interpreter")
            self._failures += 1
            return
        finally:
            self._starting -= 1
        if self._stopping:
            await self._stop_spare(spare)
            return
        # In the pool (and available) from now on, even while it still imports.
        self._spares.append(spare)
        asyncio.ensure_future(spare.proc.wait()).add_done_callback(
            lambda _: self._on_spare_exit(spare)
        )
        if await spare.pipe.wait_for(lambda: bool(spare.pipe.data), WARM_TIMEOUT):
            self._failures = 0
        elif spare in self._spares and spare.proc.returncode is None:
            spare.kill()  # stuck importing: its exit is counted as a failure below

    def _on_spare_exit(self, spare: Spare) -> None:
        if spare not in self._spares:
            return  # handed to a launch, or stopped by the pool
        self._spares.remove(spare)
        if not spare.pipe.data:
            self._failures += 1
            _log.warning(
                "prestarted interpreter failed to start",
                exit=spare.proc.returncode,
                log=str(self._log_path),
                disabled=self._failures >= MAX_FAILURES,
            )
        spare.pipe.close()
        self._schedule_refill()

    async def _spawn(self) -> Spare:
        # The runtime's own environment, PYTHONPATH included: instances inherit it, and the
        # spare then imports the very modules they would.
        env = dict(os.environ)
        if self._default_path is None:
            self._default_path = await _default_sys_path(env)
        read_fd, write_fd = os.pipe()
        try:
            pipe = PipeReader(read_fd)
        except BaseException:
            os.close(read_fd)
            os.close(write_fd)
            raise
        try:
            self._work_dir.mkdir(parents=True, exist_ok=True)
            with open(self._log_path, "ab") as log:
                proc = await asyncio.create_subprocess_exec(
                    *launch_argv(sys.executable, ["-c", BOOT, str(write_fd), self._default_path]),
                    cwd=str(self._work_dir),
                    env=env,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=log,
                    pass_fds=(write_fd,),
                    start_new_session=True,
                )
        except BaseException:
            pipe.close()
            raise
        finally:
            os.close(write_fd)
        return Spare(proc, pipe, write_fd, env)


async def _default_sys_path(env: Mapping[str, str]) -> str:
    """JSON of this interpreter's sys.path (after path0) in ``env`` without PYTHONPATH.

    A spare builds each launch's sys.path from it: the PYTHONPATH entries of the launch, then
    these, as the interpreter itself does at start.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import json, sys; print(json.dumps(sys.path[1:]))",
        env={k: v for k, v in env.items() if k != "PYTHONPATH"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise OSError(f"{sys.executable} could not report its sys.path")
    path = json.loads(out)
    assert isinstance(path, list)
    return json.dumps(path)
