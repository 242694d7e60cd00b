"""The cache server's Flight semantics, byte for byte as flame-wire §4.2 describes them."""

from __future__ import annotations

import bson
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from cache_wire_helpers import OPAQUE, get, opaque, put, put_cmd, put_path, rows

from flame_agents._wire.cache.aliases import FORMER_ENDPOINTS_ACTION, decode_former
from flame_agents._wire.cache.follow import FOLLOW_ACTION
from flame_agents._wire.cache.schemas import REPLY_SCHEMA
from flame_agents.runtime.cache.server import CacheServer


def test_put_with_prefix_creates_uuid_object_at_version_1(
    server: CacheServer, client: flight.FlightClient
) -> None:
    """A PATH put of ``<app>/<ssn>`` creates ``<app>/<ssn>/<uuid4>`` at version 1."""
    doc, count = put(client, flight.FlightDescriptor.for_path("app/ssn"), opaque(b"x"))
    assert count == 1
    assert list(doc) == ["endpoint", "key", "version"]
    assert doc["endpoint"] == server.endpoint == f"grpc://127.0.0.1:{server.port}"
    app, ssn, object_id = doc["key"].split("/")
    assert (app, ssn, len(object_id), object_id[14]) == ("app", "ssn", 36, "4")
    assert doc["version"] == 1


def test_put_result_version_is_bson_int64(client: flight.FlightClient) -> None:
    """The PutResult's version is encoded as BSON int64 (type 0x12), not int32."""
    writer, reader = client.do_put(flight.FlightDescriptor.for_path("a/s"), OPAQUE)
    writer.write_batch(opaque(b"x")[0])
    writer.done_writing()
    raw = bytes(reader.read())
    writer.close()
    assert b"\x12version\x00" in raw
    assert isinstance(bson.decode(raw)["version"], int)


def test_opaque_rows_and_batches_are_concatenated(client: flight.FlightClient) -> None:
    """All rows of all batches of an opaque upload form one blob (column 1, by position)."""
    schema = pa.schema([pa.field("v", pa.uint64()), pa.field("payload", pa.binary())])
    batch = pa.RecordBatch.from_arrays(
        [pa.array([0, 0], pa.uint64()), pa.array([b"ab", b"cd"], pa.binary())], schema=schema
    )
    doc, _ = put(client, flight.FlightDescriptor.for_path("a/s"), [batch, batch], schema)
    assert rows(get(client, f"{doc['key']}:0")) == [(1, "base", b"abcdabcd")]


def test_update_replaces_base_drops_patches_and_bumps_version(
    client: flight.FlightClient,
) -> None:
    """A PATH put of a full key replaces the base, discards patches, version = current + 1."""
    key = put_path(client, "a/s", b"v1")["key"]
    assert put_cmd(client, f"PATCH:{key}", b"p2")["version"] == 2
    doc = put_path(client, key, b"v3")
    assert (doc["key"], doc["version"]) == (key, 3)
    assert rows(get(client, f"{key}:0")) == [(3, "base", b"v3")]


def test_put_with_explicit_new_key_starts_at_version_1(client: flight.FlightClient) -> None:
    """A full-key put of an absent object creates it at version 1 (flamepy's upload_object)."""
    assert put_path(client, "a/pkg/app-1.0.tar.gz", b"tar")["version"] == 1


def test_patch_appends_and_full_reply_has_base_then_patches(client: flight.FlightClient) -> None:
    """Patches bump the version; a full reply is the base row then one row per patch."""
    key = put_path(client, "a/s", b"base")["key"]
    assert put_cmd(client, f"PATCH:{key}", b"p1")["version"] == 2
    assert put_cmd(client, f"PATCH:{key}", b"p2")["version"] == 3
    reply = client.do_get(flight.Ticket(f"{key}:0".encode()))
    batches = list(reply)
    assert [b.data.num_rows for b in batches] == [1, 1, 1]  # one row per batch
    table = pa.Table.from_batches([b.data for b in batches])
    assert table.schema.equals(REPLY_SCHEMA)
    assert rows(table) == [(1, "base", b"base"), (2, "patch", b"p1"), (3, "patch", b"p2")]


