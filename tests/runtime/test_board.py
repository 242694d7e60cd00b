"""The TaskBoard: each session or task transition is one store write, then its wake-up."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flame_agents._wire import types_pb2
from flame_agents.runtime.sessions._board import (
    RECENT_PAYLOAD_MAX,
    RECENT_TASKS,
    SessionView,
    TaskBoard,
)
from flame_agents.runtime.sessions._rows import SUCCEEDED
from flame_agents.runtime.sessions._store import Store
from flame_agents.types import SessionState, TaskState

SID = "board-s1"
SPEC = types_pb2.SessionSpec(application="app")


class Recorder:
    """A board listener that notes each wake-up with the task states stored at that moment."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: list[tuple[str, str, dict[TaskState, int]]] = []

    def _note(self, what: str, view: SessionView) -> None:
        fresh = Store(self.path)  # a second connection: sees only what was committed
        try:
            self.calls.append((what, view.id, fresh.counters(view.id)))
        finally:
            fresh.close()

    def session_opened(self, view: SessionView) -> None:
        self._note("opened", view)

    def tasks_pending(self, view: SessionView) -> None:
        self._note("pending", view)

    def session_closed(self, view: SessionView) -> None:
        self._note("closed", view)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh runtime database."""
    s = Store(tmp_path / "flame.db")
    try:
        yield s
    finally:
        s.close()


def _writes(store: Store) -> list[str]:
    """Start recording the write statements ``store`` runs; returns the list they go to."""
    seen: list[str] = []

    def trace(sql: str) -> None:
        if sql.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            seen.append(sql)

    store._db.set_trace_callback(trace)
    return seen


def _stored_state(path: Path, tid: int) -> TaskState:
    fresh = Store(path)
    try:
        row = fresh.get_task(SID, tid)
        assert row is not None
        return row.state
    finally:
        fresh.close()


def test_each_task_transition_is_one_write_then_its_wake_up(store: Store, tmp_path: Path) -> None:
    """Create, start and finish each run one write statement, and the task's watcher is set
    only by then, with the new state already committed."""
    board = TaskBoard(store)
    board.open_session(SID, SPEC)
    writes = _writes(store)
    steps: list[tuple[Callable[[], object], TaskState]] = [
        (lambda: board.create_task(SID, b"in"), TaskState.PENDING),
        (lambda: board.start_next(SID), TaskState.RUNNING),
        (
            lambda: board.finish_task(
                SID, 1, state=TaskState.SUCCEED, output=b"out", message=SUCCEEDED
            ),
            TaskState.SUCCEED,
        ),
    ]
    for step, state in steps:
        watcher = board.watch(SID, 1)
        writes.clear()
        step()
        assert len(writes) == 1, writes
        assert watcher.is_set()
        assert _stored_state(tmp_path / "flame.db", 1) == state


def test_a_watcher_is_woken_for_each_change(store: Store) -> None:
    """A watcher registered before each change is set by it, through a loss, a re-run and the
    close that cancels the session's other task; an unchanged task's watcher stays unset."""
    board = TaskBoard(store)
    board.open_session(SID, SPEC)
    board.create_task(SID, b"a")
    board.create_task(SID, b"b")
    other = board.watch(SID, 2)
    seen = []
    changes: list[Callable[[], object]] = [
        lambda: board.start_next(SID),
        lambda: board.requeue_task(SID, 1, message="instance lost: exit 9", lost=True),
        lambda: board.start_next(SID),
        lambda: board.finish_task(
            SID, 1, state=TaskState.FAILED, output=None, message="boom", lost="instance lost"
        ),
    ]
    for change in changes:
        watcher = board.watch(SID, 1)
        change()
        assert watcher.is_set()
        row = board.get_task(SID, 1)
        assert row is not None
        seen.append(row.state)
    assert seen == [TaskState.RUNNING, TaskState.PENDING, TaskState.RUNNING, TaskState.FAILED]
    assert not other.is_set()
    assert board.close_session(SID) == [2]
    assert other.is_set()
    row = board.get_task(SID, 1)
    assert row is not None and (row.attempts, row.losses) == (2, 2)
    codes = [e.code for e in board.task_events(SID, 1)]
    assert codes == [0, 1, 0, 1, 0, 3] == [e.code for e in store.events(SID, 1)]


def test_the_listener_is_woken_after_the_write(store: Store, tmp_path: Path) -> None:
    """The scheduler (the board's listener) hears of an opened session, each new Pending task
    (created or put back) and the close, each time with the write already committed."""
    board = TaskBoard(store)
    recorder = Recorder(tmp_path / "flame.db")
    board.attach(recorder)
    board.open_session(SID, SPEC)
    board.create_task(SID, None)
    board.start_next(SID)
    board.requeue_task(SID, 1, message="instance lost", lost=True)
    board.close_session(SID)
    assert recorder.calls == [
        ("opened", SID, {}),
        ("pending", SID, {TaskState.PENDING: 1}),
        ("pending", SID, {TaskState.PENDING: 1}),
        ("closed", SID, {TaskState.CANCELLED: 1}),
    ]


def test_pausing_a_session_wakes_its_waiting_tasks(store: Store) -> None:
    """A paused session records event 1002 and wakes the watchers of its Pending tasks, which
    then read why it starts no instances."""
    board = TaskBoard(store)
    board.open_session(SID, SPEC)
    board.create_task(SID, None)
    watcher = board.watch(SID, 1)
    board.pause_session(SID, reason="no more instances: x", event="retry limit reached")
    assert watcher.is_set()
    assert board.paused_reason(SID) == "no more instances: x"
    assert [(e.code, e.message) for e in board.session_events(SID)] == [
        (1002, "retry limit reached")
    ]


def test_states_are_the_enums_of_types(store: Store) -> None:
    """Sessions, tasks and counters carry SessionState and TaskState, from memory and from
    the database alike."""
    board = TaskBoard(store)
    board.open_session(SID, SPEC)
    board.create_task(SID, None)
    board.start_next(SID)
    for row in (board.get_task(SID, 1), store.get_task(SID, 1), *store.list_tasks(SID)):
        assert row is not None and type(row.state) is TaskState
    for session in (board.get_session(SID), store.get_session(SID), *store.list_sessions()):
        assert session is not None and type(session.state) is SessionState
    board.close_session(SID)
    closed = board.get_session(SID)
    assert closed is not None and closed.state is SessionState.CLOSED
    assert closed == store.get_session(SID)
    for counts in (board.counters(SID), store.counters(SID), *store.all_counters().values()):
        assert counts and all(type(state) is TaskState for state in counts)


def test_rows_served_from_memory_equal_the_stored_rows(tmp_path: Path) -> None:
    """Every task read (kept in memory after a write) equals what a fresh open reads."""
    path = tmp_path / "flame.db"
    s = Store(path)
    try:
        board = TaskBoard(s)
        board.open_session(SID, SPEC)
        board.counters(SID)  # counting on: transitions move the counts too
        big = b"b" * (RECENT_PAYLOAD_MAX + 1)
        total = RECENT_TASKS + 20  # past the bound, so some rows come from disk
        for i in range(total):
            board.create_task(SID, big if i % 50 == 0 else f"in{i}".encode())
        for _ in range(total * 2 // 3):
            started = board.start_next(SID)
            assert started is not None and started.state == TaskState.RUNNING
            tid = started.id
            if tid % 2:
                out = big if tid % 7 == 0 else b"out"
                board.finish_task(SID, tid, state=TaskState.SUCCEED, output=out, message="done")
            elif tid % 5 == 2 and not started.losses:
                board.requeue_task(SID, tid, message="lost", lost=True)  # re-run next
        board.open_session("other", SPEC)
        board.create_task("other", b"x")
        board.close_session("other")
        board.delete_session("other")
        assert board.get_task("other", 1) is None and board.task_events("other", 1) == []
        tids = range(1, total + 1)
        seen = [board.get_task(SID, t) for t in tids]
        counts = board.counters(SID)
        cancelled = board.close_session(SID)
        after = [(board.get_task(SID, t), board.task_events(SID, t)) for t in tids]
    finally:
        s.close()
    fresh = Store(path)
    try:
        assert after == [(fresh.get_task(SID, t), fresh.events(SID, t)) for t in tids]
        assert counts == dict(Counter(r.state for r in seen if r is not None))
        assert cancelled
        for tid in cancelled:
            row = fresh.get_task(SID, tid)
            assert row is not None and row.state == TaskState.CANCELLED
    finally:
        fresh.close()
