"""Run in a subprocess by test_cache_flamepy.py: flamepy 0.6.0's own cache API against our
server (FLAME_CACHE_ENDPOINT), plus objects crossing between flamepy and our client.

flamepy reads its configuration once per process, hence a separate process per mode.
Usage: python flamepy_cache_checks.py (remote|local-storage) <tmpdir>
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
from flamepy.cache import delete_objects
from flamepy.core import (
    ObjectRef,
    get_object,
    patch_object,
    put_object,
    update_object,
    upload_object,
)

from flame_agents import cache


def concat(base: list[int], deltas: list[int]) -> list[int]:
    return base + deltas


def remote(tmp: Path) -> None:
    endpoint = os.environ["FLAME_CACHE_ENDPOINT"]
    ref = put_object("fp/s1", {"a": 1})
    assert ref.version == 1 and ref.endpoint == endpoint, ref
    assert get_object(ref) == {"a": 1}
    assert get_object(ref) == {"a": 1}  # served from flamepy's cache after "not modified"

    ref = update_object(ref, [1])
    assert ref.version == 2, ref
    ref = patch_object(ref, 2)
    ref = patch_object(ref, 3)
    assert ref.version == 4, ref
    assert get_object(ref, deserializer=concat) == [1, 2, 3]

    # A foreign patch (our client) reaches flamepy as a patches-only reply.
    ours = cache.patch_object(cache.ObjectRef(ref.endpoint, ref.key, ref.version), 4)
    assert ours.version == 5
    assert get_object(ref, deserializer=concat) == [1, 2, 3, 4]

    # Objects cross between the two clients in both directions.
    mine = cache.put_object("fp/s1", {"from": "flame_agents"}, endpoint=endpoint)
    assert get_object(ObjectRef.decode(mine.encode())) == {"from": "flame_agents"}
    assert cache.get_object(cache.ObjectRef.decode(ref.encode()), concat) == [1, 2, 3, 4]

    table = pa.table({"x": [1, 2, 3]})
    tref = put_object("fp/s1", table)
    assert get_object(tref).equals(table)
    assert cache.get_object(cache.ObjectRef.decode(tref.encode())).equals(table)
    assert get_object(put_object("fp/s1", b"\x00bytes")) == b"\x00bytes"
    arr = np.arange(6).reshape(2, 3)
    assert get_object(put_object("fp/s1", arr)).tolist() == arr.tolist()
    mine_np = cache.put_object("fp/s1", arr, endpoint=endpoint)
    assert get_object(ObjectRef.decode(mine_np.encode())).tolist() == arr.tolist()

    src = tmp / "blob.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # several 1 MiB upload chunks
    up = upload_object("fp/pkg", str(src))
    assert up.version == 1, up
    # flamepy's download_object cannot run on pyarrow >= 26 (it treats stream chunks as
    # batches), so read the upload back through our client: one base, the chunks concatenated.
    assert cache.fetch_raw(cache.ObjectRef.decode(up.encode())).base == src.read_bytes()
    named = upload_object("fp/pkg/blob.bin", str(src))
    assert named.key == "fp/pkg/blob.bin"

    delete_objects("fp/s1")
    try:
        get_object(ObjectRef(ref.endpoint, ref.key, 0))
    except Exception as exc:  # flamepy surfaces the server's NOT_FOUND as-is
        assert "not found" in str(exc), exc
    else:
        raise AssertionError("object survived DELETE of its session")
    other = put_object("fp/s2", 1)
    delete_objects("fp/*")
    try:
        get_object(ObjectRef(other.endpoint, other.key, 0))
    except Exception as exc:
        assert "not found" in str(exc), exc
    else:
        raise AssertionError("object survived DELETE of fp/*")


def local_storage(tmp: Path) -> None:
    endpoint = os.environ["FLAME_CACHE_ENDPOINT"]
    ref = put_object("fp/local", {"written": "by the client"})
    assert ref.endpoint == endpoint and ref.version == 1, ref
    assert get_object(ref) == {"written": "by the client"}
    assert cache.get_object(cache.ObjectRef.decode(ref.encode())) == {"written": "by the client"}


if __name__ == "__main__":
    mode, tmpdir = sys.argv[1], Path(sys.argv[2])
    {"remote": remote, "local-storage": local_storage}[mode](tmpdir)
    print(f"flamepy {mode} checks passed")
