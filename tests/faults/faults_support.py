"""Helpers of the fault and load tests: repetitions, seeds, apps, waits and leak probes."""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil

from flame_agents import core
from flame_agents.testing import LocalRuntime

HERE = Path(__file__).resolve().parent
SERVICES = HERE / "services"
BEHAVE = HERE.parent / "runtime" / "services" / "behave.py"
"""The raw-bytes test service of the runtime tests (echo, sleep, block...)."""
DEADLINE = 90.0
"""Generous bound for conditions that normally hold within a second."""
SEED_ENV = "FLAME_AGENTS_FAULT_SEED"
REPEAT_ENV = "FLAME_AGENTS_FAULT_REPEAT"
QUICK_REPEAT = 2
LONG_REPEAT = 10

T = TypeVar("T")


def repetitions(long: bool) -> int:
    """How often each fault test runs: the env var, else 10 with ``--long``, else 2."""
    if value := os.environ.get(REPEAT_ENV):
        return max(1, int(value))
    return LONG_REPEAT if long else QUICK_REPEAT


def rng_for(test_name: str, rep: int) -> random.Random:
    """A seeded random for one repetition; the seed is printed so a failure reproduces."""
    base = int(os.environ.get(SEED_ENV, "20261125"))
    seed = base * 1000 + rep + sum(test_name.encode())
    print(f"random seed {seed} ({SEED_ENV}={base}, repetition {rep})")
    return random.Random(seed)


def wait_until(predicate: Callable[[], T], *, timeout: float = DEADLINE, what: str = "") -> T:
    """Poll ``predicate`` until truthy (returned), or fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not reached within {timeout}s: {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def register_behave(name: str, **spec: object) -> None:
    """Register the raw-bytes behave service as application ``name``."""
    core.register_application(name, {"command": sys.executable, "arguments": [str(BEHAVE)], **spec})


def register_tally(name: str, **spec: object) -> None:
    """Register TallyAgent as application ``name``."""
    core.register_application(
        name,
        {"command": sys.executable, "arguments": [str(SERVICES / "tally_service.py")], **spec},
    )


def no_instances_left(rt: LocalRuntime) -> None:
    """Wait until the runtime has no live descendant process."""
    wait_until(lambda: not rt.instance_pids(), what="every instance process stopped")


def open_fds(pid: int) -> int:
    """How many file descriptors process ``pid`` holds."""
    return psutil.Process(pid).num_fds()
