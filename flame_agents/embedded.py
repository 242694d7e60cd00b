"""Start, find and stop the embedded runtime process; resolve endpoints with it as the fallback.

A leaf module (only config, errors, _logging and the standard library), so clients can import
it cheaply. :func:`current_endpoints` is what the core and cache clients call: the configured
endpoints (arguments, environment, flame.yaml) when there are any, else a local runtime under
:func:`flame_agents.config.agents_home`, started on first use and reused afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from flame_agents import _logging
from flame_agents.config import (
    Endpoints,
    RuntimeInfo,
    agents_home,
    instance_socket_dir,
    process_alive,
    read_runtime_info,
    resolve_endpoints,
    runtime_info_path,
)
from flame_agents.errors import ConfigError, RuntimeUnavailableError

__all__ = [
    "current_endpoints",
    "ensure_runtime",
    "runtime_command",
    "start_runtime",
    "stop_runtime",
]

_log = _logging.get_logger(__name__)
_EXIT_HOME_IN_USE = 2
_detached: list[subprocess.Popen[bytes]] = []
"""Runtimes started by ensure_runtime: kept referenced so no Popen is collected while alive."""
_announced: set[str] = set()


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def runtime_command(
    home: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    cache_port: int = 0,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line of a runtime process for ``home`` (this interpreter, ``-m``)."""
    return [
        sys.executable,
        "-m",
        "flame_agents.runtime",
        "--home",
        str(home),
        "--host",
        host,
        "--port",
        str(port),
        "--cache-port",
        str(cache_port),
        *extra_args,
    ]


def start_runtime(
    home: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    cache_port: int = 0,
    timeout: float = 30,
    extra_args: Sequence[str] = (),
) -> tuple[subprocess.Popen[bytes], RuntimeInfo]:
    """Start a runtime for ``home`` in the background and wait until it serves.

    The process is detached (own session) and logs to ``<home>/logs/runtime.log``.
    ``extra_args`` are passed to ``python -m flame_agents.runtime`` (e.g. ``--max-instances``).
    Raises ConfigError when another runtime holds the home, RuntimeUnavailableError (with the
    log tail) when the process dies or does not become ready within ``timeout`` seconds.
    """
    home = Path(home).expanduser().resolve()
    logs = home / "logs"
    logs.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    log_path = logs / "runtime.log"
    cmd = runtime_command(home, host=host, port=port, cache_port=cache_port, extra_args=extra_args)
    # The log may hold task errors and paths: private to the user, like the rest of the home.
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        return proc, _wait_ready(proc, home, log_path, timeout)
    except BaseException:
        # Not ready (or interrupted while waiting): never leave a half-started runtime behind.
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise


def _wait_ready(
    proc: subprocess.Popen[bytes], home: Path, log_path: Path, timeout: float
) -> RuntimeInfo:
    """Wait until ``proc`` publishes its runtime.json; raise with the log tail if it cannot."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        info = read_runtime_info(home)
        if info is not None and info.pid == proc.pid:
            return info
        rc = proc.poll()
        if rc is not None:
            tail = _log_tail(log_path)
            if rc == _EXIT_HOME_IN_USE:
                raise ConfigError(
                    f"runtime for {home} refused to start:\n{tail}", home=str(home), exit_code=rc
                )
            raise RuntimeUnavailableError(
                f"runtime for {home} exited with code {rc} during start-up; log tail:\n{tail}",
                home=str(home),
                exit_code=rc,
            )
        if time.monotonic() >= deadline:
            raise RuntimeUnavailableError(
                f"runtime for {home} was not ready within {timeout:g}s; log tail:\n"
                f"{_log_tail(log_path)}",
                home=str(home),
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def ensure_runtime(home: Path | str | None = None) -> RuntimeInfo:
    """The live runtime of ``home`` (default: agents_home()), starting one if none runs.

    Safe when several processes race: starters serialize on ``<home>/start.lock`` and the
    losers reuse the winner's runtime.
    """
    path = Path(home).expanduser() if home is not None else agents_home()
    info = read_runtime_info(path)
    if info is not None:
        return info
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / "start.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        info = read_runtime_info(path)
        if info is not None:
            return info
        proc, info = start_runtime(path)
        _detached.append(proc)
        return info
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _gone(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        # Reap it if it is our child, else it lingers as a zombie.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
    return not process_alive(pid)  # a zombie nobody reaps counts as gone


def _reap(pid: int) -> None:
    """Collect the exit status of a runtime this process started and that has now exited (so
    no zombie, and no "subprocess is still running" warning at interpreter exit)."""
    for proc in [p for p in _detached if p.pid == pid]:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
            _detached.remove(proc)


def stop_runtime(home: Path | str, *, timeout: float = 20, kill: bool = False) -> bool:
    """Stop the runtime of ``home``; False if none was running.

    Graceful (SIGTERM: instances leave and stop) unless ``kill``, which SIGKILLs the runtime
    only (its instances die with it). A runtime that ignores SIGTERM for ``timeout`` seconds
    is killed.
    """
    path = Path(home).expanduser()
    info = read_runtime_info(path)
    if info is None:
        return False
    sig = signal.SIGKILL if kill else signal.SIGTERM
    try:
        os.kill(info.pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while not _gone(info.pid):
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.02)
    _reap(info.pid)
    if kill:
        with contextlib.suppress(FileNotFoundError):
            runtime_info_path(path).unlink()
    sockets = instance_socket_dir(path.resolve())
    if path.resolve() not in sockets.parents:
        # A killed runtime cannot remove its temp-dir socket folder; it would outlive the home.
        shutil.rmtree(sockets, ignore_errors=True)
    return True


def current_endpoints(
    endpoint: str | None = None, *, cache_endpoint: str | None = None
) -> Endpoints:
    """Where to connect: the configured endpoints, else the embedded runtime (started if needed).

    The first use of the embedded runtime in a process logs one line naming it.
    """
    resolved = resolve_endpoints(endpoint, cache_endpoint=cache_endpoint)
    if resolved is not None:
        return resolved
    home = agents_home()
    info = ensure_runtime(home)
    if info.endpoint not in _announced:
        _announced.add(info.endpoint)
        _log.info(f"using embedded runtime at {info.endpoint} (home {home})")
    return Endpoints(
        endpoint=info.endpoint,
        cache_endpoint=cache_endpoint or info.cache_endpoint,
        ca_file=None,
        source="embedded",
    )
