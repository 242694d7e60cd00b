"""Fixtures for the service-layer unit tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short private temp dir for Unix sockets (pytest's tmp_path can exceed 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="fa-svc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
