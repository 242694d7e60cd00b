"""Durability of the cache store: restarts, patch cost on disk, damaged files, crash left-overs."""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from cache_wire_helpers import ServerFactory, get, put, put_cmd, put_path, rows

from flame_agents._wire.cache.keys import CacheKey, parse_key
from flame_agents.errors import CacheError
from flame_agents.runtime.cache.files import write_opaque
from flame_agents.runtime.cache.journal import JOURNAL_MAGIC, KIND_PATCH, encode_record
from flame_agents.runtime.cache.object_store import (
    _JOURNAL_BASE_MAX,
    _JOURNAL_MAX,
    ObjectStore,
)
from flame_agents.runtime.cache.server import CacheServer


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
    assert growth[1024] < len(patch) + 64  # the patch plus a fixed record header


def test_update_of_a_large_base_removes_the_journal(
    server: CacheServer, client: flight.FlightClient
) -> None:
    """An update too large for the journal writes a new base file and removes the journal."""
    key = put_path(client, "a/s", b"b")["key"]
    put_cmd(client, f"PATCH:{key}", b"p")
    journal = server.store.root / f"{key}.journal"
    assert journal.is_file() and not (server.store.root / f"{key}.deltas").exists()
    put_path(client, key, b"c" * (_JOURNAL_BASE_MAX + 1))
    assert not journal.exists()
    assert put_cmd(client, f"PATCH:{key}", b"q")["version"] == 4
    assert rows(get(client, f"{key}:0"))[1:] == [(4, "patch", b"q")]


