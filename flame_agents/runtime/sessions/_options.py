"""Options of the scheduler: the limits a user sets (part of the runtime's options) and the
facts of one run (folders, endpoints) the runtime adds when it starts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from flame_agents._wire.limits import DEFAULT_MAX_MESSAGE_BYTES
from flame_agents.runtime._launch import InstanceCredentials

__all__ = ["SchedulerOptions", "SchedulingLimits", "default_concurrent_starts"]


def default_concurrent_starts() -> int:
    """Instances started at once by default: one per CPU, at least 2.

    A Python service spends its start-up importing on a CPU; starting 200 at once on 2 CPUs
    made each take minutes, past the bind timeout, so sessions paused under a burst of new
    sessions. Queued starts cost nothing, and each start is then as quick as on an idle
    machine (Ray limits worker start-up concurrency the same way).
    """
    return max(2, os.cpu_count() or 2)


@dataclass(frozen=True)
class SchedulingLimits:
    """How many instances, how long they may take, how often a task or a session is retried
    (the runtime's command line; :class:`~._server.RuntimeOptions` holds one)."""

    max_instances: int = 64
    """Cap on live instances across all sessions."""
    bind_timeout: float = 30.0
    """Seconds a launched service has to bind its socket (counted from its start)."""
    max_concurrent_starts: int | None = None
    """Instances starting (spawn -> bound socket) at once; the rest wait their turn (None: the
    number of CPUs, at least 2; see :func:`default_concurrent_starts`)."""
    bind_retry_limit: int = 5
    """Bind failures after which a session gets no more instances (event 1002)."""
    max_task_attempts: int = 3
    """Instance losses after which a task fails instead of being re-dispatched."""
    task_timeout: float | None = None
    """Default seconds a task may run (None = no limit); the application label
    ``flame-agents.task-timeout`` overrides it."""
    stop_grace: float = 5.0
    """Seconds between SIGTERM and SIGKILL when stopping an instance."""
    cancel_grace: float = 10.0
    """Seconds an instance has to stop a task it was asked to cancel; past them the instance is
    stopped (SIGKILL) and the task ends Cancelled all the same."""

    def concurrent_starts(self) -> int:
        """:attr:`max_concurrent_starts`, its default resolved."""
        if self.max_concurrent_starts is None:
            return default_concurrent_starts()
        return max(1, self.max_concurrent_starts)


@dataclass(frozen=True)
class SchedulerOptions:
    """Everything the scheduler needs: the user's limits and this run's folders and endpoints."""

    node_name: str
    """Node name shown in executor listings and bind-failure events."""
    socket_dir: Path
    work_root: Path
    log_dir: Path
    frontend_endpoint: str
    cache_endpoint: str | None
    former_cache_endpoints: tuple[str, ...] = ()
    """Endpoints earlier runs of this home's cache advertised: refs naming them are re-aimed."""
    limits: SchedulingLimits = field(default_factory=SchedulingLimits)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """Message limit between the runtime and its instances (``--max-message-bytes``); a reply
    over it fails its task once, without a re-dispatch."""
    credentials: InstanceCredentials = field(default_factory=InstanceCredentials)
    """What instances need to reach the runtime's servers (token, CA)."""
