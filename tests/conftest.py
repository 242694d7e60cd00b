"""Shared fixtures: ``runtime``, one embedded runtime per test module (a LocalRuntime).

Option ``--long``: the long profile of the fault and load tests (more repetitions, bigger load).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flame_agents.testing import LocalRuntime


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--long`` (fault and load tests: the long profile)."""
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="fault and load tests: more repetitions and the 200 x 50 load profile",
    )


@pytest.fixture(scope="module")
def runtime() -> Iterator[LocalRuntime]:
    """A LocalRuntime on a temp home for the module; the environment points clients at it."""
    with LocalRuntime() as rt:
        yield rt
