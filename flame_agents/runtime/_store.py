"""Durable store of the embedded runtime: applications, sessions, tasks and events in sqlite.

One sqlite database (``<home>/flame.db``) in WAL mode. Every mutating method runs in one
transaction and returns only after the commit, so the Frontend replies only for committed
state. By default ``synchronous=NORMAL`` in WAL mode keeps commits durable across a crash of the
runtime process; only an OS crash may lose the last transactions. With the runtime's ``--fsync``
(``Store(fsync=True)``) every commit is flushed to disk first (``synchronous=FULL``).

The store is used from the runtime's event-loop thread only: each statement is a sub-millisecond
local call, and one thread avoids any locking between the scheduler and the Frontend.
Application and session specs are kept as serialized protobuf messages, which round-trip every
wire field exactly.

A task transition is the hot path (three per task: create, start, finish), so a task is one
row of a ``WITHOUT ROWID`` table keyed by (session, id) with its events appended to the row
itself: each transition writes one b-tree leaf page, not a row, its indexes and separate event
rows. Nothing else is written per task: the next task id and the per-state counters of a
session live in memory, recovered from the tasks on first use after a start.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

from flame_agents._wire import types_pb2
from flame_agents.errors import ConfigError, InternalError, NotFoundError

__all__ = [
    "SESSION_CLOSED",
    "SESSION_OPEN",
    "AppRow",
    "EventRow",
    "SessionRow",
    "Store",
    "StoreWriteError",
    "TaskRow",
    "now_ms",
]

SESSION_OPEN = 0
SESSION_CLOSED = 1
PENDING, RUNNING, SUCCEED, FAILED, CANCELLED = 0, 1, 2, 3, 4
TERMINAL = frozenset({SUCCEED, FAILED, CANCELLED})
SESSION_EVENT_TASK_ID = 0
"""Session events are stored under task id 0, as Flame does."""

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of the current layout (1 = the first layout, migrated at open)."""

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS applications (
    name TEXT PRIMARY KEY,
    spec BLOB NOT NULL,
    creation_time INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    application TEXT NOT NULL,
    spec BLOB NOT NULL,
    state INTEGER NOT NULL,
    creation_time INTEGER NOT NULL,
    completion_time INTEGER,
    next_task_id INTEGER NOT NULL DEFAULT 1
);
"""
    + (
        # Small columns first and the payloads last: reading a task's state never touches the
        # overflow pages of a large input.
        """
