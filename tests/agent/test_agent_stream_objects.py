"""Stream objects written by StreamWriter and read by StreamReader, on a real cache server."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from flame_agents.agent import _stream
from flame_agents.agent._stream import StreamWriter
from flame_agents.agent._stream_format import base_record, segment_key, stream_key
from flame_agents.agent._stream_reader import StreamReader
from flame_agents.cache import ObjectRef, follow_raw, reset_clients, update_raw
from flame_agents.errors import InvalidArgumentError, InvalidStateError
from flame_agents.runtime.cache.server import CacheServer


class Tok(BaseModel):
    i: int


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    server = CacheServer(tmp_path / "cache")
    server.serve_in_background()
    yield server.endpoint
    server.shutdown()
    reset_clients()


PREFIX = stream_key("app/ssn/state-id", "turn-1")


def _read(endpoint: str, **options: object) -> tuple[list[object], str | None]:
    reader = StreamReader(endpoint, PREFIX, finished=lambda: True, wait=0.05, **options)  # type: ignore[arg-type]
    return list(reader), reader.outcome


def _write(endpoint: str, items: list[object], outcome: str | None, **kw: bool) -> StreamWriter:
    writer = StreamWriter(endpoint, PREFIX)
    for item in items:
        writer.emit(item)
    assert writer.close(outcome, **kw)
    return writer


def test_stream_keys_obey_the_key_grammar() -> None:
    """Any idempotency key gives a valid prefix; long session ids still fit."""
    assert stream_key("a/s/o", "../\\ weird key*").startswith("a/s~stream~")
    assert stream_key(f"a/{'s' * 190}/o", "k").startswith("a/~stream~")
    assert stream_key("a/s/o", "k1") != stream_key("a/s/o", "k2")


def test_items_span_segments_in_order(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One item per write and three patches per segment: 20 items cross segments, in order."""
    monkeypatch.setattr(_stream, "MAX_BATCH_BYTES", 1)
    monkeypatch.setattr(_stream, "SEGMENT_PATCHES", 3)
    _write(endpoint, [Tok(i=i) for i in range(20)], "reply")
    assert _read(endpoint) == ([Tok(i=i) for i in range(20)], "reply")
    assert follow_raw(ObjectRef(endpoint, segment_key(PREFIX, 3), 0)).found
    items, _ = _read(endpoint, after=13)
    assert items == [Tok(i=i) for i in range(13, 20)]


def test_rerun_skips_the_items_the_stream_holds(endpoint: str) -> None:
    """A run that stopped without an end marker is continued: the next run's first emits are
    the ones already written and are skipped."""
    _write(endpoint, list(range(5)), None)
    again = _write(endpoint, list(range(9)), "reply")
    assert (again.skipped, again.written) == (5, 4)
    assert _read(endpoint) == (list(range(9)), "reply")


def test_rerun_after_a_failed_run_starts_afresh(endpoint: str) -> None:
    """A stream that ended failed belongs to a run that is over: the next run replaces it."""
    _write(endpoint, ["a", "b", "c"], "failed")
    _write(endpoint, ["x", "y"], "reply")
    assert _read(endpoint) == (["x", "y"], "reply")


def test_an_interrupted_stream_goes_on_when_the_turn_resumes(endpoint: str) -> None:
    """Ended interrupted, the stream pauses; the resumed run replays its first items (skipped)
    and goes on in the same stream."""
    _write(endpoint, [0, 1, 2], "interrupted")
    assert _read(endpoint) == ([0, 1, 2], "interrupted")
    _write(endpoint, [0, 1, 2, 3, 4], "reply")
    assert _read(endpoint) == ([0, 1, 2, 3, 4], "reply")


def test_a_replayed_turn_keeps_its_stream_or_ends_a_missing_one(endpoint: str) -> None:
    """A turn answered from its recorded reply leaves an ended stream as it is, and gives a
    missing one just its end marker (so readers stop)."""
    _write(endpoint, [1, 2], "reply")
    _write(endpoint, [], "reply", replayed=True)
    assert _read(endpoint) == ([1, 2], "reply")
    other = stream_key("app/ssn/state-id", "turn-2")
    writer = StreamWriter(endpoint, other)
    assert writer.close("reply", replayed=True)
    reader = StreamReader(endpoint, other, finished=lambda: True, wait=0.05)
    assert (list(reader), reader.outcome) == ([], "reply")


def test_items_must_be_models_or_json(endpoint: str) -> None:
    """A non-JSON item fails at emit (in the handler), before anything is queued."""
    writer = StreamWriter(endpoint, PREFIX)
    with pytest.raises(InvalidArgumentError):
        writer.emit(object())
    with pytest.raises(InvalidArgumentError):
        writer.emit(math.nan)
    writer.close("reply")
    with pytest.raises(InvalidStateError):
        writer.emit(1)


def test_a_stream_that_cannot_be_written_fails_quietly(tmp_path: Path) -> None:
    """With the cache gone, emits still return and close reports the failure without raising."""
    server = CacheServer(tmp_path / "gone")
    server.serve_in_background()
    endpoint = server.endpoint
    server.shutdown()
    try:
        writer = StreamWriter(endpoint, PREFIX)
        for i in range(3):
            writer.emit(i)
        assert writer.close("reply") is False
        assert writer.emitted == 3
    finally:
        reset_clients()


def test_reader_stops_when_the_turn_finished_without_a_stream(endpoint: str) -> None:
    """No stream and a finished task: the reader drains once and ends with no outcome."""
    assert _read(endpoint) == ([], None)


def test_items_of_unknown_classes_come_back_as_json(endpoint: str) -> None:
    """An item whose class this process cannot import is its JSON value."""
    ref = ObjectRef(endpoint, segment_key(PREFIX, 0), 0)
    item = b'["nowhere.at.all:Thing",{"a":1}]'
    update_raw(ref, base_record("r", 0, 0, [item], end="reply"), expected_version=0)
    assert _read(endpoint) == ([{"a": 1}], "reply")


def test_a_writer_for_an_existing_stream_only_writes_nothing_without_one(endpoint: str) -> None:
    """A resumed turn that was never streamed (``if_exists``) creates no stream."""
    writer = StreamWriter(endpoint, PREFIX, if_exists=True)
    writer.emit(1)
    assert writer.close("reply") is True
    assert not follow_raw(ObjectRef(endpoint, segment_key(PREFIX, 0), 0)).found
