"""flamepy 0.6.0's cache API against our Arrow Flight server (wire §4, §8.6).

Every scenario runs flamepy's own client; the ``raw_*`` fields are the same server's replies read
with plain pyarrow.flight, pinning the response shapes (3 columns, base/patch rows, not-modified
as zero rows, native Arrow metadata) that flamepy relies on.
"""

from __future__ import annotations

from typing import Any

import pytest
from conformance_support import Flamepy

pytestmark = pytest.mark.conformance

RESPONSE_COLUMNS = ["version", "kind", "data"]


def test_put_get_roundtrip_and_not_modified(flamepy: Flamepy, runtime: Any) -> None:
    """put_object returns a reachable v1 ref under the prefix; get_object and cached gets agree."""
    res = flamepy("cache_roundtrip", prefix="conf-cache/s-roundtrip")
    ref = res["ref"]
    assert ref["endpoint"] == runtime.cache_endpoint, "the advertised endpoint is the runtime's"
    app, ssn, object_id = ref["key"].split("/")
    assert (app, ssn) == ("conf-cache", "s-roundtrip") and object_id
    assert ref["version"] == 1
    assert res["decoded"] == ref, "ObjectRef BSON round-trips"
    assert res["value"] == {"a": 1, "b": [1, 2]}
    assert res["cached"] == res["value"] == res["fresh"]
    assert res["bytes"] == b"\x00raw bytes\xff"
    assert res["bytes_ref"]["key"] != ref["key"], "every put gets its own object id"
    assert res["raw_not_modified"]["rows"] == 0
    assert res["raw_not_modified"]["columns"] == RESPONSE_COLUMNS
    full = res["raw_full"]
    assert full["columns"] == RESPONSE_COLUMNS
    assert (full["kinds"], full["versions"]) == (["base"], [1])


def test_update_and_patch_versions_and_deserializer(flamepy: Flamepy) -> None:
    """update replaces the base (v+1), patches append (v+1 each), and a deserializer sees them."""
    res = flamepy("cache_update_patch", prefix="conf-cache/s-patch")
    assert res["versions"] == [1, 2, 3, 4]
    assert len(res["keys"]) == 1, "update and patch keep the key"
    assert res["base_only"] == [1, 2], "without a deserializer get_object returns the base"
    assert res["materialized"] == [1, 2, 3, 4]
    assert res["stale_ref"] == [1, 2, 3, 4], "an older ref still reads the current object"
    full = res["raw_full"]
    assert (full["kinds"], full["versions"]) == (["base", "patch", "patch"], [2, 3, 4])
    assert res["raw_not_modified"]["rows"] == 0
    patches = res["raw_patches_only"]
    assert (patches["kinds"], patches["versions"]) == (["patch", "patch"], [3, 4])
    upd = res["update_drops_patches"]
    assert upd["version"] == 5
    assert upd["value"] == ["fresh"], "update drops every patch"
    assert (upd["raw"]["kinds"], upd["raw"]["versions"]) == (["base"], [5])
    missing = res["patch_missing"]["error"]  # patching a missing object fails, naming it
    assert missing["type"] == "ArrowKeyError", missing
    assert missing["message"].startswith("object not found: conf-cache/s-patch/no-such-object")


def test_foreign_patch_is_served_patches_only(flamepy: Flamepy) -> None:
    """A reader holding version n gets only the newer patches and materializes the whole object."""
    res = flamepy("cache_foreign_patch", prefix="conf-cache/s-foreign")
    assert res["seen"] == [1, 2]
    assert res["foreign"]["version"] == 3
    raw = res["raw_patches_only"]
    assert (raw["kinds"], raw["versions"]) == (["patch"], [3])
    assert res["after"] == [1, 2, 3]


def test_native_arrow_tables(flamepy: Flamepy) -> None:
    """pa.Table and RecordBatch round-trip natively, with flame.cache.* schema metadata."""
    res = flamepy("cache_native_arrow", prefix="conf-cache/s-arrow")
    assert res["type"] == "Table" and res["equal"] is True
    assert res["batch_type"] == "RecordBatch" and res["batch_rows"] == 3
    meta = res["raw"]["metadata"]
    assert meta.get("flame.cache.format") == "arrow-table-v1"
    assert meta.get("flame.cache.version") == "1"
    assert res["raw"]["columns"] == ["x", "y"]
    assert res["updated_version"] == 2
    assert res["raw_updated"]["metadata"].get("flame.cache.version") == "2"
    assert res["updated_rows"] == 2


def test_delete_by_key_session_and_app(flamepy: Flamepy) -> None:
    """delete_objects removes one key, one session prefix, or every session of an app only."""
    res = flamepy("cache_delete", app="conf-del")
    assert res["by_key"] == {"k1": True, "k2": False}
    assert res["by_session"] == {"k2": True, "s2": False}
    assert res["by_app"] == {"s2": True, "s3": True, "other_app": False}
    assert res["delete_nothing"]["ok"] is True, "deleting an empty prefix still answers OK"
    assert res["other_key"] in res["list_tickets"], "list_flights lists the remaining object"
    assert not [t for t in res["list_tickets"] if t.startswith("conf-del/")]


def test_objects_retrievable_after_many_writes(flamepy: Flamepy) -> None:
    """Hundreds of objects and a long patch chain all stay retrievable and in order."""
    res = flamepy("cache_many_writes", prefix="conf-cache/s-many", objects=300, patches=200)
    assert res["bad"] == []
    assert res["version"] == 201
    assert res["joined_ok"] is True, res["joined_len"]
