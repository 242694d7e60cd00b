"""The runtime's home folder: its layout, and the lock that allows one runtime per home.

Layout: ``flame.db``, ``cache/``, ``logs/``, ``work/``,
``runtime.lock``, ``runtime.json``, and instance sockets in ``sock/`` -- or, when that path is
too long for an AF_UNIX address (108 bytes), in a short per-home folder under the temp dir.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from flame_agents.config import instance_socket_dir, runtime_lock_path
from flame_agents.errors import ConfigError

__all__ = ["EndpointHistory", "HomeLayout", "HomeLock", "kill_orphans"]


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
        return runtime_lock_path(self.home)

    @property
    def endpoints(self) -> Path:
        """The endpoints earlier runs of this home served (see :class:`EndpointHistory`)."""
        return self.home / "endpoints.json"

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


@dataclass(frozen=True)
class EndpointHistory:
    """The ports the last run of a home used, and every endpoint its cache ever advertised.

    A restart asks for the same ports again, so refs and clients keep working; when a port is
    taken, the cache's earlier endpoints still name it, so object refs made by an earlier run are
    served by the current one (see ``docs/runtime.md``, restarts).
    """

    frontend_port: int = 0
    cache_port: int = 0
    cache_endpoints: tuple[str, ...] = field(default=())

    @classmethod
    def load(cls, layout: HomeLayout) -> EndpointHistory:
        """The recorded history, or an empty one (first run, or a file that does not parse)."""
        try:
            doc = json.loads(layout.endpoints.read_text())
            return cls(
                frontend_port=int(doc.get("frontend_port", 0)),
                cache_port=int(doc.get("cache_port", 0)),
                cache_endpoints=tuple(str(e) for e in doc.get("cache_endpoints", ())),
            )
        except (OSError, ValueError, TypeError, AttributeError):
            return cls()

    def former(self, current: str) -> tuple[str, ...]:
        """Cache endpoints of earlier runs other than ``current``."""
        return tuple(e for e in self.cache_endpoints if e != current)

    def record(self, layout: HomeLayout, *, frontend_port: int, cache_endpoint: str | None) -> None:
        """Save this run's ports and add its cache endpoint (atomically: temp file, rename)."""
        endpoints = self.cache_endpoints
        cache_port = self.cache_port
        if cache_endpoint:
            if cache_endpoint not in endpoints:
                endpoints = (*endpoints, cache_endpoint)
            cache_port = int(cache_endpoint.rsplit(":", 1)[1])
        doc = {
            "frontend_port": frontend_port,
            "cache_port": cache_port,
            "cache_endpoints": list(endpoints),
        }
        tmp = layout.endpoints.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, layout.endpoints)


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


_PROBE_GRACE_SECONDS = 0.5
"""How long a starting runtime retries a lock that may only be held by a liveness probe."""


class HomeLock:
    """An exclusive flock on ``<home>/runtime.lock`` holding the owner's pid."""

    def __init__(self, layout: HomeLayout) -> None:
        self._path = layout.lock
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ConfigError naming the pid of the runtime that holds it."""
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            self._take(fd)
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

    @staticmethod
    def _take(fd: int) -> None:
        # Clients probe liveness with a shared lock held for an instant
        # (config.runtime_serves_home): such a probe must not make a start fail.
        deadline = time.monotonic() + _PROBE_GRACE_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def release(self) -> None:
        """Drop the lock (the file stays; a stale file without a lock means nothing)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