def test_patch_of_missing_object_is_not_found(client: flight.FlightClient) -> None:
    """PATCH on an absent key fails with NOT_FOUND."""
    with pytest.raises(KeyError, match="not found"):
        put_cmd(client, "PATCH:a/s/missing", b"p")


def test_not_modified_reply_is_schema_only(client: flight.FlightClient) -> None:
    """Ticket at the current version: schema-only stream, 3-column schema, zero rows."""
    key = put_path(client, "a/s", b"x")["key"]
    reply = client.do_get(flight.Ticket(f"{key}:1".encode()))
    assert reply.schema.equals(REPLY_SCHEMA)
    assert not [f.type for f in REPLY_SCHEMA if f.nullable]
    assert reply.read_all().num_rows == 0


def test_patches_only_reply_after_client_version(client: flight.FlightClient) -> None:
    """A client at a version between base and current gets only the newer patches."""
    key = put_path(client, "a/s", b"base")["key"]
    for p in (b"p2", b"p3", b"p4"):
        put_cmd(client, f"PATCH:{key}", p)
    assert rows(get(client, f"{key}:2")) == [(3, "patch", b"p3"), (4, "patch", b"p4")]
    assert rows(get(client, f"{key}:1")) == [
        (2, "patch", b"p2"),
        (3, "patch", b"p3"),
        (4, "patch", b"p4"),
    ]


def test_full_reply_when_client_version_predates_base(client: flight.FlightClient) -> None:
    """A client older than the base (or ahead of the server) gets a full reply."""
    key = put_path(client, "a/s", b"v1")["key"]
    put_path(client, key, b"v2")
    put_cmd(client, f"PATCH:{key}", b"p3")
    assert rows(get(client, f"{key}:1")) == [(2, "base", b"v2"), (3, "patch", b"p3")]
    assert rows(get(client, f"{key}:9"))[0] == (2, "base", b"v2")


def test_ticket_without_version_means_zero(client: flight.FlightClient) -> None:
    """A ticket with no ``:`` is read as version 0 (full reply)."""
    key = put_path(client, "a/s", b"x")["key"]
    assert rows(get(client, key)) == [(1, "base", b"x")]


def test_get_of_missing_object_is_not_found(client: flight.FlightClient) -> None:
    """do_get of an absent key fails with NOT_FOUND."""
    with pytest.raises(KeyError):
        get(client, "a/s/none:0")


