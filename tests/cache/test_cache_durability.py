"""Durability of the cache store: restarts, patch cost on disk, damaged files, crash left-overs."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from cache_wire_helpers import ServerFactory, get, put, put_cmd, put_path, rows

from flame_agents.errors import CacheError
from flame_agents.runtime.cache_files import write_opaque
from flame_agents.runtime.cache_server import CacheServer
from flame_agents.runtime.object_store import ObjectStore


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_restart_reloads_objects_patches_and_versions(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    """A new server on the same root serves every object, patch and version, and continues."""
    root = tmp_path / "store"
    first = start_server(root)
    with flight.FlightClient(first.endpoint) as c:
        k1 = put_path(c, "a/s", b"base")["key"]
        put_cmd(c, f"PATCH:{k1}", b"p2")
        put_cmd(c, f"PATCH:{k1}", b"p3")
        k2 = put_path(c, "a/s", b"old")["key"]
        put_path(c, k2, b"new")
        native = pa.table({"x": [1, 2]}).replace_schema_metadata(
            {b"flame.cache.format": b"arrow-table-v1"}
        )
        k3 = put(c, flight.FlightDescriptor.for_path("b/t"), native.to_batches(), native.schema)[0][
            "key"
        ]
    first.shutdown()
    second = start_server(root)
    assert second.port != 0
    with flight.FlightClient(second.endpoint) as c:
        assert rows(get(c, f"{k1}:0")) == [
            (1, "base", b"base"),
            (2, "patch", b"p2"),
            (3, "patch", b"p3"),
        ]
        assert rows(get(c, f"{k1}:2")) == [(3, "patch", b"p3")]
        assert rows(get(c, f"{k2}:0")) == [(2, "base", b"new")]
        back = get(c, f"{k3}:0")
        assert back.column("x").to_pylist() == [1, 2]
        assert back.schema.metadata[b"flame.cache.version"] == b"1"
        assert put_cmd(c, f"PATCH:{k1}", b"p4")["version"] == 4
        assert put_cmd(c, f"PATCH:{k2}", b"p3")["version"] == 3


def test_patch_writes_o_patch_bytes_regardless_of_object_size(
    server: CacheServer, client: flight.FlightClient
) -> None:
    """Bytes added on disk per patch do not grow with the object, and the base is untouched."""
    root = server.store.root
    patch = os.urandom(100)
    growth = {}
    for size in (1024, 4 * 1024 * 1024):
        key = put_path(client, "a/s", os.urandom(size))["key"]
        base = root / f"{key}.arrow"
        before_stat = base.stat()
        before = _disk_bytes(root)
        for _ in range(5):
            put_cmd(client, f"PATCH:{key}", patch)
        growth[size] = (_disk_bytes(root) - before) / 5
        after_stat = base.stat()
        assert (after_stat.st_ino, after_stat.st_size, after_stat.st_mtime_ns) == (
            before_stat.st_ino,
            before_stat.st_size,
            before_stat.st_mtime_ns,
        )
    print(f"bytes on disk per 100-byte patch: {growth}")
    assert growth[1024] == growth[4 * 1024 * 1024]
    assert growth[1024] < len(patch) + 1024  # the patch plus a fixed Arrow file overhead


def test_compaction_removes_patch_files(server: CacheServer, client: flight.FlightClient) -> None:
    """An update (new base) removes the old patch files once the base is durable."""
    key = put_path(client, "a/s", b"b")["key"]
    put_cmd(client, f"PATCH:{key}", b"p")
    deltas = server.store.root / f"{key}.deltas"
    assert [p.name for p in deltas.iterdir()] == ["0.arrow"]
    put_path(client, key, b"compacted")
    assert not deltas.exists()
    assert put_cmd(client, f"PATCH:{key}", b"q")["version"] == 4
    assert [p.name for p in deltas.iterdir()] == ["0.arrow"]


def _one_object(root: Path, *patches: bytes) -> tuple[str, Path]:
    store = ObjectStore(root)
    from flame_agents.runtime.cache_keys import parse_key

    key, _ = store.put(parse_key("a/s", allow_prefix=True), b"payload-marker-0123456789")
    for p in patches:
        store.patch(parse_key(key), p)
    store.close()
    return key, root / f"{key}.arrow"


def test_truncated_base_file_fails_start_naming_it(tmp_path: Path) -> None:
    """A truncated base file stops start-up with a CacheError naming the file."""
    _, base = _one_object(tmp_path)
    base.write_bytes(base.read_bytes()[:40])
    with pytest.raises(CacheError, match=str(base)) as info:
        CacheServer(tmp_path)
    assert info.value.path == str(base)  # type: ignore[attr-defined]


def test_flipped_data_byte_is_detected(tmp_path: Path) -> None:
    """A damaged payload byte is caught by the checksum, naming the file."""
    _, base = _one_object(tmp_path)
    raw = base.read_bytes()
    base.write_bytes(raw.replace(b"payload-marker", b"payload-markeR"))
    with pytest.raises(CacheError, match=f"{base}.*checksum"):
        ObjectStore(tmp_path)


def test_garbage_patch_file_fails_start_naming_it(tmp_path: Path) -> None:
    """A damaged patch file stops start-up with a CacheError naming that file."""
    key, _ = _one_object(tmp_path, b"p1", b"p2")
    patch = tmp_path / f"{key}.deltas" / "1.arrow"
    patch.write_bytes(b"not arrow at all")
    with pytest.raises(CacheError, match=str(patch)):
        ObjectStore(tmp_path)


def test_missing_patch_is_reported_not_skipped(tmp_path: Path) -> None:
    """A gap in patch versions (a lost patch file) is an error naming the next file."""
    key, _ = _one_object(tmp_path, b"p1", b"p2", b"p3")
    (tmp_path / f"{key}.deltas" / "1.arrow").unlink()
    with pytest.raises(CacheError, match=r"2\.arrow.*version 4 but 3 was expected"):
        ObjectStore(tmp_path)


def test_crash_leftovers_are_cleaned_at_start(tmp_path: Path) -> None:
    """Temp files, patches superseded by a newer base and orphan patch dirs are removed."""
    key, base = _one_object(tmp_path, b"p1", b"p2")
    # A compaction that crashed after its base became durable but before patches went.
    write_opaque(base, 4, b"compacted", dir_lock=threading.Lock())
    tmp = base.with_name(f".{base.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(b"half")
    orphan = base.parent / "gone.deltas"
    orphan.mkdir()
    (orphan / "0.arrow").write_bytes(b"x")
    store = ObjectStore(tmp_path)
    from flame_agents.runtime.cache_keys import parse_key

    reply = store.read(parse_key(key))
    assert reply.version == 4
    assert not tmp.exists() and not orphan.exists()
    assert list((tmp_path / f"{key}.deltas").iterdir()) == []


def test_memory_is_bounded_and_evicted_objects_reload(start_server: ServerFactory) -> None:
    """With a small memory budget every object stays readable and the LRU stays in budget."""
    server = start_server(max_memory=2000)
    with flight.FlightClient(server.endpoint) as c:
        keys = [put_path(c, "a/s", bytes([i]) * 600)["key"] for i in range(10)]
        for i, key in enumerate(keys):
            put_cmd(c, f"PATCH:{key}", b"p")
            assert rows(get(c, f"{key}:0"))[0][2] == bytes([i]) * 600
            assert server.store._lru.total_bytes <= 2000


def test_concurrent_patches_get_distinct_contiguous_versions(
    server: CacheServer,
) -> None:
    """Patches from many threads on one key are serialized: versions 2..N+1, none lost."""
    with flight.FlightClient(server.endpoint) as c:
        key = put_path(c, "a/s", b"b")["key"]
    versions: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        with flight.FlightClient(server.endpoint) as c:
            for i in range(10):
                v = put_cmd(c, f"PATCH:{key}", f"{n}-{i}".encode())["version"]
                with lock:
                    versions.append(v)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == list(range(2, 82))
    with flight.FlightClient(server.endpoint) as c:
        assert len(rows(get(c, f"{key}:0"))) == 81


def test_files_written_by_a_client_are_picked_up(server: CacheServer) -> None:
    """An Arrow file placed in the store (flamepy's local-storage mode) is served as version 1."""
    object_id = str(uuid.uuid4())
    path = server.store.root / "a" / "s" / f"{object_id}.arrow"
    path.parent.mkdir(parents=True)
    schema = pa.schema([pa.field("version", pa.uint64()), pa.field("data", pa.binary())])
    with pa.ipc.new_file(str(path), schema) as writer:
        writer.write_batch(
            pa.RecordBatch.from_arrays(
                [pa.array([0], pa.uint64()), pa.array([b"x"])], schema=schema
            )
        )
    with flight.FlightClient(server.endpoint) as c:
        assert rows(get(c, f"a/s/{object_id}:0")) == [(1, "base", b"x")]
