"""Raw Flight helpers for wire-level cache tests (no flame_agents client code)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bson
import pyarrow as pa
import pyarrow.flight as flight

from flame_agents.runtime.cache.server import CacheServer

OPAQUE = pa.schema([pa.field("version", pa.uint64()), pa.field("data", pa.binary())])


def opaque(*chunks: bytes) -> list[pa.RecordBatch]:
    """One batch per chunk, rows ``(0, chunk)``."""
    return [
        pa.RecordBatch.from_arrays(
            [pa.array([0], pa.uint64()), pa.array([c], pa.binary())], schema=OPAQUE
        )
        for c in chunks
    ]


def put(
    client: flight.FlightClient,
    descriptor: flight.FlightDescriptor,
    batches: list[pa.RecordBatch],
    schema: pa.Schema = OPAQUE,
) -> tuple[dict[str, Any], int]:
    """do_put; return the decoded PutResult document and how many PutResults came back."""
    writer, reader = client.do_put(descriptor, schema)
    for batch in batches:
        writer.write_batch(batch)
    writer.done_writing()
    results = []
    while (buf := reader.read()) is not None:
        results.append(bson.decode(bytes(buf)))
    writer.close()
    return results[0], len(results)


def put_path(client: flight.FlightClient, path: str, *chunks: bytes) -> dict[str, Any]:
    """Put opaque chunks with a PATH descriptor."""
    return put(client, flight.FlightDescriptor.for_path(path), opaque(*chunks))[0]


def put_cmd(client: flight.FlightClient, cmd: str, *chunks: bytes) -> dict[str, Any]:
    """Put opaque chunks with a CMD descriptor."""
    return put(client, flight.FlightDescriptor.for_command(cmd.encode()), opaque(*chunks))[0]


def get(client: flight.FlightClient, ticket: str) -> pa.Table:
    """do_get a ticket and read the whole reply."""
    return client.do_get(flight.Ticket(ticket.encode())).read_all()


def rows(table: pa.Table) -> list[tuple[int, str, bytes]]:
    """Reply rows as ``(version, kind, data)``."""
    return list(
        zip(
            table.column("version").to_pylist(),
            table.column("kind").to_pylist(),
            table.column("data").to_pylist(),
            strict=True,
        )
    )


ServerFactory = Callable[..., CacheServer]
"""The ``start_server`` fixture: starts a cache server (root, options) stopped at teardown."""
