"""Structured cache rejections: the client reads a rejection's code and fields, not its text;
a server that sends no ``extra_info`` (Flame) is still understood from its errors' classes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flame_agents import cache
from flame_agents._wire.cache.commands import PATCH_IF, parse_command
from flame_agents._wire.cache.rejections import (
    REJECTIONS_HEADER,
    REJECTIONS_VALUE,
    Rejection,
    map_flight_error,
)
from flame_agents._wire.cache.schemas import OPAQUE_SCHEMA, opaque_batch
from flame_agents.errors import (
    CommitConflictError,
    InvalidArgumentError,
    LimitExceededError,
    ObjectNotFoundError,
)
from flame_agents.runtime.cache.server import CacheServer


class _TerseServer(CacheServer):
    """Our server, but its conditional-command rejections say nothing a text match could use."""

    def _command_put(self, command: bytes, reader: Any) -> tuple[str, int]:
        parsed = parse_command(command)
        if parsed.verb == PATCH_IF:
            current = self.store.info(parsed.key)
            version = current.version if current is not None else 0
            if parsed.expected != version:
                raise CommitConflictError(
                    "refused",
                    key=str(parsed.key),
                    expected_version=parsed.expected,
                    current_version=version,
                )
            raise InvalidArgumentError("refused", key=str(parsed.key))
        return super()._command_put(command, reader)


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Start cache servers of a given class; each is the configured cache, and stops at the end."""
    started: list[CacheServer] = []

    def start(cls: type[CacheServer] = CacheServer, **options: Any) -> CacheServer:
        server = cls(tmp_path / f"cache-{len(started)}", **options)
        server.serve_in_background()
        started.append(server)
        # A not-found asks the configured cache for aliases: never the embedded runtime here
        # (configured endpoints keep it from starting; the Frontend one is never dialled).
        monkeypatch.setenv("FLAME_ENDPOINT", "http://127.0.0.1:1")
        monkeypatch.setenv("FLAME_CACHE_ENDPOINT", server.endpoint)
        return server

    yield start
    for server in started:
        server.shutdown()
    cache.reset_clients()


def test_conflict_code_and_fields_reach_the_client_whatever_the_text(serve: Any) -> None:
    """A version conflict whose message is just "refused" is still CommitConflictError, with
    the key and versions the server set (read from extra_info)."""
    server = serve(_TerseServer)
    ref = cache.put_raw("a/s", b"base", endpoint=server.endpoint)
    cache.patch_raw(ref, b"p")
    with pytest.raises(CommitConflictError) as info:
        cache.patch_raw(ref, b"stale", expected_version=1)
    err = info.value
    assert (err.expected_version, err.current_version) == (1, 2)  # type: ignore[attr-defined]
    assert err.key == ref.key  # type: ignore[attr-defined]
    assert err.rejection_code == "version-conflict"  # type: ignore[attr-defined]


def test_own_rejection_of_a_conditional_command_is_raised_not_taken_for_flame(
    serve: Any,
) -> None:
    """A structured rejection of PATCHIF (whatever its text) is our server refusing, so the
    client raises it instead of falling back to check-then-write."""
    server = serve(_TerseServer)
    ref = cache.put_raw("a/s", b"base", endpoint=server.endpoint)
    with pytest.raises(InvalidArgumentError, match="refused") as info:
        cache.patch_raw(ref, b"p", expected_version=1)
    assert info.value.rejection_code == "invalid-argument"  # type: ignore[attr-defined]
    assert cache.fetch_raw(ref).version == 1  # nothing was written


def test_limit_and_not_found_carry_their_fields(serve: Any) -> None:
    """The patch limit arrives as LimitExceededError with the limit, a missing object as
    ObjectNotFoundError with its key, both with their rejection code."""
    server = serve(max_patches=1)
    ref = cache.put_raw("a/s", b"base", endpoint=server.endpoint)
    cache.patch_raw(ref, b"1")
    with pytest.raises(LimitExceededError) as limit:
        cache.patch_raw(ref, b"2")
    assert limit.value.limit == 1  # type: ignore[attr-defined]
    assert limit.value.rejection_code == "limit-exceeded"  # type: ignore[attr-defined]
    with pytest.raises(ObjectNotFoundError) as missing:
        cache.fetch_raw(cache.ObjectRef(server.endpoint, "a/s/none"))
    assert missing.value.rejection_code == "not-found"  # type: ignore[attr-defined]


