"""The runtime's home folder: its layout, and the lock that allows one runtime per home.

Layout: ``flame.db``, ``cache/``, ``logs/``, ``work/``,
``runtime.lock``, ``runtime.json``, and instance sockets in ``sock/`` -- or, when that path is
too long for an AF_UNIX address (108 bytes), in a short per-home folder under the temp dir.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from flame_agents.config import instance_socket_dir
from flame_agents.errors import ConfigError

__all__ = ["HomeLayout", "HomeLock", "kill_orphans"]


@dataclass(frozen=True)
class HomeLayout:
    """Paths inside one runtime home."""

    home: Path

    @property
    def db(self) -> Path:
        """The sqlite database of applications, sessions, tasks and events."""
        return self.home / "flame.db"

    @property
    def cache(self) -> Path:
        """Root of the object cache's disk store."""
        return self.home / "cache"

    @property
    def logs(self) -> Path:
        """runtime.log and the instances' ``<executor>.out`` / ``.err``."""
        return self.home / "logs"

    @property
    def work(self) -> Path:
        """Parent of the per-instance working directories."""
        return self.home / "work"

    @property
    def lock(self) -> Path:
        """The flock that makes a home single-runtime."""
        return self.home / "runtime.lock"

    @property
    def sockets(self) -> Path:
        """Folder of instance sockets, short enough for AF_UNIX."""
        return instance_socket_dir(self.home)

    def create(self) -> None:
        """Create the home (mode 0700) and its folders."""
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        for sub in (self.cache, self.logs, self.work):
            sub.mkdir(exist_ok=True)
        self.sockets.mkdir(mode=0o700, parents=True, exist_ok=True)

    def remove_outside_sockets(self) -> None:
        """Remove the socket folder when it lies outside the home (the short temp-dir form).

        Called at a clean stop, once every instance is gone: a folder inside the home goes with
        the home, but one under the temp dir would otherwise outlive every runtime.
        """
        if self.home not in self.sockets.parents:
            shutil.rmtree(self.sockets, ignore_errors=True)

    def clear_leftovers(self) -> None:
        """Remove instance sockets and work folders a runtime killed by SIGKILL left behind.

        Only called with the home lock held, so no live runtime of this home exists: any
        process still serving (or spawned by) one of its instances is an orphan, killed here.
        """
        kill_orphans(self.sockets)
        for sock in self.sockets.glob("*.sock"):
            with contextlib.suppress(OSError):
                sock.unlink()
        for folder in self.work.iterdir():
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)


def kill_orphans(socket_dir: Path) -> int:
    """SIGKILL processes whose FLAME_INSTANCE_ENDPOINT lies in ``socket_dir``; returns how many.

    Instances die with their runtime (parent-death signal), but processes they spawned do not.
    The environment variable is inherited, so it identifies them without a pid file that could
    name a recycled pid. Linux only (``/proc``); elsewhere nothing is done.
    """
    marker = f"FLAME_INSTANCE_ENDPOINT={socket_dir}{os.sep}".encode()
    proc = Path("/proc")
    killed = 0
    if not proc.is_dir():
        return 0
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours
        if any(var.startswith(marker) for var in environ.split(b"\0")):
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


class HomeLock:
    """An exclusive flock on ``<home>/runtime.lock`` holding the owner's pid."""

    def __init__(self, layout: HomeLayout) -> None:
        self._path = layout.lock
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ConfigError naming the pid of the runtime that holds it."""
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"another runtime (pid {holder}) already serves home {self._path.parent}; "
                "stop it first (flame-agents down) or choose another --home",
                home=str(self._path.parent),
                pid=holder,
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays; a stale file without a lock means nothing)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
