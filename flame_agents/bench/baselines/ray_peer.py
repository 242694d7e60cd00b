"""The peer: stateful Ray actors doing the same work as our services (when Ray is installed).

Ray is the usual way to keep state in a Python process and call it from elsewhere, so a Ray
actor call is the figure a user would compare us with. Ray is optional (the ``bench`` extra):
imported by name, so neither the package nor mypy need it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import threading
from typing import Any

__all__ = ["BenchActor", "RayPeer"]


class BenchActor:
    """The state and methods our benchmark services have, as a plain class Ray can host."""

    def __init__(self) -> None:
        self.history: list[str] = []
        self.objects: dict[str, bytes] = {}

    def echo(self, text: str) -> tuple[str, int]:
        """The seed echo: append to the session history, reply with the upper-cased text."""
        self.history.append(text)
        return text.upper(), len(self.history)

    def noop(self, data: bytes) -> bytes:
        """Return the input unchanged."""
        return data

    def put(self, key: str, data: bytes) -> int:
        """Store an object; returns its version (1)."""
        self.objects[key] = data
        return 1

    def get(self, key: str) -> bytes:
        """Return a stored object."""
        return self.objects[key]

    def patch(self, key: str, delta: bytes) -> int:
        """Append a delta to a stored object; returns its size."""
        self.objects[key] = self.objects[key] + delta
        return len(self.objects[key])

    def pid(self) -> int:
        """The actor's worker process id (for resident memory)."""
        return os.getpid()


class RayPeer:
    """A local Ray instance (started for the run, shut down on :meth:`close`) and its actors."""

    def __init__(self, ray: Any) -> None:
        self.ray = ray
        # num_cpus=0: many idle actors may share the 2 cores, as our idle instances do.
        self._actor_cls = ray.remote(num_cpus=0)(BenchActor)

    @classmethod
    def start_or_none(cls) -> RayPeer | None:
        """Start Ray on this machine only; None when ``ray`` is not importable."""
        try:
            ray = importlib.import_module("ray")
        except ImportError:
            return None
        # ray.init installs its own SIGTERM handler, which kills the driver at once; keep ours,
        # so a terminated suite still stops every process it started.
        previous = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(
                num_cpus=os.cpu_count() or 2,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="ERROR",
                configure_logging=False,
            )
        except Exception:
            with contextlib.suppress(Exception):
                ray.shutdown()  # whatever half-started must not outlive the run
            raise
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)
        return cls(ray)

    def actor(self) -> Any:
        """A new actor handle, ready (its first call has returned)."""
        handle = self._actor_cls.remote()
        self.ray.get(handle.pid.remote())
        return handle

    def call(self, handle: Any, method: str, *args: Any) -> Any:
        """Call ``method`` on ``handle`` and wait for the reply."""
        return self.ray.get(getattr(handle, method).remote(*args))

    def kill(self, handle: Any) -> None:
        """Stop one actor's worker process."""
        with contextlib.suppress(Exception):
            self.ray.kill(handle)

    def close(self) -> None:
        """Shut Ray down (stops every worker and the local raylet/GCS it started)."""
        with contextlib.suppress(Exception):
            self.ray.shutdown()