def test_header_asks_for_structure_and_flame_clients_keep_flame_errors(serve: Any) -> None:
    """Without the header a missing key is Flame's NOT_FOUND (KeyError, as flamepy expects);
    with it, the same rejection is a Flight error whose extra_info has the code and key."""
    server = serve()
    plain = flight.FlightClient(server.endpoint)
    try:
        ticket = flight.Ticket(b"a/s/none:0")
        with pytest.raises(pa.ArrowKeyError) as flame_style:
            plain.do_get(ticket).read_all()
        assert not isinstance(flame_style.value, flight.FlightError)
        options = flight.FlightCallOptions(
            headers=[(REJECTIONS_HEADER.encode(), REJECTIONS_VALUE.encode())]
        )
        with pytest.raises(flight.FlightError) as structured:
            plain.do_get(ticket, options).read_all()
    finally:
        plain.close()
    rejection = Rejection.decode(structured.value.extra_info)
    assert rejection == Rejection("not-found", {"key": "a/s/none"})


def test_conflict_always_carries_its_document_even_for_plain_clients(serve: Any) -> None:
    """A PUTIF conflict (our extension: no Flame client sends it) carries extra_info for any
    caller, with the message clients have always seen."""
    server = serve()
    plain = flight.FlightClient(server.endpoint)
    descriptor = flight.FlightDescriptor.for_command(b"PUTIF:0:a/s/fixed")
    try:
        _put(plain, descriptor)
        with pytest.raises(flight.FlightServerError) as info:
            _put(plain, descriptor)
    finally:
        plain.close()
    assert str(info.value).startswith("version conflict (expected 0, current 1)")
    assert Rejection.decode(info.value.extra_info) == Rejection(
        "version-conflict", {"key": "a/s/fixed", "expected_version": 0, "current_version": 1}
    )


def _put(client: flight.FlightClient, descriptor: flight.FlightDescriptor) -> None:
    writer, reader = client.do_put(descriptor, OPAQUE_SCHEMA)
    writer.write_batch(opaque_batch(b"x"))
    writer.done_writing()
    reader.read()
    writer.close()


@pytest.mark.parametrize(
    ("structured", "text_only", "cls"),
    [
        (
            flight.FlightServerError(
                "refused. Detail: Failed",
                extra_info=b'{"code": "version-conflict", "expected_version": 1, '
                b'"current_version": 2}',
            ),
            flight.FlightServerError("version conflict (expected 1, current 2) on k"),
            CommitConflictError,
        ),
        (
            flight.FlightServerError("refused", extra_info=b'{"code": "limit-exceeded"}'),
            pa.ArrowInvalid("object k already has 1000 patches (the limit)"),
            LimitExceededError,
        ),
        (
            flight.FlightServerError("refused", extra_info=b'{"code": "not-found"}'),
            pa.ArrowKeyError("object not found: k"),
            ObjectNotFoundError,
        ),
        (
            flight.FlightServerError("refused", extra_info=b'{"code": "invalid-argument"}'),
            pa.ArrowInvalid("invalid key 'k'"),
            InvalidArgumentError,
        ),
    ],
    ids=["conflict", "limit", "not-found", "invalid"],
)
def test_text_only_rejection_maps_like_its_structured_twin(
    structured: Exception, text_only: Exception, cls: type[Exception]
) -> None:
    """A rejection without extra_info (a Flame cache) maps to the same class, and a conflict's
    versions are read from its text, as the structured rejection gives them."""
    from_code = map_flight_error(structured, op="op", key="k")
    from_text = map_flight_error(text_only, op="op", key="k")
    assert type(from_code) is type(from_text) is cls
    for name in ("expected_version", "current_version"):
        assert from_code.fields.get(name) == from_text.fields.get(name)
    assert "rejection_code" in from_code.fields and "rejection_code" not in from_text.fields
