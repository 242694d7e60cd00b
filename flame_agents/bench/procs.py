"""Start baseline processes that announce readiness on stdout, and always stop them.

Baseline servers run as real processes (like our runtime and instances do), each in its own
process group so that stopping one also stops anything it spawned. A child prints one line
``READY <port>`` once it serves; :func:`spawn_ready` waits for that line with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from flame_agents.errors import InternalError

__all__ = ["ReadyProcess", "rss_mib", "running", "spawn_ready", "stop_process"]


@dataclass
class ReadyProcess:
    """A started child process and the port it announced."""

    proc: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        """The child's pid (also its process group id)."""
        return self.proc.pid


def spawn_ready(module: str, args: Sequence[str] = (), *, timeout: float = 30.0) -> ReadyProcess:
    """Run ``python -m module *args`` and wait for its ``READY <port>`` line.

    Raises InternalError with the child's stderr when it exits or stays silent past ``timeout``;
    the child is stopped in that case.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # own process group: stop_process() kills the whole tree
    )
    try:
        port = _await_ready(proc, timeout=timeout)
    except BaseException:
        stop_process(proc)
        raise
    return ReadyProcess(proc=proc, port=port)


def _await_ready(proc: subprocess.Popen[bytes], *, timeout: float) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                break
            if sel.select(timeout=min(left, 0.5)):
                line = proc.stdout.readline().decode(errors="replace").strip()
                if line.startswith("READY "):
                    return int(line.split()[1])
                if not line and proc.poll() is not None:
                    break
    finally:
        sel.close()
    err = b""
    if proc.poll() is not None and proc.stderr is not None:
        err = proc.stderr.read()[-2000:]
    raise InternalError(
        f"baseline process {proc.args!r} did not become ready within {timeout:.0f} s"
        f" (exit code {proc.returncode}); stderr tail: {err.decode(errors='replace')}",
    )


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 5.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``timeout``; idempotent."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@contextlib.contextmanager
def running(
    module: str, args: Sequence[str] = (), *, timeout: float = 30.0
) -> Iterator[ReadyProcess]:
    """Context manager form of :func:`spawn_ready` that stops the child on exit, even on error."""
    child = spawn_ready(module, args, timeout=timeout)
    try:
        yield child
    finally:
        stop_process(child.proc)


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (psutil when installed, else /proc on Linux)."""
    try:
        import psutil
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        raise
    return float(psutil.Process(pid).memory_info().rss) / (1024.0 * 1024.0)
