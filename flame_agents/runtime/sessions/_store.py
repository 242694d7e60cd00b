"""Durable store of the embedded runtime: applications, sessions, tasks and events in sqlite.

Every mutating method runs in one transaction and returns only after the commit, so the
Frontend replies only for committed state; how the database is opened, checked, migrated and
written (and how durable a commit is) is :mod:`._database`.

The store is used from the runtime's event-loop thread only: each statement is a sub-millisecond
local call, and one thread avoids any locking. It keeps nothing in memory: the one in-memory view
of sessions and tasks is the :class:`~._board.TaskBoard`, which makes every session and task
write through this class. Application and session specs are kept as serialized protobuf
messages, which round-trip every wire field exactly.

A task transition is the hot path (three per task: create, start, finish), so a task is one
row of a ``WITHOUT ROWID`` table keyed by (session, id) with its events appended to the row
itself: each transition writes one b-tree leaf page, not a row, its indexes and separate event
rows. Nothing else is written per task: the caller picks the next task id (see
:meth:`Store.next_task_id`). The layout itself is in :mod:`._rows`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flame_agents._wire import types_pb2
from flame_agents.errors import NotFoundError
from flame_agents.runtime.sessions._database import Database, StoreWriteError
from flame_agents.runtime.sessions._rows import (
    CREATED,
    SESSION_EVENT_TASK_ID,
    STARTED,
    TASK_COLUMNS,
    AppRow,
    EventRow,
    SessionRow,
    TaskRow,
    app_row,
    event_line,
    now_ms,
    parse_events,
    session_row,
    task_row,
)
from flame_agents.types import SessionState, TaskState

__all__ = ["INLINE_INPUT_MAX", "Store", "StoreWriteError"]

INLINE_INPUT_MAX = 512
"""Inputs up to this size live in the task row; larger ones in ``task_inputs``, written once.

