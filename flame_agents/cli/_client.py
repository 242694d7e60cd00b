"""The one place the CLI opens a Frontend connection (for ``--endpoint``), and the executor
rows it prints.

With no ``--endpoint`` the core client resolves where to connect itself (FLAME_ENDPOINT,
``~/.flame/flame.yaml``, else the embedded runtime of FLAME_AGENTS_HOME, started if needed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flame_agents.core import Connection

# The client stack (grpc, pyarrow) is imported inside the functions: it takes a good part of a
# second, and `--help`, `status`, `down` and YAML errors should not wait for it.

__all__ = ["connection", "list_executors"]


@contextmanager
def connection(endpoint: str | None) -> Iterator[Connection]:
    """A core client connection for the duration of one command."""
    from flame_agents.core import connect

    conn = connect(endpoint)
    try:
        yield conn
    finally:
        conn.close()


def list_executors(conn: Connection, *, with_process: bool = False) -> list[dict[str, Any]]:
    """The Frontend's executors as plain rows (id, node, state, session_id).

    ``with_process``: also ``pid`` and ``start_time`` (epoch ms) of each executor's process,
    None when the Frontend does not say (a Flame cluster).
    """
    rows = []
    for ex in conn.list_executors():
        row: dict[str, Any] = {
            "id": ex.id,
            "node": ex.node,
            "state": ex.state,
            "session_id": ex.session_id,
        }
        if with_process:
            row["pid"] = ex.pid
            row["start_time"] = ex.start_time
        rows.append(row)
    return rows
