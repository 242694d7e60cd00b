"""Our cache client against a real server: object API, local cache, framing, refs, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bson
import cloudpickle
import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from cache_wire_helpers import ServerFactory

from flame_agents import cache
from flame_agents._wire.cache.rejections import map_flight_error
from flame_agents.cache._codec import decode_data, encode_data
from flame_agents.errors import (
    CacheError,
    CommitConflictError,
    InvalidArgumentError,
    LimitExceededError,
    ObjectNotFoundError,
    RuntimeUnavailableError,
)
from flame_agents.runtime.cache.server import CacheServer


class _RecordingServer(CacheServer):
    """A cache server that records the tickets it is asked for."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.tickets: list[str] = []

    def do_get(self, context: Any, ticket: Any) -> Any:
        self.tickets.append(ticket.ticket.decode())
        return super().do_get(context, ticket)


@pytest.fixture
def recording(tmp_path: Path) -> Any:
    """A running server that records do_get tickets."""
    server = _RecordingServer(tmp_path / "rec")
    server.serve_in_background()
    yield server
    server.shutdown()
    cache.reset_clients()


def _concat(base: list[int], deltas: list[int]) -> list[int]:
    return base + deltas


def test_put_get_update_patch_delete(server: CacheServer) -> None:
    """The object API round-trips Python objects and follows the version arithmetic."""
    ref = cache.put_object("app/s1", {"a": 1}, endpoint=server.endpoint)
    assert (ref.endpoint, ref.version) == (server.endpoint, 1)
    assert cache.get_object(ref) == {"a": 1}
    ref = cache.update_object(ref, [1])
    assert ref.version == 2
    ref = cache.patch_object(ref, 2)
    ref = cache.patch_object(ref, 3)
    assert ref.version == 4
    assert cache.get_object(ref) == [1]  # without a deserializer: the base only
    assert cache.get_object(ref, _concat) == [1, 2, 3]
    cache.delete_objects("app/s1", endpoint=server.endpoint)
    with pytest.raises(ObjectNotFoundError):
        cache.get_object(cache.ObjectRef(ref.endpoint, ref.key))


def test_local_cache_uses_not_modified_and_patches_only(recording: _RecordingServer) -> None:
    """Reads send the cached version; unchanged -> not modified; a foreign patch -> patches only."""
    ref = cache.put_object("app/s", [1], endpoint=recording.endpoint)
    assert cache.get_object(ref, _concat) == [1]
    assert cache.get_object(ref, _concat) == [1]
    assert recording.tickets == [f"{ref.key}:0", f"{ref.key}:1"]
    # A foreign writer (bypassing our local cache) appends a patch.
    with flight.FlightClient(recording.endpoint) as c:
        batch = pa.RecordBatch.from_arrays(
            [pa.array([0], pa.uint64()), pa.array([encode_data(2)], pa.binary())],
            names=["version", "data"],
        )
        writer, reader = c.do_put(
            flight.FlightDescriptor.for_command(f"PATCH:{ref.key}".encode()), batch.schema
        )
        writer.write_batch(batch)
        writer.done_writing()
        reader.read()
        writer.close()
    assert cache.get_object(ref, _concat) == [1, 2]
    assert recording.tickets[-1] == f"{ref.key}:1"
    assert cache.get_object(ref, _concat) == [1, 2]
    assert recording.tickets[-1] == f"{ref.key}:2"
    # Version 0 bypasses the local cache.
    cache.get_object(cache.ObjectRef(ref.endpoint, ref.key, 0))
    assert recording.tickets[-1] == f"{ref.key}:0"


def test_local_cache_recovers_from_compaction_by_others(server: CacheServer) -> None:
    """A foreign update (new base) is seen in full on the next read."""
    ref = cache.put_object("app/s", [1], endpoint=server.endpoint)
    assert cache.get_object(ref) == [1]
    cache.update_raw(ref, encode_data([9]))  # our local cache is dropped; re-read it
    assert cache.get_object(ref) == [9]
    cache.update_raw(ref, encode_data([7]), expected_version=2)
    assert cache.get_object(ref) == [7]


