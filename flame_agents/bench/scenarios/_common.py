"""Small helpers the scenarios share: quiet cleanup and the apps they register."""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = [
    "CALL_TIMEOUT",
    "ECHO_APP",
    "ECHO_MODULE",
    "NOOP_APP",
    "NOOP_MODULE",
    "close_quietly",
    "flamepy_invoke",
]

ECHO_APP = "bench-echo"
ECHO_MODULE = "flame_agents.bench.services.echo"
NOOP_APP = "bench-noop"
NOOP_MODULE = "flame_agents.bench.services.noop"

CALL_TIMEOUT = 120.0
"""Seconds one invoke may take before the scenario fails: a lost reply must fail the run (and
say so), never hang it."""


def close_quietly(session: Any) -> None:
    """Close a session at the end of a scenario; a failure here must not hide the figures."""
    with contextlib.suppress(Exception):
        session.close()


def flamepy_invoke(session: Any, payload: bytes) -> Any:
    """flamepy's core ``invoke`` with a deadline (its own ``invoke`` waits forever)."""
    return session.run(payload).result(timeout=CALL_TIMEOUT)
