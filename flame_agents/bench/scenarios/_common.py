"""Small helpers the scenarios share: quiet cleanup and the apps they register."""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["ECHO_APP", "ECHO_MODULE", "NOOP_APP", "NOOP_MODULE", "close_quietly"]

ECHO_APP = "bench-echo"
ECHO_MODULE = "flame_agents.bench.services.echo"
NOOP_APP = "bench-noop"
NOOP_MODULE = "flame_agents.bench.services.noop"


def close_quietly(session: Any) -> None:
    """Close a session at the end of a scenario; a failure here must not hide the figures."""
    with contextlib.suppress(Exception):
        session.close()
