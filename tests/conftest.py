"""Shared fixtures: ``runtime``, one embedded runtime per test module (a LocalRuntime).

Option ``--long``: the long profile of the fault and load tests (more repetitions, bigger load).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from flame_agents import embedded
from flame_agents.testing import LocalRuntime


@pytest.fixture(scope="session", autouse=True)
def _private_agents_home() -> Iterator[Path]:
    """No test may touch the user's runtime home: the embedded default goes to a temp home.

    A test that reaches the embedded default (nothing configured) starts a runtime there; it is
    stopped, and the folder removed, when the session ends.
    """
    home = Path(tempfile.mkdtemp(prefix="flame-agents-tests-"))
    saved = os.environ.get("FLAME_AGENTS_HOME")
    os.environ["FLAME_AGENTS_HOME"] = str(home)
    try:
        yield home
    finally:
        embedded.stop_runtime(home, timeout=20)
        if saved is None:
            os.environ.pop("FLAME_AGENTS_HOME", None)
        else:
            os.environ["FLAME_AGENTS_HOME"] = saved
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI's main() configures the ``flame_agents`` logger (and a test may configure
    structlog); undo that afterwards so later tests log as a fresh process does."""
    saved = structlog.get_config()
    logger = logging.getLogger("flame_agents")
    state = (logger.level, logger.propagate, list(logger.handlers))
    yield
    structlog.configure(**saved)
    logger.setLevel(state[0])
    logger.propagate = state[1]
    logger.handlers[:] = state[2]


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
