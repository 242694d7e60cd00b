"""The TaskBoard: the one owner of session and task state in the runtime.

Every session and task transition is a method here, and each is one write to the
:class:`~._store.Store` followed by its wake-up: the watchers of the task (WatchTask, RunTask),
and the :class:`BoardListener` (the scheduler) when there is new work or a session opened or
closed, or a running task was cancelled. Nothing else writes sessions or tasks, and nothing
else keeps them in memory: the Frontend asks the board to create, close and cancel, the
scheduler asks it to start, finish and requeue, and both read through it.

What it keeps in memory, per session it tracks (every open session, and those that closed while
the runtime ran): the session row, the next task id, the counts of tasks by state (once asked
for), the ids of Pending tasks as a heap (FIFO by id), the ids of Running tasks and of those
asked to stop, and why the session starts no instances (if it is paused). Besides, the rows and
events of the tasks written last, since a task is read several times per transition
(:mod:`._recent`), and the waiters of each task (:mod:`._watchers`). Every entry is changed only
after its write committed, so it always equals the stored row. A cancel request is not stored:
a runtime that crashes before the task ends runs the task again at its start.

Transitions::

    create_task     (new)    -> Pending    Frontend (CreateTask, RunTask)
    start_next      Pending  -> Running    scheduler, for an instance that is free
    finish_task     Running  -> Succeed / Failed / Cancelled
    requeue_task    Running  -> Pending    instance lost (or runtime restarted: recover)
    close_session   Pending  -> Cancelled, and the session Open -> Closed
    cancel_tasks    Pending  -> Cancelled  Frontend (CancelTask); a Running task is marked as
                                           asked to stop and the listener told, and it ends in
                                           finish_task (Cancelled once its instance says so or
                                           is stopped)
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from dataclasses import replace

from flame_agents._wire import types_pb2
from flame_agents.runtime.sessions._recent import RECENT_PAYLOAD_MAX, RECENT_TASKS, RecentTasks
from flame_agents.runtime.sessions._rows import CREATED, EventRow, SessionRow, TaskRow
from flame_agents.runtime.sessions._store import Store
from flame_agents.runtime.sessions._views import BoardListener, SessionView
from flame_agents.runtime.sessions._watchers import TaskWatchers
from flame_agents.types import SessionState, TaskState

__all__ = [
    "EVENT_BIND_FAILED",
    "EVENT_RETRY_LIMIT",
    "RECENT_PAYLOAD_MAX",
    "RECENT_TASKS",
    "BoardListener",
    "SessionView",
    "TaskBoard",
]

EVENT_BIND_FAILED = 1001
"""Session event: an instance failed to bind to the session."""
EVENT_RETRY_LIMIT = 1002
"""Session event: bind failures reached the limit; the session starts no more instances."""

_RESTARTED = "Task returned to <Pending>: the runtime restarted"


class TaskBoard:
    """Session and task state: each transition one store write, then its wake-up."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._views: dict[str, SessionView] = {}
        self._recent = RecentTasks()
        self._watchers = TaskWatchers()
        self._listener: BoardListener | None = None

    def attach(self, listener: BoardListener) -> None:
        """Wake ``listener`` at every transition that gives it work (one listener)."""
        self._listener = listener

    # -- reads ------------------------------------------------------------------------------

    def view(self, sid: str) -> SessionView | None:
        """The session as tracked here (open, or closed while this runtime ran), or None."""
        return self._views.get(sid)

    def open_sessions(self) -> list[SessionView]:
        """Every open session, oldest first."""
        return [v for v in self._views.values() if not v.closed]

    def get_session(self, sid: str) -> SessionRow | None:
        """The session ``sid``, or None."""
        view = self._views.get(sid)
        return view.row if view is not None else self._store.get_session(sid)

    def list_sessions(self, *, state: SessionState | None = None) -> list[SessionRow]:
        """Every session (optionally only those in ``state``), oldest first."""
        return self._store.list_sessions(state=state)

    def open_sessions_of(self, app: str) -> int:
        """How many open sessions application ``app`` has."""
        return sum(1 for v in self._views.values() if not v.closed and v.row.application == app)

    def counters(self, sid: str) -> dict[TaskState, int]:
        """Task counts of one session by state (states without tasks left out)."""
        view = self._views.get(sid)
        if view is None:
            return self._store.counters(sid)
        if view.counts is None:
            view.counts = self._store.counters(sid)
        return {state: n for state, n in view.counts.items() if n}

    def all_counters(self) -> dict[str, dict[TaskState, int]]:
        """Task counts by state for every session."""
        return self._store.all_counters()

    def session_events(self, sid: str) -> list[EventRow]:
        """The session's events (1001, 1002), oldest first."""
        return self._store.events(sid)

    def get_task(self, sid: str, tid: int) -> TaskRow | None:
        """Task ``tid`` of session ``sid``, or None."""
        recent = self._recent.get(sid, tid)
        return recent[0] if recent is not None else self._store.get_task(sid, tid)

    def task_events(self, sid: str, tid: int) -> list[EventRow]:
        """The task's events, oldest first."""
        recent = self._recent.get(sid, tid)
        return list(recent[1]) if recent is not None else self._store.events(sid, tid)

    def list_tasks(self, sid: str) -> list[TaskRow]:
        """Every task of a session, by id."""
        return self._store.list_tasks(sid)

    def paused_reason(self, sid: str) -> str | None:
        """Why session ``sid`` starts no instances, or None if it does."""
        view = self._views.get(sid)
        return None if view is None else view.paused

    def cancel_requested(self, sid: str, tid: int) -> bool:
        """Whether Running task ``tid`` of ``sid`` was asked to stop."""
        view = self._views.get(sid)
        return view is not None and tid in view.cancelling

    def watch(self, sid: str, tid: int) -> asyncio.Event:
        """An event set at the next change of task ``tid`` (get it *before* reading the task:
        a change that lands in between then still sets it)."""
        return self._watchers.watch(sid, tid)

    # -- session transitions ----------------------------------------------------------------

    def recover(self) -> None:
        """At start-up: tasks left Running by a previous runtime go back to Pending, and every
        open session is tracked with its Pending tasks (see :meth:`open_sessions`)."""
        for sid, tid in self._store.running_tasks():
            self._store.requeue_task(sid, tid, message=_RESTARTED, lost=False)
        for row in self._store.list_sessions(state=SessionState.OPEN):
            self._track(row)

    def _track(self, row: SessionRow) -> SessionView:
        view = self._views[row.id] = SessionView(row)
        if not view.closed:
            view.pending = self._store.task_ids(row.id, TaskState.PENDING)
            heapq.heapify(view.pending)
        return view

    def _view(self, sid: str) -> SessionView | None:
        """The tracked view of ``sid``; an open session not tracked yet is tracked now."""
        view = self._views.get(sid)
        if view is None:
            row = self._store.get_session(sid)
            if row is not None and row.state == SessionState.OPEN:
                view = self._track(row)
        return view

    def open_session(self, sid: str, spec: types_pb2.SessionSpec) -> SessionRow:
        """A new open session (``sqlite3.IntegrityError`` if ``sid`` exists)."""
        row = self._store.create_session(sid, spec)
        view = self._views[sid] = SessionView(row, next_id=1, counts={})
        self._tell(lambda listener: listener.session_opened(view))
        return row

    def close_session(self, sid: str) -> list[int]:
        """Open -> Closed, its Pending tasks -> Cancelled (returns their ids)."""
        view = self._view(sid)
        # A tracked session's Pending tasks are its heap: no scan when it is empty.
        cancelled, when = self._store.close_session(sid, scan=view is None or bool(view.pending))
        if view is None:
            self._watchers.wake(sid, cancelled)
            return cancelled
        if not view.closed:
            view.row = replace(view.row, state=SessionState.CLOSED, completion_time=when)
        view.pending.clear()
        view._move(TaskState.PENDING, TaskState.CANCELLED, len(cancelled))
        for tid in cancelled:
            self._recent.forget(sid, tid)
        self._watchers.wake(sid, cancelled)
        self._tell(lambda listener: listener.session_closed(view))
        return cancelled

    def delete_session(self, sid: str) -> None:
        """Remove a (closed) session with its tasks and events."""
        self._store.delete_session(sid)
        self._drop(sid)

    def delete_app(self, name: str) -> None:
        """Remove an application and its closed sessions."""
        for sid in self._store.delete_app(name):
            self._drop(sid)

    def add_session_event(self, sid: str, code: int, message: str) -> None:
        """Record a session event (no task changes)."""
        self._store.add_session_event(sid, code, message)

    def pause_session(self, sid: str, *, reason: str, event: str | None = None) -> None:
        """The session starts no more instances; ``event``: recorded as event 1002. Waiters of
        its Pending tasks are woken to learn ``reason``."""
        view = self._views[sid]
        if event is not None:
            self._store.add_session_event(sid, EVENT_RETRY_LIMIT, event)
        view.paused = reason
        self._watchers.wake(sid, list(view.pending))

    # -- task transitions -------------------------------------------------------------------

    def create_task(self, sid: str, data: bytes | None) -> TaskRow:
        """(new) -> Pending, in the open session ``sid`` (the caller checked it is open)."""
        view = self._view(sid)
        assert view is not None, sid
        if view.next_id is None:
            view.next_id = self._store.next_task_id(sid)
        row = self._store.create_task(sid, view.next_id, data)
        view.next_id = row.id + 1
        view._move(None, TaskState.PENDING)
        heapq.heappush(view.pending, row.id)
        self._recent.remember(row, [EventRow(int(TaskState.PENDING), CREATED, row.creation_time)])
        self._watchers.wake(sid, [row.id])
        self._tell(lambda listener: listener.tasks_pending(view))
        return row

    def start_next(self, sid: str) -> TaskRow | None:
        """Pending -> Running for the session's first Pending task; None when it has none."""
        view = self._views.get(sid)
        if view is None or view.closed or not view.pending:
            return None
        tid = view.pending[0]
        event = self._store.start_task(sid, tid)
        heapq.heappop(view.pending)
        view.running.add(tid)
        view._move(TaskState.PENDING, TaskState.RUNNING)
        self._recent.changed(
            sid,
            tid,
            [event],
            lambda r: replace(r, state=TaskState.RUNNING, attempts=r.attempts + 1),
        )
        row = self.get_task(sid, tid)
        assert row is not None
        self._watchers.wake(sid, [tid])
        return row

    def finish_task(
        self,
        sid: str,
        tid: int,
        *,
        state: TaskState,
        output: bytes | None,
        message: str,
        lost: str | None = None,
    ) -> None:
        """Running -> ``state`` (terminal), with the output and the event ``message``.

        ``lost``: its instance was lost (recorded first, as the event of a requeue would be).
        """
        old = self._state_before(sid, tid)
        events = self._store.finish_task(
            sid, tid, state=state, output=output, message=message, lost=lost
        )
        if (view := self._views.get(sid)) is not None:
            view.running.discard(tid)
            view.cancelling.discard(tid)
            view._move(old, state)
        if output is not None and len(output) > RECENT_PAYLOAD_MAX:
            self._recent.forget(sid, tid)
        losses = 0 if lost is None else 1
        when = events[-1].creation_time
        self._recent.changed(
            sid,
            tid,
            events,
            lambda r: replace(
                r, state=state, output=output, completion_time=when, losses=r.losses + losses
            ),
        )
        self._watchers.wake(sid, [tid])

    def cancel_tasks(self, sid: str, tid: int | None, *, message: str) -> list[TaskRow]:
        """Cancel task ``tid`` of ``sid`` (None: each task of it that has not ended); returns
        the tasks concerned as they are afterwards (an unknown ``tid``: none).

        Pending -> Cancelled at once, with the event ``message`` (one write for them all, then
        their wake-up). A Running task is marked as asked to stop and the listener told; it
        ends in :meth:`finish_task`. A task that has ended is left as it is.
        """
        view = self._view(sid)
        if tid is None:
            if view is not None:
                pending, running = sorted(view.pending), sorted(view.running)
            else:  # closed before this run: nothing of it runs
                pending, running = self._store.task_ids(sid, TaskState.PENDING), []
            tids = sorted(pending + running)
        else:
            row = self.get_task(sid, tid)
            if row is None:
                return []
            tids = [tid]
            pending = tids if row.state == TaskState.PENDING else []
            running = tids if row.state == TaskState.RUNNING else []
        if pending:
            event = self._store.cancel_tasks(sid, pending, message=message)
            if view is not None:
                gone = set(pending)
                view.pending = [t for t in view.pending if t not in gone]
                heapq.heapify(view.pending)
                view._move(TaskState.PENDING, TaskState.CANCELLED, len(pending))
            when = event.creation_time
            for t in pending:
                self._recent.changed(
                    sid,
                    t,
                    [event],
                    lambda r: replace(r, state=TaskState.CANCELLED, completion_time=when),
                )
            self._watchers.wake(sid, pending)
        if view is not None:
            for t in running:
                if t in view.running and t not in view.cancelling:
                    view.cancelling.add(t)
                    if self._listener is not None:
                        self._listener.cancel_running(view, t)
        return [row for t in tids if (row := self.get_task(sid, t)) is not None]

    def requeue_task(self, sid: str, tid: int, *, message: str, lost: bool) -> None:
        """Running -> Pending (its instance was lost, or the runtime is stopping)."""
        old = self._state_before(sid, tid)
        event = self._store.requeue_task(sid, tid, message=message, lost=lost)
        view = self._views.get(sid)
        if view is not None:
            view.running.discard(tid)
            view.cancelling.discard(tid)
            view._move(old, TaskState.PENDING)
        self._recent.changed(
            sid,
            tid,
            [event],
            lambda r: replace(r, state=TaskState.PENDING, losses=r.losses + (1 if lost else 0)),
        )
        self._watchers.wake(sid, [tid])
        if view is not None and not view.closed:
            heapq.heappush(view.pending, tid)
            self._tell(lambda listener: listener.tasks_pending(view))

    # -- the listener, and forgetting a deleted session ------------------------------------

    def _tell(self, call: Callable[[BoardListener], None]) -> None:
        if self._listener is not None:
            call(self._listener)

    def _state_before(self, sid: str, tid: int) -> TaskState | None:
        """The task's state before a transition, read only when its session is being counted."""
        view = self._views.get(sid)
        if view is None or view.counts is None:
            return None
        if tid in view.running:
            return TaskState.RUNNING
        row = self.get_task(sid, tid)
        return None if row is None else row.state

    def _drop(self, sid: str) -> None:
        """Forget a deleted session; waiters of its tasks learn it is gone."""
        self._views.pop(sid, None)
        self._recent.forget_session(sid)
        self._watchers.wake(sid, self._watchers.watched(sid))
