"""What the :class:`~._board.TaskBoard` shows of a session, and whom it wakes.

A :class:`SessionView` is the board's in-memory view of one session (its Pending heap, its
Running and cancelling sets, its counters); the scheduler reads it and never changes it. A
:class:`BoardListener` (the scheduler) is told of the transitions that give it work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from flame_agents.runtime.sessions._rows import SessionRow
from flame_agents.types import SessionState, TaskState

__all__ = ["BoardListener", "SessionView"]


class BoardListener(Protocol):
    """Who is woken when there is work (the scheduler)."""

    def session_opened(self, view: SessionView) -> None:
        """A session is open (at its creation, or found open at start-up)."""

    def tasks_pending(self, view: SessionView) -> None:
        """The session has a new Pending task (created, or put back after a loss)."""

    def session_closed(self, view: SessionView) -> None:
        """The session closed: it gets no more tasks; running ones still finish."""

    def cancel_running(self, view: SessionView, tid: int) -> None:
        """Running task ``tid`` of the session was asked to stop: tell its instance."""


@dataclass(eq=False)
class SessionView:
    """What the board knows of one session; read it, never change it outside the board."""

    row: SessionRow
    pending: list[int] = field(default_factory=list)
    """Ids of its Pending tasks, a heap (the lowest id is dispatched first)."""
    running: set[int] = field(default_factory=set)
    """Ids of its Running tasks."""
    cancelling: set[int] = field(default_factory=set)
    """Ids of its Running tasks that were asked to stop (see :meth:`TaskBoard.cancel_tasks`)."""
    paused: str | None = None
    """Why it starts no instances (bind failures, a resreq larger than the machine), or None."""
    next_id: int | None = None
    """The id of its next task (None until its first task here)."""
    counts: dict[TaskState, int] | None = None
    """Tasks by state (None until first asked for)."""

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def closed(self) -> bool:
        return self.row.state == SessionState.CLOSED

    def _move(self, old: TaskState | None, new: TaskState, n: int = 1) -> None:
        if self.counts is None:
            return
        if old is not None:
            self.counts[old] = self.counts.get(old, 0) - n
        self.counts[new] = self.counts.get(new, 0) + n