A row is rewritten whole at every transition, and a row past ~1 KB spills into overflow pages,
so a large input kept in the row would be written again at start and at finish.
"""

_OPEN, _CLOSED = int(SessionState.OPEN), int(SessionState.CLOSED)
_PENDING, _RUNNING, _CANCELLED = (
    int(TaskState.PENDING),
    int(TaskState.RUNNING),
    int(TaskState.CANCELLED),
)
_SESSION_COLUMNS = "id, application, spec, state, creation_time, completion_time"


class Store:
    """The sqlite-backed state of one runtime home."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        """Open (or create) the database at ``path``; see :class:`._database.Database` for
        ``fsync`` and the errors."""
        self._database = Database(path, fsync=fsync)
        # Reads go straight to the connection; writes through the database's transactions.
        self._db = self._database.conn
        self._tx = self._database.tx
        self._write1 = self._database.write1

    def close(self) -> None:
        """Checkpoint and close the database."""
        self._database.close()

    # -- applications -----------------------------------------------------------------------

    def get_app(self, name: str) -> AppRow | None:
        """The application ``name``, or None."""
        row = self._db.execute(
            "SELECT name, spec, creation_time FROM applications WHERE name = ?", (name,)
        ).fetchone()
        return app_row(row) if row else None

    def list_apps(self) -> list[AppRow]:
        """Every registered application, by name."""
        rows = self._db.execute(
            "SELECT name, spec, creation_time FROM applications ORDER BY name"
        ).fetchall()
        return [app_row(r) for r in rows]

    def put_app(self, name: str, spec: types_pb2.ApplicationSpec) -> None:
        """Insert or replace an application (keeping its creation time on replace)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO applications (name, spec, creation_time) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET spec = excluded.spec",
                (name, spec.SerializeToString(), now_ms()),
            )

    def delete_app(self, name: str) -> list[str]:
        """Remove an application and its closed sessions (with their tasks and events);
        returns the ids of the sessions removed."""
        with self._tx() as db:
            db.execute("DELETE FROM applications WHERE name = ?", (name,))
            ids = [
                str(r[0])
                for r in db.execute(
                    "SELECT id FROM sessions WHERE application = ? AND state = ?",
                    (name, _CLOSED),
                )
            ]
            for sid in ids:
                _delete_session_rows(db, sid)
        return ids

    def open_sessions_of(self, app: str) -> int:
        """How many open sessions application ``app`` has."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM sessions WHERE application = ? AND state = ?", (app, _OPEN)
        ).fetchone()
        return int(row[0])

    # -- sessions ---------------------------------------------------------------------------

    def create_session(self, sid: str, spec: types_pb2.SessionSpec) -> SessionRow:
        """Insert a new open session; raises ``sqlite3.IntegrityError`` if ``sid`` exists."""
        now = now_ms()
        with self._tx() as db:
            db.execute(
                "INSERT INTO sessions (id, application, spec, state, creation_time) "
                "VALUES (?, ?, ?, ?, ?)",
                (sid, spec.application, spec.SerializeToString(), _OPEN, now),
            )
        return SessionRow(sid, spec.application, spec, SessionState.OPEN, now, None)

    def get_session(self, sid: str) -> SessionRow | None:
        """The session ``sid``, or None."""
        row = self._db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (sid,)
        ).fetchone()
        return session_row(row) if row else None

    def list_sessions(self, *, state: SessionState | None = None) -> list[SessionRow]:
        """Every session (optionally only those in ``state``), oldest first."""
        sql = f"SELECT {_SESSION_COLUMNS} FROM sessions"
        args: tuple[int, ...] = ()
        if state is not None:
            sql += " WHERE state = ?"
            args = (int(state),)
        rows = self._db.execute(sql + " ORDER BY creation_time, id", args).fetchall()
        return [session_row(r) for r in rows]

    def close_session(self, sid: str, *, scan: bool = True) -> tuple[list[int], int]:
        """Mark the session closed and cancel its pending tasks; returns the cancelled ids and
        the completion time written.

        ``scan=False``: the caller knows the session has no pending task (no scan of its tasks).
        """
        now = now_ms()
        ids: list[int] = []
        with self._tx() as db:
            if scan:
                ids = [
                    int(r[0])
                    for r in db.execute(
                        "SELECT id FROM tasks WHERE session_id = ? AND state = ? ORDER BY id",
                        (sid, _PENDING),
                    )
                ]
            if ids:
                db.execute(
                    "UPDATE tasks SET state = ?, completion_time = ? WHERE session_id = ? "
                    "AND state = ?",
                    (_CANCELLED, now, sid, _PENDING),
                )
            db.execute(
                "UPDATE sessions SET state = ?, completion_time = ? WHERE id = ? AND state = ?",
                (_CLOSED, now, sid, _OPEN),
            )
        return ids, now

    def delete_session(self, sid: str) -> None:
        """Remove a session with its tasks and events."""
        with self._tx() as db:
            _delete_session_rows(db, sid)

    def next_task_id(self, sid: str) -> int:
        """The id the session's next task gets (NotFoundError if there is no such session)."""
        row = self._db.execute("SELECT next_task_id FROM sessions WHERE id = ?", (sid,)).fetchone()
        if row is None:
            raise NotFoundError(f"session {sid!r} does not exist", session_id=sid)
        top = self._db.execute("SELECT MAX(id) FROM tasks WHERE session_id = ?", (sid,)).fetchone()
        # next_task_id is only advanced by the first layout; MAX(id) by this one.
        return max(int(row[0]), int(top[0] or 0) + 1)

    def counters(self, sid: str) -> dict[TaskState, int]:
        """Task counts of one session by state (states without tasks left out)."""
        rows = self._db.execute(
            "SELECT state, COUNT(*) FROM tasks WHERE session_id = ? GROUP BY state", (sid,)
        ).fetchall()
        return {TaskState(s): int(n) for s, n in rows}

    def all_counters(self) -> dict[str, dict[TaskState, int]]:
        """Task counts by state for every session (one query for ListSession)."""
        out: dict[str, dict[TaskState, int]] = {}
        for sid, state, n in self._db.execute(
            "SELECT session_id, state, COUNT(*) FROM tasks GROUP BY session_id, state"
        ):
            out.setdefault(sid, {})[TaskState(state)] = int(n)
        return out

    # -- tasks ------------------------------------------------------------------------------

    def create_task(self, sid: str, tid: int, data: bytes | None) -> TaskRow:
        """Insert pending task ``tid`` (see :meth:`next_task_id`) with its event code 0."""
        now = now_ms()
        insert = (
            "INSERT INTO tasks (session_id, id, state, creation_time, events, input) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        event = event_line(_PENDING, CREATED, now)
        if data is None or len(data) <= INLINE_INPUT_MAX:
            self._write1(insert, (sid, tid, _PENDING, now, event, data))
        else:
            with self._tx() as db:
                db.execute(insert, (sid, tid, _PENDING, now, event, None))
                db.execute(
                    "INSERT INTO task_inputs (session_id, id, data) VALUES (?, ?, ?)",
                    (sid, tid, data),
                )
        return TaskRow(sid, tid, TaskState.PENDING, now, None, data, None, 0, 0)

    def get_task(self, sid: str, tid: int) -> TaskRow | None:
        """Task ``tid`` of session ``sid``, or None."""
        row = self._db.execute(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE session_id = ? AND id = ?", (sid, tid)
        ).fetchone()
        return task_row(row) if row else None

    def list_tasks(self, sid: str) -> list[TaskRow]:
        """Every task of a session, by id."""
        rows = self._db.execute(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE session_id = ? ORDER BY id", (sid,)
        ).fetchall()
        return [task_row(r) for r in rows]

    def task_ids(self, sid: str, state: TaskState) -> list[int]:
        """Ids of the session's tasks in ``state``, ascending."""
        rows = self._db.execute(
            "SELECT id FROM tasks WHERE session_id = ? AND state = ? ORDER BY id",
            (sid, int(state)),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def start_task(self, sid: str, tid: int) -> EventRow:
        """Pending -> Running (attempts + 1); returns the event appended (code 1)."""
        now = now_ms()
        self._write1(
            "UPDATE tasks SET state = ?, attempts = attempts + 1, events = events || ? "
            "WHERE session_id = ? AND id = ?",
            (_RUNNING, event_line(_RUNNING, STARTED, now), sid, tid),
        )
        return EventRow(_RUNNING, STARTED, now)

    def finish_task(
        self,
        sid: str,
        tid: int,
        *,
        state: TaskState,
        output: bytes | None,
        message: str,
        lost: str | None = None,
    ) -> list[EventRow]:
        """Running -> a terminal state, storing the output and an event (code = state).

        ``lost``: the task's instance was lost (the text of a code-0 event, before the final
        one); its losses count one more. Returns the events appended.
        """
        now = now_ms()
        events = [EventRow(int(state), message, now)]
        if lost is not None:
            events.insert(0, EventRow(_PENDING, lost, now))
        self._write1(
            "UPDATE tasks SET state = ?, output = ?, completion_time = ?, losses = losses + ?, "
            "events = events || ? WHERE session_id = ? AND id = ?",
            (
                int(state),
                output,
                now,
                0 if lost is None else 1,
                "".join(event_line(e.code, e.message, now) for e in events),
                sid,
                tid,
            ),
        )
        return events

    def cancel_tasks(self, sid: str, tids: list[int], *, message: str) -> EventRow:
        """Pending tasks ``tids`` -> Cancelled, in one transaction, each with the event (code 4)
        ``message``; returns that event. A task no longer Pending is left as it is."""
        now = now_ms()
        line = event_line(_CANCELLED, message, now)
        with self._tx() as db:
            db.executemany(
                "UPDATE tasks SET state = ?, completion_time = ?, events = events || ? "
                "WHERE session_id = ? AND id = ? AND state = ?",
                [(_CANCELLED, now, line, sid, tid, _PENDING) for tid in tids],
            )
        return EventRow(_CANCELLED, message, now)

    def requeue_task(self, sid: str, tid: int, *, message: str, lost: bool) -> EventRow:
        """Running -> Pending (the instance was lost, or the runtime restarted); returns the
        event appended (code 0)."""
        now = now_ms()
        self._write1(
            "UPDATE tasks SET state = ?, losses = losses + ?, events = events || ? "
            "WHERE session_id = ? AND id = ?",
            (_PENDING, 1 if lost else 0, event_line(_PENDING, message, now), sid, tid),
        )
        return EventRow(_PENDING, message, now)

    def running_tasks(self) -> list[tuple[str, int]]:
        """(session, task) of every Running task, for recovery at start-up."""
        rows = self._db.execute(
            "SELECT session_id, id FROM tasks WHERE state = ? ORDER BY session_id, id", (_RUNNING,)
        ).fetchall()
        return [(str(s), int(t)) for s, t in rows]

    # -- events -----------------------------------------------------------------------------

    def add_session_event(self, sid: str, code: int, message: str) -> None:
        """Record a session event (1001 bind failed, 1002 retry limit reached)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO session_events (session_id, code, message, creation_time) "
                "VALUES (?, ?, ?, ?)",
                (sid, code, message, now_ms()),
            )

    def events(self, sid: str, tid: int = SESSION_EVENT_TASK_ID) -> list[EventRow]:
        """Events of a task (or, with tid 0, of the session), oldest first."""
        if tid == SESSION_EVENT_TASK_ID:
            rows = self._db.execute(
                "SELECT code, message, creation_time FROM session_events WHERE session_id = ? "
                "ORDER BY seq",
                (sid,),
            ).fetchall()
            return [EventRow(int(c), m, int(t)) for c, m, t in rows]
        row = self._db.execute(
            "SELECT events FROM tasks WHERE session_id = ? AND id = ?", (sid, tid)
        ).fetchone()
        return parse_events(row[0]) if row else []


def _delete_session_rows(db: sqlite3.Connection, sid: str) -> None:
    db.execute("DELETE FROM session_events WHERE session_id = ?", (sid,))
    db.execute("DELETE FROM task_inputs WHERE session_id = ?", (sid,))
    db.execute("DELETE FROM tasks WHERE session_id = ?", (sid,))
    db.execute("DELETE FROM sessions WHERE id = ?", (sid,))
