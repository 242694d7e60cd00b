"""Shared fixtures: ``runtime``, one embedded runtime per test module (a LocalRuntime)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flame_agents.testing import LocalRuntime


@pytest.fixture(scope="module")
def runtime() -> Iterator[LocalRuntime]:
    """A LocalRuntime on a temp home for the module; the environment points clients at it."""
    with LocalRuntime() as rt:
        yield rt
