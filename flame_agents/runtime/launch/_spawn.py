"""Spawning service processes under the parent-death exec shim, and reading their pipes.

Shared by the instance launcher (``_launched_process``) and the pool of prestarted interpreters
(``_prestart``): both start processes the same way, and both learn about a process's progress
from bytes it writes to a pipe (the readiness byte, a spare's warm/accept answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Mapping

__all__ = ["PipeReader", "launch_argv"]

_LAUNCHER = """
import ctypes, os, sys
ctypes.CDLL(None).prctl(1, 9)
if os.getppid() != int(sys.argv[1]):
    os._exit(1)
try:
    os.execv(sys.argv[2], sys.argv[2:])
except OSError as exc:
    sys.stderr.write(f"cannot execute {sys.argv[2]!r}: {exc}\\n")
    os._exit(127)
"""
"""Sets PR_SET_PDEATHSIG=SIGKILL, then execs the service: if the runtime dies, even by SIGKILL,
the kernel kills the instance too, so no service outlives its runtime. A separate tiny program
because a ``preexec_fn`` runs Python in a child forked from a multi-threaded (gRPC) process,
which can crash; the ppid check closes the race with a runtime that died before the prctl."""


def resolve_command(command: str, env: Mapping[str, str]) -> str:
    """The executable a launch runs: a bare name is looked up on the instance's PATH."""
    # No shell and no PATH search in execv: resolve a bare name against the instance's PATH.
    if os.sep in command:
        return command
    return shutil.which(command, path=env.get("PATH")) or command


def launch_argv(exe: str, args: list[str]) -> list[str]:
    """argv that runs ``exe args...`` through the parent-death shim."""
    return [sys.executable, "-S", "-c", _LAUNCHER, str(os.getpid()), exe, *args]


class PipeReader:
    """The read end of a pipe a child writes short messages to, read on the event loop."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.data = bytearray()
        """Everything read so far."""
        self.eof = False
        """True once every write end is closed (the child and its children exited)."""
        self._loop = asyncio.get_running_loop()
        self._changed: asyncio.Future[None] = self._loop.create_future()
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.data += chunk
        else:
            self.eof = True
            self._loop.remove_reader(self.fd)
        if not self._changed.done():
            self._changed.set_result(None)

    def changed(self) -> asyncio.Future[None]:
        """A future done at the next read, or at once after end of file.

        Check the data before awaiting it: a read that happened earlier is not replayed.
        """
        if self._changed.done():
            self._changed = self._loop.create_future()
            if self.eof:
                self._changed.set_result(None)
        return self._changed

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds (checked at each read); False at eof or timeout."""
        loop = self._loop
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if self.eof or remaining <= 0:
                return predicate()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.changed()), remaining)
        return True

    def close(self) -> None:
        """Stop reading and close the descriptor (idempotent)."""
        if self.fd < 0:
            return
        if not self.eof:
            self._loop.remove_reader(self.fd)
            self.eof = True
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1
