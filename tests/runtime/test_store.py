"""The runtime's sqlite store: bytes written per task, the first layout's migration, kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from flame_agents._wire import types_pb2
from flame_agents.errors import ConfigError
from flame_agents.runtime.sessions import _store as st
from flame_agents.runtime.sessions._rows import SCHEMA_VERSION, TaskRow
from flame_agents.types import TaskState

SID = "bench-noop-a1b2c3"
DONE = "Task was completed with state <Succeed>"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[st.Store]:
    """A store whose WAL is never checkpointed, so its size counts every byte committed."""
    s = st.Store(tmp_path / "flame.db")
    try:
        s._db.execute("PRAGMA wal_autocheckpoint=0")
        s.create_session(SID, types_pb2.SessionSpec(application="bench-noop"))
        yield s
    finally:
        s.close()


def _add(s: st.Store, sid: str, data: bytes | None) -> TaskRow:
    return s.create_task(sid, s.next_task_id(sid), data)


def _run_tasks(s: st.Store, n: int, payload: bytes) -> None:
    for _ in range(n):
        task = _add(s, SID, payload)
        s.start_task(SID, task.id)
        s.finish_task(SID, task.id, state=TaskState.SUCCEED, output=payload, message=DONE)


def _wal_bytes_per_task(s: st.Store, path: Path, n: int, payload: bytes) -> float:
    wal = Path(f"{path}-wal")
    before = wal.stat().st_size
    _run_tasks(s, n, payload)
    return (wal.stat().st_size - before) / n


def _page_size(s: st.Store) -> int:
    return int(s._db.execute("PRAGMA page_size").fetchone()[0])


def test_wal_bytes_per_small_task_stay_within_six_pages(store: st.Store, tmp_path: Path) -> None:
    """A no-op task (create, start, finish) appends at most six pages to the WAL, not ~19."""
    _run_tasks(store, 50, b"x" * 100)  # past the first leaf splits
    per_task = _wal_bytes_per_task(store, tmp_path / "flame.db", 300, b"x" * 100)
    frame = _page_size(store) + 24  # a WAL frame is one page plus its 24-byte header
    assert per_task <= 6 * frame, f"{per_task:.0f} bytes of WAL per task"


def test_wal_bytes_per_task_do_not_grow_with_the_session(store: st.Store, tmp_path: Path) -> None:
    """What a task writes is independent of how many tasks its session already has."""
    db = tmp_path / "flame.db"
    _run_tasks(store, 50, b"x" * 100)
    early = _wal_bytes_per_task(store, db, 200, b"x" * 100)
    _run_tasks(store, 3000, b"x" * 100)
    late = _wal_bytes_per_task(store, db, 200, b"x" * 100)
    assert late <= 1.5 * early + _page_size(store), (early, late)


def test_wal_bytes_of_a_large_payload_are_linear_in_its_size(
    store: st.Store, tmp_path: Path
) -> None:
    """A task with a 20 KB input and output writes O(payload) bytes: a few copies, no more."""
    payload = b"p" * 20_000
    _run_tasks(store, 20, payload)
    per_task = _wal_bytes_per_task(store, tmp_path / "flame.db", 50, payload)
    assert per_task <= 6 * len(payload) + 8 * (_page_size(store) + 24), per_task


def test_tasks_counters_and_events_round_trip(store: st.Store) -> None:
    """Ids, states, counters and task/session events read back exactly as written."""
    ids = [_add(store, SID, f"in{i}".encode()).id for i in range(4)]
    assert ids == [1, 2, 3, 4]
    store.start_task(SID, 1)
    store.finish_task(SID, 1, state=TaskState.SUCCEED, output=b"out", message=DONE)
    store.start_task(SID, 2)
    store.finish_task(
        SID, 2, state=TaskState.FAILED, output=None, message='boom\n"quoted" \u2028 é'
    )
    store.start_task(SID, 3)
    store.requeue_task(SID, 3, message="instance lost: exit 9", lost=True)
    store.add_session_event(SID, 1001, "bind failed")
    counts = {TaskState.SUCCEED: 1, TaskState.FAILED: 1, TaskState.PENDING: 2}
    assert store.counters(SID) == counts
    assert store.all_counters() == {SID: counts}
    failed = [(e.code, e.message) for e in store.events(SID, 2)]
    assert failed == [
        (0, "Task was created with state <Pending>"),
        (1, "Task state was updated to <Running>"),
        (3, 'boom\n"quoted" \u2028 é'),
    ]
    assert [e.code for e in store.events(SID, 3)] == [0, 1, 0]
    assert [(e.code, e.message) for e in store.events(SID)] == [(1001, "bind failed")]
    row = store.get_task(SID, 3)
    assert row is not None and (row.state, row.attempts, row.losses) == (TaskState.PENDING, 1, 1)
    assert store.task_ids(SID, TaskState.PENDING) == [3, 4]
    assert store.close_session(SID)[0] == [3, 4]
    assert store.counters(SID) == {
        TaskState.SUCCEED: 1,
        TaskState.FAILED: 1,
        TaskState.CANCELLED: 2,
    }
    store.delete_session(SID)
    assert store.events(SID) == [] and store.list_tasks(SID) == []


def test_counters_and_ids_are_recovered_at_open(tmp_path: Path) -> None:
    """After a reopen the next task id and the counters continue from the stored tasks."""
    path = tmp_path / "flame.db"
    first = st.Store(path)
    try:
        first.create_session(SID, types_pb2.SessionSpec(application="app"))
        _run_tasks(first, 3, b"x")
        _add(first, SID, b"pending")
    finally:
        first.close()
    again = st.Store(path)
    try:
        assert again.counters(SID) == {TaskState.SUCCEED: 3, TaskState.PENDING: 1}
        assert _add(again, SID, None).id == 5
        assert again.counters(SID) == {TaskState.SUCCEED: 3, TaskState.PENDING: 2}
        assert again.close_session(SID)[0] == [4, 5]
    finally:
        again.close()


_FIRST_LAYOUT = """
CREATE TABLE applications (name TEXT PRIMARY KEY, spec BLOB NOT NULL,
    creation_time INTEGER NOT NULL);
