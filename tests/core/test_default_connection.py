"""connect() and the default connection resolve endpoints from arguments and the environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flame_agents import core
from flame_agents.config import DEFAULT_CACHE_ENDPOINT


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No flame.yaml, no FLAME_* variables, and no default connection before or after."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for key in ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT", "FLAME_CA_FILE"):
        monkeypatch.delenv(key, raising=False)
    core.reset_default_connection()
    yield
    core.reset_default_connection()


def test_connect_with_explicit_endpoint(clean_env: None) -> None:
    """An explicit endpoint is used as is, with Flame's default cache endpoint."""
    with core.connect("http://127.0.0.1:1") as conn:
        assert conn.endpoint == "http://127.0.0.1:1"
        assert conn.cache_endpoint == DEFAULT_CACHE_ENDPOINT
    assert conn.closed


def test_default_connection_reads_environment(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default connection comes from FLAME_ENDPOINT and is shared until reset."""
    monkeypatch.setenv("FLAME_ENDPOINT", "http://127.0.0.1:2")
    monkeypatch.setenv("FLAME_CACHE_ENDPOINT", "grpc://127.0.0.1:3")
    conn = core.default_connection()
    assert (conn.endpoint, conn.cache_endpoint) == ("http://127.0.0.1:2", "grpc://127.0.0.1:3")
    assert core.default_connection() is conn
    monkeypatch.setenv("FLAME_ENDPOINT", "http://127.0.0.1:4")
    core.reset_default_connection()
    assert conn.closed
    assert core.default_connection().endpoint == "http://127.0.0.1:4"


def test_closed_default_connection_is_replaced(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing the default connection by hand makes the next call open a new one."""
    monkeypatch.setenv("FLAME_ENDPOINT", "http://127.0.0.1:2")
    first = core.default_connection()
    first.close()
    assert core.default_connection() is not first
