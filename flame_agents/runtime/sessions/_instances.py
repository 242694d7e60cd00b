"""The live instances of a session, as the scheduler sizes them and their runners drive them.

An :class:`Instance` is one service process bound to one session (its state in Flame's executor
terms, its grant, the task it runs, the stop of a cancelled task); :class:`SessionInstances` is a
session's set of them, next to the board's view of its tasks, with the demand the scheduler
sizes them to.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from flame_agents.runtime._launch import ServiceProcess
from flame_agents.runtime.sessions._cancel import Cancelling
from flame_agents.runtime.sessions._resources import Allocation
from flame_agents.runtime.sessions._rows import SessionRow
from flame_agents.runtime.sessions._views import SessionView

__all__ = [
    "EXECUTOR_BINDING",
    "EXECUTOR_BOUND",
    "EXECUTOR_UNBINDING",
    "Instance",
    "SessionInstances",
]

EXECUTOR_BINDING = 3
EXECUTOR_BOUND = 4
EXECUTOR_UNBINDING = 5


@dataclass(eq=False)
class Instance:
    """One instance of a session, as the scheduler and its runner see it."""

    id: str
    session: SessionInstances
    allocation: Allocation | None = None
    """What the ledger granted it (None: its session's resreq is not accounted)."""
    visible_gpus: tuple[str, ...] | None = None
    """Its ``CUDA_VISIBLE_DEVICES`` (None: inherit the runtime's)."""
    process: ServiceProcess | None = None
    state: int = EXECUTOR_BINDING
    release: bool = False
    """Set when it should leave (its runner then stops it)."""
    task: int | None = None
    """The task it runs now."""
    cancelling: Cancelling | None = None
    """The stop of its task, once a client cancelled it."""
    task_timeout: float | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None


@dataclass(eq=False)
class SessionInstances:
    """A session's instances; its tasks are the board's :class:`~._board.SessionView`."""

    view: SessionView
    instances: set[Instance] = field(default_factory=set)
    idle: deque[Instance] = field(default_factory=deque)
    bind_failures: int = 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when none of its instances runs a task."""
    waiting_for: tuple[str, ...] = ()
    """Resources its next instance waits for (logged once per wait)."""

    @property
    def id(self) -> str:
        return self.view.id

    @property
    def row(self) -> SessionRow:
        return self.view.row

    @property
    def closed(self) -> bool:
        return self.view.closed

    @property
    def paused(self) -> str | None:
        return self.view.paused

    @property
    def accounted(self) -> bool:
        """Whether its instances hold resources: only a resreq the client gave counts."""
        return self.row.spec.HasField("resreq")

    def busy(self) -> bool:
        """Whether one of its instances runs a task."""
        return any(inst.task is not None for inst in self.instances)

    def cap(self) -> int | None:
        spec = self.row.spec
        return int(spec.max_instances) if spec.HasField("max_instances") else None

    def task_demand(self) -> int:
        demand = len(self.view.pending) + len(self.view.running)
        cap = self.cap()
        return demand if cap is None else min(demand, cap)

    def total_demand(self) -> int:
        demand = max(
            len(self.view.pending) + len(self.view.running), int(self.row.spec.min_instances)
        )
        cap = self.cap()
        return demand if cap is None else min(demand, cap)
