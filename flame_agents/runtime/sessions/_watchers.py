"""Who waits for a task's next change: the wake-ups of the :class:`~._board.TaskBoard`.

WatchTask and RunTask wait on an :class:`asyncio.Event` per task; the board sets it after each
write that changes the task (and after a session is deleted, so its waiters learn it is gone).
An event is set once and then dropped: a waiter gets a new one before it reads the task again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

__all__ = ["TaskWatchers"]


class TaskWatchers:
    """One event per watched task, set at its next change."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, int], asyncio.Event] = {}

    def watch(self, sid: str, tid: int) -> asyncio.Event:
        """An event set at the next change of task ``tid`` of ``sid``."""
        key = (sid, tid)
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = asyncio.Event()
        return ev

    def wake(self, sid: str, tids: Iterable[int]) -> None:
        """Tasks ``tids`` of ``sid`` changed: set (and drop) their events."""
        for tid in tids:
            ev = self._events.pop((sid, tid), None)
            if ev is not None:
                ev.set()

    def watched(self, sid: str) -> list[int]:
        """The ids of the tasks of ``sid`` someone waits for."""
        return [tid for s, tid in self._events if s == sid]