@pytest.mark.parametrize(
    "value",
    [
        {"nested": [1, 2.5, "x", None]},
        b"raw bytes",
        np.arange(12, dtype=np.float32).reshape(3, 4),
        pa.array([1, 2, None]),
    ],
    ids=["dict", "bytes", "numpy", "array"],
)
def test_payload_framing_round_trips(server: CacheServer, value: Any) -> None:
    """Pickled, numpy and Arrow-array payloads come back equal."""
    ref = cache.put_object("app/s", value, endpoint=server.endpoint)
    back = cache.get_object(ref)
    if isinstance(value, np.ndarray):
        assert back.tolist() == value.tolist() and back.dtype == value.dtype
    elif isinstance(value, pa.Array):
        assert back.equals(value)
    else:
        assert back == value


def test_framing_tags_match_flamepy() -> None:
    """Tags: FLM\\x00 pickle, \\x01 numpy, \\x02 table, \\x03 array, \\x04 batch; none = pickle."""
    table = pa.table({"x": [1]})
    assert encode_data({"a": 1})[:4] == b"FLM\x00"
    assert encode_data(np.zeros(2))[:4] == b"FLM\x01"
    assert encode_data(table)[:4] == b"FLM\x02"
    assert encode_data(pa.array([1]))[:4] == b"FLM\x03"
    assert encode_data(table.to_batches()[0])[:4] == b"FLM\x04"
    assert decode_data(encode_data(table)).equals(table)
    assert decode_data(encode_data(table.to_batches()[0])).equals(table.to_batches()[0])
    assert decode_data(cloudpickle.dumps({"plain": True})) == {"plain": True}


def test_native_arrow_round_trip_strips_flame_metadata(server: CacheServer) -> None:
    """Tables and record batches are stored natively and come back without flame.cache.*."""
    table = pa.table({"x": [1, 2], "y": ["a", "b"]}).replace_schema_metadata({b"k": b"v"})
    ref = cache.put_object("app/s", table, endpoint=server.endpoint)
    back = cache.get_object(ref)
    assert back.equals(table) and back.schema.metadata == {b"k": b"v"}
    batch = table.to_batches()[0]
    back_batch = cache.get_object(cache.put_object("app/s", batch, endpoint=server.endpoint))
    assert isinstance(back_batch, pa.RecordBatch) and back_batch.equals(batch)
    empty = pa.table({"x": pa.array([], pa.int64())})
    assert (
        cache.get_object(cache.put_object("app/s", empty, endpoint=server.endpoint)).num_rows == 0
    )
    ref2 = cache.update_object(ref, pa.table({"x": [3]}))
    assert ref2.version == 2
    assert cache.get_object(ref2).column("x").to_pylist() == [3]


def test_object_ref_bson_matches_flamepy_encoding() -> None:
    """encode() is BSON {endpoint, key, version} with int32 when it fits, int64 otherwise."""
    small = cache.ObjectRef("grpc://h:1", "a/s/x", 3)
    assert small.encode() == bson.encode({"endpoint": "grpc://h:1", "key": "a/s/x", "version": 3})
    assert b"\x10version\x00" in small.encode()
    big = cache.ObjectRef("grpc://h:1", "a/s/x", 2**40)
    assert b"\x12version\x00" in big.encode()
    assert cache.ObjectRef.decode(big.encode()) == big
    with pytest.raises(InvalidArgumentError, match="ObjectRef"):
        cache.ObjectRef.decode(b"nonsense")


def test_raw_api_stores_bytes_as_is(server: CacheServer) -> None:
    """put_raw/patch_raw/fetch_raw keep bytes unchanged; since_version returns only news."""
    ref = cache.put_raw("app/s", b"base", endpoint=server.endpoint)
    ref = cache.patch_raw(ref, b"p2")
    ref = cache.patch_raw(ref, b"p3", expected_version=2)
    assert cache.fetch_raw(ref) == cache.RawObject(ref.key, 3, b"base", 1, [(2, b"p2"), (3, b"p3")])
    assert cache.fetch_raw(ref, since_version=2) == cache.RawObject(
        ref.key, 3, None, 0, [(3, b"p3")]
    )
    assert cache.fetch_raw(ref, since_version=3) == cache.RawObject(ref.key, 3, None, 0, [])
    fixed = cache.put_raw("app/s/fixed-id", b"one", endpoint=server.endpoint)
    assert (fixed.key, fixed.version) == ("app/s/fixed-id", 1)
    assert cache.put_raw("app/s/fixed-id", b"two", endpoint=server.endpoint).version == 2
    with pytest.raises(InvalidArgumentError, match="bytes"):
        cache.put_raw("app/s", "text", endpoint=server.endpoint)  # type: ignore[arg-type]
    with pytest.raises(CacheError, match="native"):
        cache.fetch_raw(cache.put_object("app/s", pa.table({"x": [1]}), endpoint=server.endpoint))


