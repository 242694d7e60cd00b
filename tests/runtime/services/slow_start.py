"""The ``behave`` service with a slow start-up that it logs.

``start <pid> <t>`` when the process begins, ``ready <pid> <t>`` after ``$START_SECONDS``
(default 0.3), just before it binds its socket (``t`` = CLOCK_MONOTONIC, comparable between
processes); one line each, appended to the file named by ``$START_LOG``.
"""

from __future__ import annotations

import os
import time

from behave import Behave

from flame_agents.service._instance_server import serve


def _log(what: str) -> None:
    with open(os.environ["START_LOG"], "a") as out:
        out.write(f"{what} {os.getpid()} {time.monotonic()}\n")


if __name__ == "__main__":
    _log("start")
    time.sleep(float(os.environ.get("START_SECONDS", "0.3")))  # like importing a large app
    _log("ready")
    serve(Behave())
