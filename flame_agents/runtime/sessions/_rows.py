"""The runtime database's layout: its rows as Python values, its schema, and the event encoding.

:mod:`._store` reads and writes these; :mod:`._board` keeps the recent ones in memory. States are
the enums of :mod:`flame_agents.types` (the wire's numbers), never bare ints.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass

from flame_agents._wire import types_pb2
from flame_agents.types import SessionState, TaskState

__all__ = [
    "CREATED",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SESSION_EVENT_TASK_ID",
    "STARTED",
    "SUCCEEDED",
    "TASK_COLUMNS",
    "AppRow",
    "EventRow",
    "SessionRow",
    "TaskRow",
    "app_row",
    "event_line",
    "migrate_v1",
    "now_ms",
    "parse_events",
    "session_row",
    "task_row",
]

SESSION_EVENT_TASK_ID = 0
"""Session events are stored under task id 0, as Flame does."""

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of the current layout (1 = the first layout, migrated at open)."""

SCHEMA = (
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

TASK_COLUMNS = (
    "session_id, id, state, creation_time, completion_time, "
    # A NULL input is either none or one kept in task_inputs (then that row exists).
    "COALESCE(input, (SELECT data FROM task_inputs i WHERE i.session_id = tasks.session_id "
    "AND i.id = tasks.id)), output, attempts, losses"
)
"""What :func:`task_row` reads, in its order."""

CREATED = "Task was created with state <Pending>"
STARTED = "Task state was updated to <Running>"
SUCCEEDED = "Task was completed with state <Succeed>"
_STANDARD_MESSAGES = (CREATED, STARTED, SUCCEEDED)
"""Event texts stored as their index in this tuple (never reorder: stored data refers to it)."""
_STANDARD_INDEX = {text: i for i, text in enumerate(_STANDARD_MESSAGES)}


def now_ms() -> int:
    """Current Unix time in milliseconds, the unit of every ``*_time`` field on the wire."""
    return int(time.time() * 1000)


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
    state: SessionState
    creation_time: int
    completion_time: int | None


@dataclass(frozen=True)
class TaskRow:
    """A task as stored; ``id`` is the per-session sequence number."""

    session_id: str
    id: int
    state: TaskState
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


def event_line(code: int, message: str | None, when: int) -> str:
    """One event as a JSON line ``[code,time,message]`` (a standard text as its index).

    ``json.dumps`` escapes every control and non-ASCII character, so a line never contains a
    newline of its own and lines concatenate with ``||``.
    """
    std = _STANDARD_INDEX.get(message) if message is not None else None
    text = str(std) if std is not None else json.dumps(message)
    return f"[{code},{when},{text}]\n"


def parse_events(text: str) -> list[EventRow]:
    """The events of a task's ``events`` column, oldest first."""
    out = []
    for line in text.split("\n"):
        if line:
            code, when, rest = line[1:-1].split(",", 2)  # rest: an index, null or a string
            message = _STANDARD_MESSAGES[int(rest)] if rest.isdigit() else json.loads(rest)
            out.append(EventRow(int(code), message, int(when)))
    return out


def migrate_v1(db: sqlite3.Connection) -> None:
    """Rewrite the first layout (task rows, event rows, AUTOINCREMENT) into this one."""
    db.execute("ALTER TABLE tasks RENAME TO tasks_v1")
    db.execute("DROP INDEX IF EXISTS tasks_by_state")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    lines: dict[tuple[str, int], list[str]] = {}
    for sid, tid, code, message, when in db.execute(
        "SELECT session_id, task_id, code, message, creation_time FROM events "
        "WHERE task_id != ? ORDER BY seq",
        (SESSION_EVENT_TASK_ID,),
    ):
        lines.setdefault((sid, int(tid)), []).append(event_line(int(code), message, int(when)))
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


def app_row(row: tuple[str, bytes, int]) -> AppRow:
    """An application as read by ``SELECT name, spec, creation_time``."""
    spec = types_pb2.ApplicationSpec()
    spec.ParseFromString(row[1])
    return AppRow(row[0], spec, int(row[2]))


def session_row(row: tuple[str, str, bytes, int, int, int | None]) -> SessionRow:
    """A session as read by ``SELECT id, application, spec, state, creation_time,
    completion_time``."""
    spec = types_pb2.SessionSpec()
    spec.ParseFromString(row[2])
    return SessionRow(row[0], row[1], spec, SessionState(row[3]), int(row[4]), row[5])


_TaskTuple = tuple[str, int, int, int, "int | None", "bytes | None", "bytes | None", int, int]


def task_row(row: _TaskTuple) -> TaskRow:
    """A task as read by ``SELECT`` :data:`TASK_COLUMNS`."""
    return TaskRow(
        session_id=row[0],
        id=int(row[1]),
        state=TaskState(row[2]),
        creation_time=int(row[3]),
        completion_time=row[4],
        input=row[5],
        output=row[6],
        attempts=int(row[7]),
        losses=int(row[8]),
    )
