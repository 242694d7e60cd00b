"""DBOS Transact on SQLite, in this process: the durable-step baseline (when dbos is installed).

DBOS records each ``@DBOS.step`` of a ``@DBOS.workflow`` in its system database before the
workflow goes on, so a recovered workflow skips completed steps, as our ``turn.step`` does (ours
also records the step's intent before it runs: one more write). Here it runs in-process on a
SQLite file (no server, no process boundary), its cheapest setting. dbos is optional (the
``bench`` extra): imported by name, so neither the package nor mypy need it.
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from typing import Any

__all__ = ["DbosPeer"]


def _unflushed_engine(url: str) -> Any:
    """A SQLAlchemy engine set up as DBOS sets up its own for SQLite (immediate transactions,
    busy timeout, foreign keys), plus ``synchronous=OFF``."""
    sqlalchemy: Any = importlib.import_module("sqlalchemy")
    engine = sqlalchemy.create_engine(url)

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        dbapi_conn.execute("PRAGMA synchronous=OFF")

    sqlalchemy.event.listen(engine, "connect", on_connect)
    return engine


def _noop(i: int) -> int:
    """The step's function: nothing but its result, as in our step agent."""
    return i


class DbosPeer:
    """A launched DBOS with one workflow of ``n`` no-op steps; :meth:`close` shuts it down."""

    def __init__(self, dbos_class: Any, workflow: Any) -> None:
        self._dbos = dbos_class
        self._workflow = workflow

    @classmethod
    def start_or_none(cls, folder: Path, *, flush: bool = True) -> DbosPeer | None:
        """Launch DBOS on ``folder/dbos.sqlite``; None when ``dbos`` is not importable.

        ``flush``: DBOS's default SQLite database, which flushes every commit to disk (its
        rollback journal with ``synchronous=FULL``); False sets ``synchronous=OFF`` (a commit
        survives the loss of the process, not of the machine), as our runtime without
        ``--fsync``.
        """
        try:
            dbos_class: Any = importlib.import_module("dbos").DBOS
        except ImportError:
            return None
        url = f"sqlite:///{folder / 'dbos.sqlite'}"
        config: dict[str, Any] = {
            "name": "flame-agents-bench",
            "system_database_url": url,
            "log_level": "WARNING",
        }
        if not flush:
            config["system_database_engine"] = _unflushed_engine(url)
        dbos_class(config=config)

        # Registered by calling the decorators (dbos is typed Any here, being optional).
        step = dbos_class.step()(_noop)

        def steps_workflow(n: int) -> int:
            for i in range(n):
                step(i)
            return n

        workflow = dbos_class.workflow()(steps_workflow)
        try:
            dbos_class.launch()
        except Exception:
            with contextlib.suppress(Exception):
                dbos_class.destroy(destroy_registry=True)
            raise
        peer = cls(dbos_class, workflow)
        for _ in range(3):  # its first workflows open connections and prepare statements
            peer.workflow(3)
        return peer

    def workflow(self, steps: int) -> None:
        """Run one workflow of ``steps`` no-op steps to its end."""
        self._workflow(steps)

    def close(self) -> None:
        """Shut DBOS down and forget its registrations (a later start registers again)."""
        with contextlib.suppress(Exception):
            self._dbos.destroy(destroy_registry=True)
