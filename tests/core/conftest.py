"""Fixtures of the core client's tests: an in-process fake Frontend and a connection to it, and
a connection to the module's real runtime."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_frontend import FakeEnv, start_fake

from flame_agents import core
from flame_agents.core import Connection
from flame_agents.testing import LocalRuntime


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


@pytest.fixture
def conn(runtime: LocalRuntime) -> Iterator[Connection]:
    """A fresh connection to the module's runtime (its fast-path flag starts unknown)."""
    with core.connect(runtime.endpoint) as connection:
        yield connection