CREATE TABLE IF NOT EXISTS tasks (
    session_id TEXT NOT NULL,
    id INTEGER NOT NULL,
    state INTEGER NOT NULL,
    creation_time INTEGER NOT NULL,
    completion_time INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    losses INTEGER NOT NULL DEFAULT 0,
    events TEXT NOT NULL DEFAULT '',
    input BLOB,
    output BLOB,
    PRIMARY KEY (session_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS task_inputs (
    session_id TEXT NOT NULL,
    id INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (session_id, id)
);
CREATE TABLE IF NOT EXISTS session_events (
    seq INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    code INTEGER NOT NULL,
    message TEXT,
    creation_time INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS session_events_by_session ON session_events (session_id, seq);
"""
    )
)

INLINE_INPUT_MAX = 512
"""Inputs up to this size live in the task row; larger ones in ``task_inputs``, written once.

A row is rewritten whole at every transition, and a row past ~1 KB spills into overflow pages,
so a large input kept in the row would be written again at start and at finish.
"""

RECENT_TASKS = 1024
"""Tasks written last whose rows are also kept in memory (see ``Store._recent``)."""
RECENT_PAYLOAD_MAX = 64 * 1024
"""Tasks with a larger input or output are read back from the database instead."""

_CREATED = "Task was created with state <Pending>"
_STARTED = "Task state was updated to <Running>"
_SUCCEEDED = "Task was completed with state <Succeed>"
_STANDARD_MESSAGES = (_CREATED, _STARTED, _SUCCEEDED)
"""Event texts stored as their index in this tuple (never reorder: stored data refers to it)."""
_STANDARD_INDEX = {text: i for i, text in enumerate(_STANDARD_MESSAGES)}


def now_ms() -> int:
    """Current Unix time in milliseconds, the unit of every ``*_time`` field on the wire."""
    return int(time.time() * 1000)


class StoreWriteError(InternalError):
    """A commit failed for lack of disk space (or an I/O error); nothing of it was applied."""


@dataclass(frozen=True)
class AppRow:
    """A registered application."""

    name: str
    spec: types_pb2.ApplicationSpec
    creation_time: int


@dataclass(frozen=True)
class SessionRow:
    """A session as stored (spec as the client gave it, common_data included; batch_size 1,
    and resreq absent when the client gave none)."""

    id: str
    application: str
    spec: types_pb2.SessionSpec
    state: int
    creation_time: int
    completion_time: int | None


@dataclass(frozen=True)
class TaskRow:
    """A task as stored; ``id`` is the per-session sequence number."""

    session_id: str
    id: int
    state: int
    creation_time: int
    completion_time: int | None
    input: bytes | None
    output: bytes | None
    attempts: int
    losses: int


@dataclass(frozen=True)
class EventRow:
    """A task event (code = task state) or a session event (1001/1002)."""

    code: int
    message: str | None
    creation_time: int


@dataclass
class _Tally:
    """What the store keeps in memory per session instead of writing it with every task."""

    next_id: int
    counts: dict[int, int] | None = None
    """Tasks by state, loaded on the first ``counters()`` call (None until then)."""

    def move(self, old: int | None, new: int, n: int = 1) -> None:
        if self.counts is None:
            return
        if old is not None:
            self.counts[old] = self.counts.get(old, 0) - n
        self.counts[new] = self.counts.get(new, 0) + n


class Store:
    """The sqlite-backed state of one runtime home."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        """Open (or create) the database; ConfigError naming the file if it is damaged.

        ``fsync``: ``synchronous=FULL`` (each commit flushed: survives power loss) instead of
        ``NORMAL`` (survives a crash of the runtime process, not of the OS).
        """
        self._path = path
        self._tallies: dict[str, _Tally] = {}
        # Open sessions as read (every CreateTask looks its session up): a row changes only
        # when the session closes or goes, and the spec is parsed once instead of per task.
        self._open_rows: dict[str, SessionRow] = {}
        # The rows (and events) of the tasks written last: the scheduler and the watchers read
        # a task several times per transition. Every write to a task goes through this class
        # and updates its entry after the commit, so an entry always equals the stored row.
        self._recent: OrderedDict[tuple[str, int], tuple[TaskRow, list[EventRow]]] = OrderedDict()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._db.execute("PRAGMA foreign_keys=OFF")
            # A damaged file must stop the start-up, never be served (or silently recreated).
            problems = [str(r[0]) for r in self._db.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(problems[:3]))
            self._open_schema()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ConfigError(
                f"runtime database {path} is damaged ({exc}). Restore it from a backup, or "
                "move it (with its -wal and -shm files) away to start with an empty state",
                path=str(path),
            ) from exc
        except BaseException:
            self._db.close()
            raise

    def _open_schema(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"runtime database {self._path} was written by a newer flame-agents (layout "
                f"{version}, this one knows {SCHEMA_VERSION}); upgrade flame-agents, or use "
                "another home",
                path=str(self._path),
            )
        legacy = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
        ).fetchone()
        if legacy is not None:
            with self._tx() as db:
                _migrate_v1(db)
        else:
            self._db.executescript(_SCHEMA)
            if version != SCHEMA_VERSION:
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Checkpoint and close the database."""
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # sqlite may already have rolled back (SQLITE_FULL): never mask the cause.
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise self._write_error(exc) from exc

    def _write1(self, sql: str, args: tuple[object, ...]) -> None:
        """Run one write statement as its own transaction (sqlite's autocommit).

        A single statement is atomic by itself, and this connection is the only writer (the
        home is locked), so this is ``_tx`` without the BEGIN and COMMIT round trips.
        """
        try:
            self._db.execute(sql, args)
        except sqlite3.OperationalError as exc:
            raise self._write_error(exc) from exc

    def _write_error(self, exc: sqlite3.OperationalError) -> Exception:
        text = str(exc)
        if "full" in text or "I/O" in text:
            return StoreWriteError(
                f"cannot write the runtime database {self._path}: {text}; free disk space "
                "under the runtime home (nothing of this request was stored) and retry",
                path=str(self._path),
            )
        return exc

    def _tally(self, sid: str) -> _Tally:
        """The in-memory tally of ``sid``, recovered from its rows on first use."""
        tally = self._tallies.get(sid)
        if tally is None:
            row = self._db.execute(
                "SELECT next_task_id FROM sessions WHERE id = ?", (sid,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"session {sid!r} does not exist", session_id=sid)
            top = self._db.execute(
                "SELECT MAX(id) FROM tasks WHERE session_id = ?", (sid,)
            ).fetchone()[0]
            # next_task_id is only advanced by the first layout; MAX(id) by this one.
            tally = _Tally(next_id=max(int(row[0]), int(top or 0) + 1))
            self._tallies[sid] = tally
        return tally

    def _counted_state(self, sid: str, tid: int) -> int | None:
        """The task's state before a transition, read only when its session is being counted."""
        tally = self._tallies.get(sid)
        if tally is None or tally.counts is None:
            return None
        recent = self._recent.get((sid, tid))
        if recent is not None:
            return recent[0].state
        row = self._db.execute(
            "SELECT state FROM tasks WHERE session_id = ? AND id = ?", (sid, tid)
        ).fetchone()
        return None if row is None else int(row[0])

    # -- applications -----------------------------------------------------------------------

    def get_app(self, name: str) -> AppRow | None:
        """The application ``name``, or None."""
        row = self._db.execute(
            "SELECT name, spec, creation_time FROM applications WHERE name = ?", (name,)
        ).fetchone()
        return _app(row) if row else None

    def list_apps(self) -> list[AppRow]:
        """Every registered application, by name."""
        rows = self._db.execute(
            "SELECT name, spec, creation_time FROM applications ORDER BY name"
        ).fetchall()
        return [_app(r) for r in rows]

    def put_app(self, name: str, spec: types_pb2.ApplicationSpec) -> None:
        """Insert or replace an application (keeping its creation time on replace)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO applications (name, spec, creation_time) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET spec = excluded.spec",
                (name, spec.SerializeToString(), now_ms()),
            )

    def delete_app(self, name: str) -> None:
        """Remove an application and its closed sessions (with their tasks and events)."""
        with self._tx() as db:
            db.execute("DELETE FROM applications WHERE name = ?", (name,))
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM sessions WHERE application = ? AND state = ?",
                    (name, SESSION_CLOSED),
                )
            ]
            for sid in ids:
                _delete_session_rows(db, sid)
        for sid in ids:
            self._tallies.pop(sid, None)
            self._open_rows.pop(sid, None)
            self._forget_session(sid)

    def open_sessions_of(self, app: str) -> int:
        """How many open sessions application ``app`` has."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM sessions WHERE application = ? AND state = ?",
            (app, SESSION_OPEN),
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
                (sid, spec.application, spec.SerializeToString(), SESSION_OPEN, now),
            )
        self._tallies[sid] = _Tally(next_id=1, counts={})
        self._open_rows.pop(sid, None)
        return SessionRow(sid, spec.application, spec, SESSION_OPEN, now, None)

    def get_session(self, sid: str) -> SessionRow | None:
        """The session ``sid``, or None."""
        cached = self._open_rows.get(sid)
        if cached is not None:
            return cached
        row = self._db.execute(
            "SELECT id, application, spec, state, creation_time, completion_time "
            "FROM sessions WHERE id = ?",
            (sid,),
        ).fetchone()
        if not row:
            return None
        found = _session(row)
        if found.state == SESSION_OPEN:
            self._open_rows[sid] = found
        return found

    def list_sessions(self, *, state: int | None = None) -> list[SessionRow]:
        """Every session (optionally only those in ``state``), oldest first."""
        sql = "SELECT id, application, spec, state, creation_time, completion_time FROM sessions"
        args: tuple[int, ...] = ()
        if state is not None:
            sql += " WHERE state = ?"
            args = (state,)
        rows = self._db.execute(sql + " ORDER BY creation_time, id", args).fetchall()
        return [_session(r) for r in rows]

    def close_session(self, sid: str) -> list[int]:
        """Mark the session closed and cancel its pending tasks; returns the cancelled ids."""
        now = now_ms()
        tally = self._tallies.get(sid)
        # Known to have nothing pending (the usual case): no scan of the session's tasks.
        skip_tasks = (
            tally is not None and tally.counts is not None and not tally.counts.get(PENDING)
        )
        ids: list[int] = []
        with self._tx() as db:
            if not skip_tasks:
                ids = [
                    int(r[0])
                    for r in db.execute(
                        "SELECT id FROM tasks WHERE session_id = ? AND state = ?", (sid, PENDING)
                    )
                ]
            if ids:
                db.execute(
                    "UPDATE tasks SET state = ?, completion_time = ? WHERE session_id = ? "
                    "AND state = ?",
                    (CANCELLED, now, sid, PENDING),
                )
            db.execute(
                "UPDATE sessions SET state = ?, completion_time = ? WHERE id = ? AND state = ?",
                (SESSION_CLOSED, now, sid, SESSION_OPEN),
            )
        self._open_rows.pop(sid, None)
        if ids:
            self._forget_session(sid)
        if tally is not None and ids:
            tally.move(PENDING, CANCELLED, len(ids))
        return ids

    def delete_session(self, sid: str) -> None:
        """Remove a session with its tasks and events."""
        with self._tx() as db:
            _delete_session_rows(db, sid)
        self._tallies.pop(sid, None)
        self._open_rows.pop(sid, None)
        self._forget_session(sid)

    def counters(self, sid: str) -> dict[int, int]:
        """Task counts of one session by state."""
        tally = self._tallies.get(sid)
        if tally is None or tally.counts is None:
            counts = self._count(sid)
            if tally is None and self.get_session(sid) is not None:
                tally = self._tally(sid)
            if tally is not None:
                tally.counts = counts
            return dict(counts)
        return {state: n for state, n in tally.counts.items() if n}

    def _count(self, sid: str) -> dict[int, int]:
        rows = self._db.execute(
            "SELECT state, COUNT(*) FROM tasks WHERE session_id = ? GROUP BY state", (sid,)
        ).fetchall()
        return {int(s): int(n) for s, n in rows}

    def all_counters(self) -> dict[str, dict[int, int]]:
        """Task counts by state for every session (one query for ListSession)."""
        out: dict[str, dict[int, int]] = {}
        for sid, state, n in self._db.execute(
            "SELECT session_id, state, COUNT(*) FROM tasks GROUP BY session_id, state"
        ):
            out.setdefault(sid, {})[int(state)] = int(n)
        return out

    # -- tasks ------------------------------------------------------------------------------

    def create_task(self, sid: str, data: bytes | None) -> TaskRow:
        """Insert a pending task with the session's next sequential id and its event code 0."""
        now = now_ms()
        tally = self._tally(sid)
        tid = tally.next_id
        insert = (
            "INSERT INTO tasks (session_id, id, state, creation_time, events, input) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        event = _event_line(PENDING, _CREATED, now)
        if data is None or len(data) <= INLINE_INPUT_MAX:
            self._write1(insert, (sid, tid, PENDING, now, event, data))
        else:
            with self._tx() as db:
                db.execute(insert, (sid, tid, PENDING, now, event, None))
                db.execute(
                    "INSERT INTO task_inputs (session_id, id, data) VALUES (?, ?, ?)",
                    (sid, tid, data),
                )
        tally.next_id = tid + 1
        tally.move(None, PENDING)
        row = TaskRow(sid, tid, PENDING, now, None, data, None, 0, 0)
        self._remember(row, [EventRow(PENDING, _CREATED, now)])
        return row

    def get_task(self, sid: str, tid: int) -> TaskRow | None:
        """Task ``tid`` of session ``sid``, or None."""
        recent = self._recent.get((sid, tid))
        if recent is not None:
            return recent[0]
        row = self._db.execute(
            f"SELECT {_TASK_COLS} FROM tasks WHERE session_id = ? AND id = ?", (sid, tid)
        ).fetchone()
        return _task(row) if row else None

    def list_tasks(self, sid: str) -> list[TaskRow]:
        """Every task of a session, by id."""
        rows = self._db.execute(
            f"SELECT {_TASK_COLS} FROM tasks WHERE session_id = ? ORDER BY id", (sid,)
        ).fetchall()
        return [_task(r) for r in rows]

    def task_ids(self, sid: str, state: int) -> list[int]:
        """Ids of the session's tasks in ``state``, ascending."""
        rows = self._db.execute(
            "SELECT id FROM tasks WHERE session_id = ? AND state = ? ORDER BY id", (sid, state)
        ).fetchall()
        return [int(r[0]) for r in rows]

    def start_task(self, sid: str, tid: int, *, executor_id: str) -> None:
        """Pending -> Running (attempts + 1), with event code 1."""
        now = now_ms()
        old = self._counted_state(sid, tid)
        self._write1(
            "UPDATE tasks SET state = ?, attempts = attempts + 1, events = events || ? "
            "WHERE session_id = ? AND id = ?",
            (RUNNING, _event_line(RUNNING, _STARTED, now), sid, tid),
        )
        self._moved(sid, old, RUNNING)
        self._update_recent(
            sid,
            tid,
            EventRow(RUNNING, _STARTED, now),
            lambda r: replace(r, state=RUNNING, attempts=r.attempts + 1),
        )

    def finish_task(
        self, sid: str, tid: int, *, state: int, output: bytes | None, message: str
    ) -> None:
        """Running -> a terminal state, storing the output and an event (code = state)."""
        now = now_ms()
        old = self._counted_state(sid, tid)
        self._write1(
            "UPDATE tasks SET state = ?, output = ?, completion_time = ?, "
            "events = events || ? WHERE session_id = ? AND id = ?",
            (state, output, now, _event_line(state, message, now), sid, tid),
        )
        self._moved(sid, old, state)
        if output is not None and len(output) > RECENT_PAYLOAD_MAX:
            self._recent.pop((sid, tid), None)
        self._update_recent(
            sid,
            tid,
            EventRow(state, message, now),
            lambda r: replace(r, state=state, output=output, completion_time=now),
        )

    def requeue_task(self, sid: str, tid: int, *, message: str, lost: bool) -> None:
        """Running -> Pending (the instance was lost, or the runtime restarted), with event 0."""
        now = now_ms()
        old = self._counted_state(sid, tid)
        self._write1(
            "UPDATE tasks SET state = ?, losses = losses + ?, events = events || ? "
            "WHERE session_id = ? AND id = ?",
            (PENDING, 1 if lost else 0, _event_line(PENDING, message, now), sid, tid),
        )
        self._moved(sid, old, PENDING)
        self._update_recent(
            sid,
            tid,
            EventRow(PENDING, message, now),
            lambda r: replace(r, state=PENDING, losses=r.losses + (1 if lost else 0)),
        )

    def _remember(self, row: TaskRow, events: list[EventRow]) -> None:
        if row.input is not None and len(row.input) > RECENT_PAYLOAD_MAX:
            return
        self._recent[(row.session_id, row.id)] = (row, events)
        if len(self._recent) > RECENT_TASKS:
            self._recent.popitem(last=False)

    def _update_recent(
        self, sid: str, tid: int, event: EventRow, change: Callable[[TaskRow], TaskRow]
    ) -> None:
        recent = self._recent.pop((sid, tid), None)
        if recent is not None:
            self._remember(change(recent[0]), [*recent[1], event])

    def _forget_session(self, sid: str) -> None:
        for key in [k for k in self._recent if k[0] == sid]:
            del self._recent[key]

    def _moved(self, sid: str, old: int | None, new: int) -> None:
        tally = self._tallies.get(sid)
        if tally is not None and old is not None:
            tally.move(old, new)

    def running_tasks(self) -> list[tuple[str, int]]:
        """(session, task) of every Running task, for recovery at start-up."""
        rows = self._db.execute(
            "SELECT session_id, id FROM tasks WHERE state = ? ORDER BY session_id, id", (RUNNING,)
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
        recent = self._recent.get((sid, tid))
        if recent is not None:
            return list(recent[1])
        row = self._db.execute(
            "SELECT events FROM tasks WHERE session_id = ? AND id = ?", (sid, tid)
        ).fetchone()
        return _parse_events(row[0]) if row else []


_TASK_COLS = (
    "session_id, id, state, creation_time, completion_time, "
    # A NULL input is either none or one kept in task_inputs (then that row exists).
    "COALESCE(input, (SELECT data FROM task_inputs i WHERE i.session_id = tasks.session_id "
    "AND i.id = tasks.id)), output, attempts, losses"
)


def _event_line(code: int, message: str | None, when: int) -> str:
    """One event as a JSON line ``[code,time,message]`` (a standard text as its index).

    ``json.dumps`` escapes every control and non-ASCII character, so a line never contains a
    newline of its own and lines concatenate with ``||``.
    """
    std = _STANDARD_INDEX.get(message) if message is not None else None
    text = str(std) if std is not None else json.dumps(message)
    return f"[{code},{when},{text}]\n"


def _parse_events(text: str) -> list[EventRow]:
    out = []
    for line in text.split("\n"):
        if line:
            code, when, rest = line[1:-1].split(",", 2)  # rest: an index, null or a string
            message = _STANDARD_MESSAGES[int(rest)] if rest.isdigit() else json.loads(rest)
            out.append(EventRow(int(code), message, int(when)))
    return out


def _delete_session_rows(db: sqlite3.Connection, sid: str) -> None:
    db.execute("DELETE FROM session_events WHERE session_id = ?", (sid,))
    db.execute("DELETE FROM task_inputs WHERE session_id = ?", (sid,))
    db.execute("DELETE FROM tasks WHERE session_id = ?", (sid,))
    db.execute("DELETE FROM sessions WHERE id = ?", (sid,))


def _migrate_v1(db: sqlite3.Connection) -> None:
    """Rewrite the first layout (task rows, event rows, AUTOINCREMENT) into this one."""
    db.execute("ALTER TABLE tasks RENAME TO tasks_v1")
    db.execute("DROP INDEX IF EXISTS tasks_by_state")
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    lines: dict[tuple[str, int], list[str]] = {}
    for sid, tid, code, message, when in db.execute(
        "SELECT session_id, task_id, code, message, creation_time FROM events "
        "WHERE task_id != ? ORDER BY seq",
        (SESSION_EVENT_TASK_ID,),
    ):
        lines.setdefault((sid, int(tid)), []).append(_event_line(int(code), message, int(when)))
    rows = db.execute(
        "SELECT session_id, id, state, creation_time, completion_time, attempts, losses, "
        "input, output FROM tasks_v1"
    ).fetchall()
    db.executemany(
        "INSERT INTO tasks (session_id, id, state, creation_time, completion_time, attempts, "
        "losses, events, input, output) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ((*r[:7], "".join(lines.get((r[0], int(r[1])), ())), r[7], r[8]) for r in rows),
    )
    db.execute(
        "INSERT INTO session_events (session_id, code, message, creation_time) "
        "SELECT session_id, code, message, creation_time FROM events WHERE task_id = ? "
        "ORDER BY seq",
        (SESSION_EVENT_TASK_ID,),
    )
    db.execute("DROP TABLE tasks_v1")
    db.execute("DROP TABLE events")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _app(row: tuple[str, bytes, int]) -> AppRow:
    spec = types_pb2.ApplicationSpec()
    spec.ParseFromString(row[1])
    return AppRow(row[0], spec, int(row[2]))


def _session(row: tuple[str, str, bytes, int, int, int | None]) -> SessionRow:
    spec = types_pb2.SessionSpec()
    spec.ParseFromString(row[2])
    return SessionRow(row[0], row[1], spec, int(row[3]), int(row[4]), row[5])


_TaskTuple = tuple[str, int, int, int, "int | None", "bytes | None", "bytes | None", int, int]


def _task(row: _TaskTuple) -> TaskRow:
    return TaskRow(
        session_id=row[0],
        id=int(row[1]),
        state=int(row[2]),
        creation_time=int(row[3]),
        completion_time=row[4],
        input=row[5],
        output=row[6],
        attempts=int(row[7]),
        losses=int(row[8]),
    )
