"""Fixtures of the core client's unit tests: an in-process fake Frontend and a connection to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_frontend import FakeEnv, start_fake

from flame_agents.core import Connection


@pytest.fixture
def fake_env() -> Iterator[FakeEnv]:
    """A fresh fake Frontend with a connected client; both stopped after the test."""
    fake, server, endpoint = start_fake()
    conn = Connection(endpoint, rpc_timeout=10)
    try:
        yield FakeEnv(fake, endpoint, conn)
    finally:
        conn.close()
        server.stop(grace=None).wait(5)
        fake.stop()
