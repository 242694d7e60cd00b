"""Fixtures of the Flame 0.6 conformance suite: a flamepy runner per module, shared apps.

Each test module gets its own embedded runtime (the module-scoped ``runtime`` fixture of
tests/conftest.py) and registers the conformance applications once.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conformance_support import HERE, SCRUBBED_ENV, STANDARD_APPS, Flamepy


@pytest.fixture(scope="module")
def flamepy_home() -> Iterator[Path]:
    """An empty HOME for flamepy processes (no ``~/.flame/flame.yaml`` leaks in), and their logs."""
    with tempfile.TemporaryDirectory(prefix="flamepy-home-") as home:
        yield Path(home)


@pytest.fixture(scope="module")
def flamepy(runtime: Any, flamepy_home: Path) -> Iterator[Flamepy]:
    """A scenario runner whose flamepy talks to this module's runtime."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(runtime.env())
    env["HOME"] = str(flamepy_home)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])
    runner = Flamepy(env, flamepy_home)
    try:
        yield runner
    finally:
        runner.close()


@pytest.fixture(scope="module")
def apps(flamepy: Flamepy) -> list[str]:
    """Register the conformance applications once per module (through flamepy itself)."""
    return list(flamepy("register_apps", apps=STANDARD_APPS))
