"""Fault tests: each test taking ``rep`` runs that many times (2 quick, 10 with ``--long``)."""

from __future__ import annotations

import pytest
from faults_support import repetitions


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``rep`` with the repetition numbers of the chosen profile."""
    if "rep" in metafunc.fixturenames:
        count = repetitions(bool(metafunc.config.getoption("--long")))
        metafunc.parametrize("rep", range(count))
