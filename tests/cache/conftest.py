"""Fixtures for the object cache tests: real Flight servers on free ports in temp dirs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow.flight as flight
import pytest
from cache_wire_helpers import ServerFactory

from flame_agents import cache
from flame_agents.runtime.cache.server import CacheServer


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers (default root: one temp dir); every one is shut down at the end."""
    started: list[CacheServer] = []

    def start(root: Path | None = None, **options: object) -> CacheServer:
        server = CacheServer(root or tmp_path / "cache", **options)  # type: ignore[arg-type]
        server.serve_in_background()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
    cache.reset_clients()


@pytest.fixture
def server(start_server: ServerFactory) -> CacheServer:
    """One running cache server with an empty store."""
    return start_server()


@pytest.fixture
def client(server: CacheServer) -> Iterator[flight.FlightClient]:
    """A plain Flight client connected to ``server``."""
    conn = flight.FlightClient(server.endpoint)
    yield conn
    conn.close()
