"""Key validation: Flame's grammar, clear INVALID_ARGUMENT messages, nothing outside the root."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from cache_wire_helpers import put_cmd, put_path

from flame_agents import cache
from flame_agents._wire.cache.keys import CacheKey, parse_key
from flame_agents.errors import InvalidArgumentError
from flame_agents.runtime.cache.server import CacheServer

BAD_KEYS = [
    "../etc",
    "a/..",
    "a/../x",
    "a/s/..",
    "a/s/../../x",
    "..a/s",
    "a\\b/s",
    "a/s/x\\y",
    "a//x",
    "/s",
    "a/",
    "a/s/",
    "a/s/x/y",
    "a",
    "*/s",
    "a/s/*",
    "a/*/x",
    "a/s*/x",
    "a/./x",
]


def test_parse_accepts_keys_prefixes_and_wildcard() -> None:
    """Well-formed keys, prefixes and ``<app>/*`` parse to their parts."""
    assert parse_key("a/s/x") == CacheKey("a", "s", "x")
    assert parse_key("a/s", allow_prefix=True) == CacheKey("a", "s")
    assert parse_key("a/*", allow_wildcard=True).is_wildcard
    assert parse_key("app name/ssn-1/file.tar.gz") == CacheKey("app name", "ssn-1", "file.tar.gz")


@pytest.mark.parametrize("text", BAD_KEYS)
def test_parse_rejects_bad_keys(text: str) -> None:
    """Empty parts, ``..``, ``\\``, misplaced ``*`` and wrong shapes are InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match="invalid key"):
        parse_key(text, allow_prefix=True, allow_wildcard=True)


def test_parse_rejects_prefix_or_wildcard_where_not_allowed() -> None:
    """A prefix where a full key is needed, and ``*`` outside DELETE, are rejected."""
    with pytest.raises(InvalidArgumentError, match="expected '<app>/<session>/<object_id>'"):
        parse_key("a/s")
    with pytest.raises(InvalidArgumentError):
        parse_key("a/*", allow_prefix=True)


def test_matches_selects_by_key_prefix_and_wildcard() -> None:
    """A pattern selects exactly the objects it names."""
    obj = CacheKey("a", "s", "x")
    assert CacheKey("a", "*").matches(obj)
    assert CacheKey("a", "s").matches(obj)
    assert not CacheKey("a", "t").matches(obj)
    assert not CacheKey("b", "*").matches(obj)
    assert not CacheKey("a", "s", "y").matches(obj)


@pytest.mark.parametrize("text", BAD_KEYS)
def test_server_rejects_bad_keys_everywhere_and_writes_nothing_outside(
    server: CacheServer, client: flight.FlightClient, tmp_path: Path, text: str
) -> None:
    """Put, patch, get and DELETE refuse bad keys with INVALID_ARGUMENT; no file escapes root."""
    outside_before = sorted(p for p in tmp_path.rglob("*") if server.store.root not in p.parents)
    with pytest.raises(pa.ArrowInvalid, match="invalid key"):
        put_path(client, text, b"x")
    with pytest.raises(pa.ArrowInvalid, match="invalid key"):
        put_cmd(client, f"PATCH:{text}", b"x")
    with pytest.raises(pa.ArrowInvalid, match="invalid key"):
        client.do_get(flight.Ticket(f"{text}:0".encode())).read_all()
    with pytest.raises(pa.ArrowInvalid, match="invalid key"):
        list(client.do_action(flight.Action("DELETE", text.encode())))
    outside_after = sorted(p for p in tmp_path.rglob("*") if server.store.root not in p.parents)
    assert outside_after == outside_before
    assert not [p for p in server.store.root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("text", ["a/s/x", "a/*"])
def test_client_rejects_bad_prefix_before_any_call(text: str) -> None:
    """put_object needs ``<app>/<session>``: anything else fails locally with a clear message."""
    with pytest.raises(InvalidArgumentError, match="expected '<app>/<session>'"):
        cache.put_object(text, 1, endpoint="grpc://127.0.0.1:1")


@pytest.mark.parametrize("text", ["a/../x", "a\\b/s", "a//x", "a/s/x/y", "*/s"])
def test_client_rejects_bad_keys(text: str) -> None:
    """The client refuses malformed keys and patterns without contacting a server."""
    with pytest.raises(InvalidArgumentError):
        cache.delete_objects(text, endpoint="grpc://127.0.0.1:1")
    with pytest.raises(InvalidArgumentError):
        cache.get_object(cache.ObjectRef("grpc://127.0.0.1:1", text))