CREATE TABLE sessions (id TEXT PRIMARY KEY, application TEXT NOT NULL, spec BLOB NOT NULL,
    state INTEGER NOT NULL, creation_time INTEGER NOT NULL, completion_time INTEGER,
    next_task_id INTEGER NOT NULL DEFAULT 1);
CREATE TABLE tasks (session_id TEXT NOT NULL, id INTEGER NOT NULL, state INTEGER NOT NULL,
    creation_time INTEGER NOT NULL, completion_time INTEGER, input BLOB, output BLOB,
    attempts INTEGER NOT NULL DEFAULT 0, losses INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, id));
CREATE INDEX tasks_by_state ON tasks (session_id, state);
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,
    task_id INTEGER NOT NULL, code INTEGER NOT NULL, message TEXT,
    creation_time INTEGER NOT NULL);
CREATE INDEX events_by_task ON events (session_id, task_id);
"""


def test_home_of_the_first_layout_is_migrated_at_open(tmp_path: Path) -> None:
    """A database written by the first layout opens with every task, event and id intact."""
    path = tmp_path / "flame.db"
    old = sqlite3.connect(path, isolation_level=None)
    spec = types_pb2.SessionSpec(application="app", common_data=b"CD").SerializeToString()
    old.execute("PRAGMA journal_mode=WAL")
    old.executescript(_FIRST_LAYOUT)
    old.execute("INSERT INTO applications VALUES ('app', ?, 1)", (b"",))
    old.execute("INSERT INTO sessions VALUES ('s', 'app', ?, 0, 10, NULL, 3)", (spec,))
    old.execute("INSERT INTO tasks VALUES ('s', 1, 2, 11, 12, x'01', x'02', 1, 0)")
    old.execute("INSERT INTO tasks VALUES ('s', 2, 0, 13, NULL, NULL, NULL, 1, 1)")
    for sid, tid, code, message, when in [
        ("s", 1, 0, "Task was created with state <Pending>", 11),
        ("s", 2, 0, "Task was created with state <Pending>", 13),
        ("s", 1, 1, "Task state was updated to <Running>", 11),
        ("s", 0, 1001, "bind failed", 11),
        ("s", 1, 2, "Task was completed with state <Succeed>", 12),
        ("s", 2, 1, "Task state was updated to <Running>", 14),
        ("s", 2, 0, "instance lost", 15),
    ]:
        old.execute(
            "INSERT INTO events (session_id, task_id, code, message, creation_time) "
            "VALUES (?, ?, ?, ?, ?)",
            (sid, tid, code, message, when),
        )
    old.close()
    for _ in range(2):  # the second open finds the new layout and changes nothing
        s = st.Store(path)
        try:
            assert s._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            one, two = s.list_tasks("s")
            assert (one.state, one.input, one.output, one.completion_time) == (
                2,
                b"\x01",
                b"\x02",
                12,
            )
            assert (two.state, two.attempts, two.losses) == (TaskState.PENDING, 1, 1)
            assert [(e.code, e.creation_time) for e in s.events("s", 1)] == [
                (0, 11),
                (1, 11),
                (2, 12),
            ]
            assert [e.message for e in s.events("s", 2)][-1] == "instance lost"
            assert [(e.code, e.message) for e in s.events("s")] == [(1001, "bind failed")]
            assert s.counters("s") == {TaskState.SUCCEED: 1, TaskState.PENDING: 1}
            session = s.get_session("s")
            assert session is not None and session.spec.common_data == b"CD"
        finally:
            s.close()
    s = st.Store(path)
    try:
        assert s.next_task_id("s") == 3  # next_task_id of the first layout is kept
    finally:
        s.close()


def test_database_of_a_newer_layout_is_refused(tmp_path: Path) -> None:
    """A database written by a newer flame-agents stops the start-up with a clear error."""
    path = tmp_path / "flame.db"
    st.Store(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(ConfigError, match="newer flame-agents"):
        st.Store(path)


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from flame_agents._wire import types_pb2
    from flame_agents.runtime.sessions import _store as st
    from flame_agents.types import TaskState

    s = st.Store(Path(sys.argv[1]))
    if s.get_session("k") is None:
        s.create_session("k", types_pb2.SessionSpec(application="app"))
    while True:
        t = s.create_task("k", s.next_task_id("k"), b"in")
        s.start_task("k", t.id)
        s.finish_task("k", t.id, state=TaskState.SUCCEED, output=b"out%d" % t.id, message="done")
        print(t.id, flush=True)  # acknowledged only after the commit returned
    """
)


def test_every_committed_task_survives_kill_9_of_the_writer(tmp_path: Path) -> None:
    """Killing the process mid-write loses no task it saw committed; ids then continue."""
    path = tmp_path / "flame.db"
    acknowledged: list[int] = []
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                acknowledged.append(int(line))
                if len(acknowledged) >= 150 * (round_ + 1):
                    break
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            if proc.stdout is not None:
                proc.stdout.close()
    s = st.Store(path)
    try:
        tasks = {t.id: t for t in s.list_tasks("k")}
        for tid in acknowledged:
            assert tasks[tid].state == TaskState.SUCCEED and tasks[tid].output == b"out%d" % tid
        assert sorted(tasks) == list(range(1, len(tasks) + 1))
        assert s.next_task_id("k") == len(tasks) + 1
    finally:
        s.close()
