"""The :class:`~._board.TaskBoard`'s memory of the tasks written last.

A task is read several times per transition (the watchers' reads, the Frontend's answer), so the
board keeps the rows and events of the last :data:`RECENT_TASKS` tasks it wrote, and reads the
others from the store. Tasks with a large input or output are not kept. The board changes an
entry only after its write committed, so an entry always equals the stored row; this module
holds the entries and never writes the store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from flame_agents.runtime.sessions._rows import EventRow, TaskRow

__all__ = ["RECENT_PAYLOAD_MAX", "RECENT_TASKS", "RecentTasks"]

RECENT_TASKS = 1024
"""Tasks written last whose rows are also kept in memory."""
RECENT_PAYLOAD_MAX = 64 * 1024
"""Tasks with a larger input or output are read back from the database instead."""


class RecentTasks:
    """The rows and events of the tasks written last (oldest dropped first)."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, int], tuple[TaskRow, list[EventRow]]] = OrderedDict()

    def get(self, sid: str, tid: int) -> tuple[TaskRow, list[EventRow]] | None:
        """The kept row and events of task ``tid`` of ``sid``, or None."""
        return self._entries.get((sid, tid))

    def remember(self, row: TaskRow, events: list[EventRow]) -> None:
        """Keep ``row`` with its ``events`` (unless its input is too large to keep)."""
        if row.input is not None and len(row.input) > RECENT_PAYLOAD_MAX:
            return
        self._entries[(row.session_id, row.id)] = (row, events)
        if len(self._entries) > RECENT_TASKS:
            self._entries.popitem(last=False)

    def changed(
        self, sid: str, tid: int, events: list[EventRow], change: Callable[[TaskRow], TaskRow]
    ) -> None:
        """A kept task was written: apply ``change`` to its row and add ``events`` (a task not
        kept stays so)."""
        recent = self._entries.pop((sid, tid), None)
        if recent is not None:
            self.remember(change(recent[0]), [*recent[1], *events])

    def forget(self, sid: str, tid: int) -> None:
        """Drop task ``tid`` of ``sid``."""
        self._entries.pop((sid, tid), None)

    def forget_session(self, sid: str) -> None:
        """Drop every task of session ``sid``."""
        for key in [k for k in self._entries if k[0] == sid]:
            del self._entries[key]