def test_small_updates_append_to_the_journal_until_it_is_rewritten(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    """Small base updates are journal appends; past the journal bound the base file is rewritten."""
    root = tmp_path / "store"
    server = start_server(root)
    with flight.FlightClient(server.endpoint) as c:
        key = put_path(c, "a/s", b"first")["key"]
        base = root / f"{key}.arrow"
        journal = root / f"{key}.journal"
        inode = base.stat().st_ino
        payload = os.urandom(32 * 1024)
        rewrites, version = 0, 1
        for _ in range(100):
            before = journal.stat().st_size if journal.exists() else 0
            version = put_path(c, key, payload)["version"]
            after = journal.stat().st_size if journal.exists() else 0
            rewrites += after <= before
            assert after <= _JOURNAL_MAX
        assert rewrites >= 2  # bounded journal: the base file was rewritten now and then
        assert base.stat().st_ino != inode
        put_cmd(c, f"PATCH:{key}", b"tail")
    server.shutdown()
    again = start_server(root)
    with flight.FlightClient(again.endpoint) as c:
        assert rows(get(c, f"{key}:0")) == [
            (version, "base", payload),
            (version + 1, "patch", b"tail"),
        ]


def _store_key(key: str) -> CacheKey:
    return parse_key(key)


def _one_object(root: Path, *patches: bytes) -> tuple[str, Path]:
    store = ObjectStore(root)
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


def test_damaged_journal_record_fails_start_naming_it(tmp_path: Path) -> None:
    """A record that fails its checksum with more records after it stops start-up, naming it."""
    key, _ = _one_object(tmp_path, b"patch-one", b"patch-two")
    journal = tmp_path / f"{key}.journal"
    journal.write_bytes(journal.read_bytes().replace(b"patch-one", b"patch-One"))
    with pytest.raises(CacheError, match=f"{journal}.*checksum") as info:
        ObjectStore(tmp_path)
    assert info.value.path == str(journal)  # type: ignore[attr-defined]


def test_garbage_journal_fails_start_naming_it(tmp_path: Path) -> None:
    """A journal overwritten with something else stops start-up naming the file."""
    key, _ = _one_object(tmp_path, b"p1")
    journal = tmp_path / f"{key}.journal"
    journal.write_bytes(b"not a journal at all")
    with pytest.raises(CacheError, match=str(journal)):
        ObjectStore(tmp_path)


@pytest.mark.parametrize("cut", [1, 5, 20, 29])
def test_torn_last_record_is_dropped_and_cut_at_start(tmp_path: Path, cut: int) -> None:
    """A last record cut short (an interrupted append) is dropped, the file cut back, and the
    next write continues from the last intact record."""
    key, _ = _one_object(tmp_path, b"p1", b"p2")
    journal = tmp_path / f"{key}.journal"
    intact = journal.read_bytes()
    torn = b"".join(encode_record(KIND_PATCH, 4, b"unacknowledged"))
    assert len(torn) > cut
    journal.write_bytes(intact + torn[:cut])
    store = ObjectStore(tmp_path)
    assert [r[0] for r in store.read(_store_key(key)).rows] == [1, 2, 3]  # type: ignore[union-attr]
    assert journal.read_bytes() == intact
    assert store.patch(_store_key(key), b"p4") == 4
    store.close()
    again = ObjectStore(tmp_path)
    reply = again.read(_store_key(key))
    assert [(v, d) for v, _, d in reply.rows][1:] == [  # type: ignore[union-attr]
        (2, b"p1"),
        (3, b"p2"),
        (4, b"p4"),
    ]


def test_torn_last_record_with_a_bad_checksum_is_dropped(tmp_path: Path) -> None:
    """A complete last record whose checksum fails (torn inside) is dropped, not an error."""
    key, _ = _one_object(tmp_path, b"p1")
    journal = tmp_path / f"{key}.journal"
    intact = journal.read_bytes()
    torn = bytearray(b"".join(encode_record(KIND_PATCH, 3, b"unacknowledged")))
    torn[-3:] = b"\0\0\0"
    journal.write_bytes(intact + bytes(torn))
    store = ObjectStore(tmp_path)
    assert store.read(_store_key(key)).version == 2
    assert journal.read_bytes() == intact
    store.close()


def test_journal_version_gap_is_reported_not_skipped(tmp_path: Path) -> None:
    """A record whose version does not follow the previous one is an error naming the journal."""
    key, _ = _one_object(tmp_path, b"p1")
    journal = tmp_path / f"{key}.journal"
    with journal.open("ab") as f:
        f.write(b"".join(encode_record(KIND_PATCH, 5, b"skips 3 and 4")))
    with pytest.raises(CacheError, match=r"journal .* version 5 but 3 was expected"):
        ObjectStore(tmp_path)


def test_patch_journal_grows_by_the_record_only(
    server: CacheServer, client: flight.FlightClient
) -> None:
    """Each patch adds exactly its data plus a 21-byte record header to the journal."""
    key = put_path(client, "a/s", b"base")["key"]
    journal = server.store.root / f"{key}.journal"
    put_cmd(client, f"PATCH:{key}", b"x")
    sizes = [journal.stat().st_size]
    for n in (1, 100, 10_000):
        put_cmd(client, f"PATCH:{key}", os.urandom(n))
        sizes.append(journal.stat().st_size)
    assert [b - a for a, b in itertools.pairwise(sizes)] == [22, 121, 10_021]
    put_path(client, key, b"small base")
    assert journal.stat().st_size == sizes[-1] + 21 + len(b"small base")


def _legacy_object(root: Path, *patches: bytes) -> tuple[str, Path]:
    """An object as earlier versions stored it: a base file and one file per patch."""
    lock = threading.Lock()
    key = f"a/s/{uuid.uuid4()}"
    base = root / f"{key}.arrow"
    write_opaque(base, 1, b"legacy-base", dir_lock=lock)
    for n, data in enumerate(patches):
        write_opaque(root / f"{key}.deltas" / f"{n}.arrow", n + 2, data, dir_lock=lock)
    return key, base


def test_legacy_patch_files_are_converted_to_a_journal(tmp_path: Path) -> None:
    """A home with one file per patch opens with the same object, now kept in a journal."""
    key, _ = _legacy_object(tmp_path, b"p1", b"p2")
    store = ObjectStore(tmp_path)
    assert not (tmp_path / f"{key}.deltas").exists()
    assert (tmp_path / f"{key}.journal").is_file()
    assert store.patch(_store_key(key), b"p3") == 4
    store.close()
    reply = ObjectStore(tmp_path).read(_store_key(key))
    assert reply.rows == [  # type: ignore[union-attr]
        (1, "base", b"legacy-base"),
        (2, "patch", b"p1"),
        (3, "patch", b"p2"),
        (4, "patch", b"p3"),
    ]


def test_garbage_legacy_patch_file_fails_start_naming_it(tmp_path: Path) -> None:
    """A damaged legacy patch file stops start-up with a CacheError naming that file."""
    key, _ = _legacy_object(tmp_path, b"p1", b"p2")
    patch = tmp_path / f"{key}.deltas" / "1.arrow"
    patch.write_bytes(b"not arrow at all")
    with pytest.raises(CacheError, match=str(patch)):
        ObjectStore(tmp_path)
    assert patch.exists()  # left as it was


def test_missing_legacy_patch_is_reported_not_skipped(tmp_path: Path) -> None:
    """A gap in legacy patch versions (a lost patch file) is an error naming the next file."""
    key, _ = _legacy_object(tmp_path, b"p1", b"p2", b"p3")
    (tmp_path / f"{key}.deltas" / "1.arrow").unlink()
    with pytest.raises(CacheError, match=r"2\.arrow.*version 4 but 3 was expected"):
        ObjectStore(tmp_path)


def test_crash_leftovers_are_cleaned_at_start(tmp_path: Path) -> None:
    """Temp files, a journal superseded by a newer base and orphan journals are removed."""
    key, base = _one_object(tmp_path, b"p1", b"p2")
    # A base rewrite that crashed after its base file was renamed in, before the journal went.
    write_opaque(base, 4, b"compacted", dir_lock=threading.Lock())
    tmp = base.with_name(f".{base.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(b"half")
    orphan = base.parent / "gone.journal"
    orphan.write_bytes(JOURNAL_MAGIC)
    orphan_deltas = base.parent / "gone.deltas"
    orphan_deltas.mkdir()
    (orphan_deltas / "0.arrow").write_bytes(b"x")
    store = ObjectStore(tmp_path)
    reply = store.read(parse_key(key))
    assert reply.version == 4
    assert not tmp.exists() and not orphan.exists() and not orphan_deltas.exists()
    assert not (tmp_path / f"{key}.journal").exists()


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
