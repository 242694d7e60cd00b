"""The ``behave`` service with a slow start-up that it logs.

``start <pid> <t>`` when the process begins, ``ready <pid> <t>`` after ``$START_SECONDS``
(default 0.3), just before it binds its socket (``t`` = CLOCK_MONOTONIC, comparable between
processes); one line each, appended to the file named by ``$START_LOG``. With
``$START_QUORUM`` = N, a process also waits (up to two minutes) until N processes have logged
their start before it gets ready: it is up only if N starts overlapped.
"""

from __future__ import annotations

import os
import time

from behave import Behave

from flame_agents.service._instance_server import serve


def _log(what: str) -> None:
    with open(os.environ["START_LOG"], "a") as out:
        out.write(f"{what} {os.getpid()} {time.monotonic()}\n")


def _wait_for_quorum(count: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with open(os.environ["START_LOG"]) as log:
            if sum(line.startswith("start ") for line in log) >= count:
                return
        time.sleep(0.02)


if __name__ == "__main__":
    _log("start")
    time.sleep(float(os.environ.get("START_SECONDS", "0.3")))  # like importing a large app
    if quorum := os.environ.get("START_QUORUM"):
        _wait_for_quorum(int(quorum))
    _log("ready")
    serve(Behave())
