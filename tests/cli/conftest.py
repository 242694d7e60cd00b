"""Fixtures for CLI tests: run ``main([...])`` in-process and capture what it prints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from flame_agents.cli import main


@dataclass(frozen=True)
class Result:
    """Exit code and captured output of one command line."""

    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``main(list(argv))`` and return its exit code, stdout and stderr."""

    def run(*argv: str) -> Result:
        capsys.readouterr()  # drop anything printed before
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