def test_native_arrow_stored_as_is_with_version_metadata(client: flight.FlightClient) -> None:
    """A native Arrow upload comes back with its schema, rows and flame.cache.version."""
    table = pa.table({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    metadata = {
        b"flame.cache.format": b"arrow-table-v1",
        b"flame.cache.version": b"0",
        b"flame.cache.logical_type": b"pyarrow.table",
        b"user": b"kept",
    }
    table = table.replace_schema_metadata(metadata)
    doc, _ = put(client, flight.FlightDescriptor.for_path("a/s"), table.to_batches(), table.schema)
    back = get(client, f"{doc['key']}:0")
    assert back.select(["x", "y"]).to_pydict() == {"x": [1, 2, 3], "y": ["a", "b", "c"]}
    assert back.schema.metadata[b"flame.cache.version"] == b"1"
    assert back.schema.metadata[b"user"] == b"kept"
    doc2, _ = put(
        client, flight.FlightDescriptor.for_path(doc["key"]), table.to_batches(), table.schema
    )
    assert get(client, f"{doc['key']}:0").schema.metadata[b"flame.cache.version"] == b"2"
    assert get(client, f"{doc['key']}:2").num_rows == 0  # not modified
    with pytest.raises(pa.ArrowInvalid, match="native"):
        put_cmd(client, f"PATCH:{doc2['key']}", b"p")


def test_empty_upload_is_rejected(client: flight.FlightClient) -> None:
    """A do_put with no batches fails with INVALID_ARGUMENT "No data received"."""
    with pytest.raises(pa.ArrowInvalid, match="No data received"):
        put(client, flight.FlightDescriptor.for_path("a/s"), [])


def test_get_flight_info_points_at_advertised_endpoint(
    server: CacheServer, client: flight.FlightClient
) -> None:
    """get_flight_info answers for any valid key: ticket = key, location = endpoint."""
    info = client.get_flight_info(flight.FlightDescriptor.for_path("a/s/absent"))
    assert info.endpoints[0].ticket.ticket == b"a/s/absent"
    assert info.endpoints[0].locations[0].uri.decode() == server.endpoint
    assert (info.total_records, info.total_bytes) == (-1, -1)
    assert len(info.schema) == 0
    native = pa.table({"x": [1]}).replace_schema_metadata(
        {b"flame.cache.format": b"arrow-table-v1"}
    )
    doc, _ = put(
        client, flight.FlightDescriptor.for_path("a/s"), native.to_batches(), native.schema
    )
    info = client.get_flight_info(flight.FlightDescriptor.for_path(doc["key"]))
    assert info.schema.names == ["x"]


def test_list_flights_lists_every_object_with_size(
    server: CacheServer, client: flight.FlightClient
) -> None:
    """list_flights yields one FlightInfo per object with its size in total_bytes."""
    k1 = put_path(client, "a/s", b"12345")["key"]
    k2 = put_path(client, "b/s", b"1")["key"]
    put_cmd(client, f"PATCH:{k2}", b"22")
    infos = {i.endpoints[0].ticket.ticket.decode(): i for i in client.list_flights()}
    assert set(infos) == {k1, k2}
    assert infos[k1].total_bytes == 5
    assert infos[k2].total_bytes == 3
    assert infos[k1].endpoints[0].locations[0].uri.decode() == server.endpoint


def test_delete_action_key_session_and_wildcard(client: flight.FlightClient) -> None:
    """DELETE removes a key, an ``app/ssn`` prefix or ``app/*``; each answers one b"OK"."""
    a1 = put_path(client, "a/s1", b"x")["key"]
    a2 = put_path(client, "a/s1", b"x")["key"]
    a3 = put_path(client, "a/s2", b"x")["key"]
    b1 = put_path(client, "b/s1", b"x")["key"]

    def delete(body: str) -> list[bytes]:
        return [
            r.body.to_pybytes() for r in client.do_action(flight.Action("DELETE", body.encode()))
        ]

    def present() -> set[str]:
        return {i.endpoints[0].ticket.ticket.decode() for i in client.list_flights()}

    assert delete(a1) == [b"OK"]
    assert present() == {a2, a3, b1}
    assert delete("a/s1") == [b"OK"]
    assert present() == {a3, b1}
    put_cmd(client, f"PATCH:{a3}", b"p")
    assert delete("a/*") == [b"OK"]
    assert present() == {b1}
    assert delete("a/*") == [b"OK"]  # deleting nothing still answers OK


def test_unknown_action_and_list_actions(client: flight.FlightClient) -> None:
    """DELETE, the former-endpoints query and the follow read exist: list_actions says so and
    other actions are INVALID_ARGUMENT."""
    assert [a.type for a in client.list_actions()] == [
        "DELETE",
        FORMER_ENDPOINTS_ACTION,
        FOLLOW_ACTION,
    ]
    (body,) = client.do_action(flight.Action(FORMER_ENDPOINTS_ACTION, b""))
    assert decode_former(body.body.to_pybytes()) == ()  # a first run has no earlier endpoints
    with pytest.raises(pa.ArrowInvalid, match="unknown action"):
        list(client.do_action(flight.Action("PURGE", b"a/*")))


def test_get_schema_is_reply_schema(client: flight.FlightClient) -> None:
    """get_schema returns the 3-column reply schema."""
    schema = client.get_schema(flight.FlightDescriptor.for_path("a/s/x")).schema
    assert schema.equals(REPLY_SCHEMA)


def test_unknown_command_is_rejected(client: flight.FlightClient) -> None:
    """A CMD descriptor that is not PATCH/PATCHIF/PUTIF is INVALID_ARGUMENT."""
    with pytest.raises(pa.ArrowInvalid, match="unknown do_put command"):
        put_cmd(client, "APPEND:a/s/x", b"p")


def test_unimplemented_methods(client: flight.FlightClient) -> None:
    """do_exchange is UNIMPLEMENTED, as on Flame."""
    with pytest.raises(NotImplementedError):
        writer, reader = client.do_exchange(flight.FlightDescriptor.for_path("a/s/x"))
        writer.begin(pa.schema([]))
        reader.read_chunk()