def test_patch_limit_is_limit_exceeded(start_server: ServerFactory) -> None:
    """Past the per-object patch limit a patch fails with LimitExceededError."""
    server = start_server(max_patches=2)
    ref = cache.put_raw("app/s", b"b", endpoint=server.endpoint)
    cache.patch_raw(ref, b"1")
    cache.patch_raw(ref, b"2")
    with pytest.raises(LimitExceededError, match="update the object"):
        cache.patch_raw(ref, b"3")


def test_unreachable_server_is_runtime_unavailable() -> None:
    """A cache nobody listens on raises the retryable RuntimeUnavailableError."""
    with pytest.raises(RuntimeUnavailableError) as info:
        cache.put_object("app/s", 1, endpoint="grpc://127.0.0.1:1")
    assert info.value.retryable


def test_patch_of_missing_object_is_object_not_found(server: CacheServer) -> None:
    """patch_object on an absent key raises ObjectNotFoundError."""
    with pytest.raises(ObjectNotFoundError, match="a/s/none"):
        cache.patch_object(cache.ObjectRef(server.endpoint, "a/s/none", 1), 1)


def test_error_mapping_is_one_function() -> None:
    """map_flight_error maps each failure kind to its class and strips server tracebacks."""
    tail = ". Detail: Python exception: Traceback ..."
    assert isinstance(
        map_flight_error(pa.ArrowKeyError("gone" + tail), op="x"), ObjectNotFoundError
    )
    assert isinstance(map_flight_error(pa.ArrowInvalid("bad" + tail), op="x"), InvalidArgumentError)
    conflict = map_flight_error(
        flight.FlightServerError("version conflict (expected 1, current 2) on k. Detail: Failed"),
        op="patch_raw",
    )
    assert isinstance(conflict, CommitConflictError)
    assert conflict.message == "patch_raw: version conflict (expected 1, current 2) on k"
    unavailable = map_flight_error(flight.FlightUnavailableError("down"), op="x")
    assert isinstance(unavailable, RuntimeUnavailableError)
    assert type(map_flight_error(flight.FlightInternalError("disk"), op="x")) is CacheError
    assert str(map_flight_error(pa.ArrowInvalid("bad" + tail), op="op")) == "op: bad"


def test_default_endpoint_comes_from_configuration(
    server: CacheServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without endpoint=, put and delete use the configured cache (FLAME_CACHE_ENDPOINT)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FLAME_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("FLAME_CACHE_ENDPOINT", server.endpoint)
    ref = cache.put_object("app/s", "hello")
    assert ref.endpoint == server.endpoint
    assert cache.get_object(ref) == "hello"
    cache.delete_objects("app/*")
    with pytest.raises(ObjectNotFoundError):
        cache.get_object(ref)


def test_reset_clients_reconnects_after_restart(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    """After the server restarts on the same port, calls work again (stale clients dropped)."""
    root = tmp_path / "restart"
    first = start_server(root)
    ref = cache.put_object("app/s", 1, endpoint=first.endpoint)
    port = first.port
    first.shutdown()
    with pytest.raises(RuntimeUnavailableError):
        cache.get_object(cache.ObjectRef(ref.endpoint, ref.key))
    start_server(root, port=port)
    cache.reset_clients()
    assert cache.get_object(cache.ObjectRef(ref.endpoint, ref.key)) == 1


def test_objects_larger_than_grpc_default_limit(server: CacheServer) -> None:
    """Objects and patches beyond gRPC's 4 MiB default message size go both ways."""
    big = bytes(range(256)) * (24 * 1024)  # 6 MiB
    ref = cache.put_raw("app/s", big, endpoint=server.endpoint)
    ref = cache.patch_raw(ref, big[::-1])
    raw = cache.fetch_raw(ref)
    assert raw.base == big and raw.patches == [(2, big[::-1])]
