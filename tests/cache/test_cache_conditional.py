"""Conditional commits: PATCHIF/PUTIF apply only at the expected version, atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from cache_wire_helpers import ServerFactory, get, put_cmd, put_path, rows

from flame_agents import cache
from flame_agents.errors import CommitConflictError, InvalidArgumentError, ObjectNotFoundError
from flame_agents.runtime.cache.server import CacheServer


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_patchif_applies_at_expected_version(client: flight.FlightClient) -> None:
    """PATCHIF:<current>:<key> appends like PATCH."""
    key = put_path(client, "a/s", b"b")["key"]
    assert put_cmd(client, f"PATCHIF:1:{key}", b"p")["version"] == 2
    assert rows(get(client, f"{key}:0")) == [(1, "base", b"b"), (2, "patch", b"p")]


def test_patchif_conflict_message_and_nothing_written(
    server: CacheServer, client: flight.FlightClient
) -> None:
    """A stale PATCHIF fails with "version conflict (expected N, current M)" and writes nothing."""
    key = put_path(client, "a/s", b"b")["key"]
    put_cmd(client, f"PATCH:{key}", b"p2")
    before = _files(server.store.root)
    with pytest.raises(flight.FlightServerError) as info:
        put_cmd(client, f"PATCHIF:1:{key}", b"stale")
    assert str(info.value).startswith("version conflict (expected 1, current 2)")
    assert _files(server.store.root) == before
    assert rows(get(client, f"{key}:0"))[-1] == (2, "patch", b"p2")


def test_putif_replaces_only_at_expected_version(
    server: CacheServer, client: flight.FlightClient
) -> None:
    """PUTIF:<current>:<key> compacts (new base, patches dropped); a stale one is refused."""
    key = put_path(client, "a/s", b"b")["key"]
    put_cmd(client, f"PATCH:{key}", b"p2")
    with pytest.raises(
        flight.FlightServerError, match=r"^version conflict \(expected 1, current 2\)"
    ):
        put_cmd(client, f"PUTIF:1:{key}", b"new")
    assert put_cmd(client, f"PUTIF:2:{key}", b"new")["version"] == 3
    assert rows(get(client, f"{key}:0")) == [(3, "base", b"new")]
    assert not list(server.store.root.rglob("*.deltas"))


def test_putif_zero_creates_only_if_absent(client: flight.FlightClient) -> None:
    """PUTIF:0 creates an absent object at version 1 and conflicts if it exists."""
    assert put_cmd(client, "PUTIF:0:a/s/fixed", b"x")["version"] == 1
    with pytest.raises(flight.FlightServerError, match="version conflict"):
        put_cmd(client, "PUTIF:0:a/s/fixed", b"y")


def test_patchif_on_missing_object_is_not_found(client: flight.FlightClient) -> None:
    """PATCHIF on an absent key is NOT_FOUND, not a conflict."""
    with pytest.raises(KeyError):
        put_cmd(client, "PATCHIF:1:a/s/none", b"p")


@pytest.mark.parametrize(
    "cmd", ["PATCHIF:x:a/s/k", "PATCHIF:-1:a/s/k", "PUTIF::a/s/k", "PUTIF:1:a/s"]
)
def test_malformed_conditional_commands_are_invalid(client: flight.FlightClient, cmd: str) -> None:
    """A non-numeric expected version or a prefix key is INVALID_ARGUMENT."""
    with pytest.raises(pa.ArrowInvalid):
        put_cmd(client, cmd, b"p")


def test_client_conditional_commits(server: CacheServer) -> None:
    """patch_raw/update_raw with expected_version raise CommitConflictError with fields."""
    ref = cache.put_raw("a/s", b"b", endpoint=server.endpoint)
    ref2 = cache.patch_raw(ref, b"p", expected_version=1)
    assert ref2.version == 2
    with pytest.raises(CommitConflictError) as info:
        cache.patch_raw(ref, b"q", expected_version=1)
    assert (info.value.expected_version, info.value.current_version) == (1, 2)  # type: ignore[attr-defined]
    with pytest.raises(CommitConflictError):
        cache.update_raw(ref, b"c", expected_version=1)
    assert cache.update_raw(ref2, b"c", expected_version=2).version == 3
    assert cache.fetch_raw(ref2) == cache.RawObject(ref.key, 3, b"c", 3, [])
    with pytest.raises(InvalidArgumentError):
        cache.patch_raw(ref, b"q", expected_version=-1)


class _FlameLikeServer(CacheServer):
    """A server that, like Flame 0.6, knows only PATCH commands."""

    def _command_put(self, command: bytes, reader: Any) -> tuple[str, int]:
        if not command.startswith(b"PATCH:"):
            raise pa.ArrowInvalid("Invalid command")
        return super()._command_put(command, reader)


def test_client_falls_back_when_server_lacks_conditional_commands(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    """Against a server without PATCHIF/PUTIF the client checks the version, then writes."""
    server = _FlameLikeServer(tmp_path / "flame")
    server.serve_in_background()
    try:
        ref = cache.put_raw("a/s", b"b", endpoint=server.endpoint)
        assert cache.patch_raw(ref, b"p", expected_version=1).version == 2
        with pytest.raises(CommitConflictError):
            cache.patch_raw(ref, b"q", expected_version=1)
        assert cache.update_raw(ref, b"n", expected_version=2).version == 3
        with pytest.raises(CommitConflictError):
            cache.update_raw(ref, b"m", expected_version=2)
        with pytest.raises(ObjectNotFoundError):
            cache.patch_raw(cache.ObjectRef(server.endpoint, "a/s/none"), b"x", expected_version=0)
        assert cache.fetch_raw(ref).version == 3
    finally:
        server.shutdown()
