"""The runtime's sqlite database: opened and checked, its layout made current, writes committed.

One sqlite database (``<home>/flame.db``) in WAL mode. By default ``synchronous=NORMAL`` in WAL
mode keeps commits durable across a crash of the runtime process; only an OS crash may lose the
last transactions. With the runtime's ``--fsync`` (``Database(fsync=True)``) every commit is
flushed to disk first (``synchronous=FULL``). A damaged file, or one written by a newer layout,
stops the start-up with a :class:`~flame_agents.errors.ConfigError` naming it; a write that
fails for lack of disk space is a :class:`StoreWriteError` and leaves nothing behind. What the
tables hold is :mod:`._rows`; what the runtime reads and writes in them, :mod:`._store`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from flame_agents.errors import ConfigError, InternalError
from flame_agents.runtime.sessions._rows import SCHEMA, SCHEMA_VERSION, migrate_v1

__all__ = ["Database", "StoreWriteError"]


class StoreWriteError(InternalError):
    """A commit failed for lack of disk space (or an I/O error); nothing of it was applied."""


class Database:
    """The connection to one runtime home's database, and its transactions."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        """Open (or create) the database; ConfigError naming the file if it is damaged.

        ``fsync``: ``synchronous=FULL`` (each commit flushed: survives power loss) instead of
        ``NORMAL`` (survives a crash of the runtime process, not of the OS).
        """
        self.path = path
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self.conn.execute("PRAGMA foreign_keys=OFF")
            # A damaged file must stop the start-up, never be served (or silently recreated).
            problems = [str(r[0]) for r in self.conn.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(problems[:3]))
            self._open_schema()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise ConfigError(
                f"runtime database {path} is damaged ({exc}). Restore it from a backup, or "
                "move it (with its -wal and -shm files) away to start with an empty state",
                path=str(path),
            ) from exc
        except BaseException:
            self.conn.close()
            raise

    def _open_schema(self) -> None:
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"runtime database {self.path} was written by a newer flame-agents (layout "
                f"{version}, this one knows {SCHEMA_VERSION}); upgrade flame-agents, or use "
                "another home",
                path=str(self.path),
            )
        legacy = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
        ).fetchone()
        if legacy is not None:
            with self.tx() as db:
                migrate_v1(db)
        else:
            self.conn.executescript(SCHEMA)
            if version != SCHEMA_VERSION:
                self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Checkpoint and close the database."""
        self.conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                # sqlite may already have rolled back (SQLITE_FULL): never mask the cause.
                with suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise self._write_error(exc) from exc

    def write1(self, sql: str, args: tuple[object, ...]) -> None:
        """Run one write statement as its own transaction (sqlite's autocommit).

        A single statement is atomic by itself, and this connection is the only writer (the
        home is locked), so this is :meth:`tx` without the BEGIN and COMMIT round trips.
        """
        try:
            self.conn.execute(sql, args)
        except sqlite3.OperationalError as exc:
            raise self._write_error(exc) from exc

    def _write_error(self, exc: sqlite3.OperationalError) -> Exception:
        text = str(exc)
        if "full" in text or "I/O" in text:
            return StoreWriteError(
                f"cannot write the runtime database {self.path}: {text}; free disk space "
                "under the runtime home (nothing of this request was stored) and retry",
                path=str(self.path),
            )
        return exc
