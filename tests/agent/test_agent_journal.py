"""Property tests of the state journal: patches + compaction equal a plain model."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from flame_agents.agent import ContextModel, History
from flame_agents.agent._journal import (
    HistoryLog,
    Patch,
    decode_base,
    decode_patch,
    encode_base,
    encode_patch,
    new_journal,
)
from flame_agents.agent._state import StateHandle
from flame_agents.agent._state_objects import initial_base
from flame_agents.agent._store import MemoryStore
from flame_agents.errors import CommitConflictError, ContextValidationError


class Doc(ContextModel):
    title: str = ""
    tags: dict[str, int] = Field(default_factory=dict)
    lines: History[str] = Field(default_factory=History)
    scores: History[int] = Field(default_factory=History)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("title"), st.text(max_size=5)),
        st.tuples(st.just("tag"), st.text(max_size=2), st.integers(-3, 3)),
        st.tuples(st.just("lines"), st.lists(st.text(max_size=4), max_size=4)),
        st.tuples(st.just("scores"), st.lists(st.integers(), max_size=3)),
        st.tuples(st.just("noop")),
    ),
    max_size=40,
)


def _apply(doc: Any, op: tuple[Any, ...]) -> None:
    if op[0] == "title":
        doc.title = op[1]
    elif op[0] == "tag":
        doc.tags[op[1]] = op[2]
    elif op[0] in ("lines", "scores"):
        getattr(doc, op[0]).extend(op[1])


class Plain:
    def __init__(self) -> None:
        self.title = ""
        self.tags: dict[str, int] = {}
        self.lines: list[str] = []
        self.scores: list[int] = []


@settings(max_examples=60, deadline=None)
@given(ops=ops, chunk=st.integers(1, 5), every=st.integers(1, 6), crash=st.sets(st.integers(0, 40)))
def test_patches_and_compaction_equal_plain_model(
    ops: list[tuple[Any, ...]], chunk: int, every: int, crash: set[int]
) -> None:
    """Any sequence of commits, compactions and writer restarts materializes to the plain model."""
    store = MemoryStore()
    key = store.create("app/s", initial_base(Doc(), chunk=chunk))
    writer: StateHandle[Doc] = StateHandle(store, key, Doc, compact_every=every)
    plain = Plain()
    for i, op in enumerate(ops):
        if i in crash:
            writer = StateHandle(store, key, Doc, compact_every=every)
        writer.refresh()
        work = writer.working_copy()
        _apply(work, op)
        _apply(plain, op)
        writer.commit(work, idempotency_key=f"k{i}", reply={"i": i})
        assert store.patch_count(key) < every
    doc = StateHandle(store, key, Doc).context()
    assert (doc.title, doc.tags) == (plain.title, plain.tags)
    assert doc.lines.tolist() == plain.lines and doc.scores.tolist() == plain.scores
    assert len(doc.lines) == len(plain.lines)
    reader: StateHandle[Doc] = StateHandle(store, key, Doc)
    for i in range(len(ops)):
        assert reader.lookup(f"k{i}") == (True, {"i": i})
    assert reader.lookup("never") == (False, None)
    base = decode_base(store.read(key), version=1)
    for log in base.histories.values():
        assert len(log.tail) < chunk + every * 4  # bounded: full chunks are sealed away


@given(
    reply=st.none() | st.dictionaries(st.text(max_size=3), st.integers()),
    values=st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3)),
)
def test_patch_round_trips_through_bytes(reply: Any, values: dict[str, Any]) -> None:
    """A patch decodes to what was encoded."""
    patch = Patch(base=3, prev=7, schema=2, key="k", reply=reply, set=values, append={"h": [1]})
    assert decode_patch(encode_patch(patch), version=8) == patch


def test_base_round_trips_through_bytes() -> None:
    """A base decodes to the journal it was encoded from."""
    journal = new_journal({"a": 1}, {"h": [1, 2]}, schema=3, chunk=4)
    back = decode_base(encode_base(journal), version=5)
    assert (back.fields, back.histories, back.schema, back.version) == (
        {"a": 1},
        {"h": HistoryLog(0, [1, 2])},
        3,
        5,
    )


def test_patch_from_a_stale_version_is_ignored_by_readers() -> None:
    """A patch committed against a version that is not the current one never forks history."""
    journal = new_journal({"n": 0}, {}, schema=1)
    journal.version = 1
    assert journal.apply(Patch(base=1, prev=1, schema=1, key="a", set={"n": 1}), 2)
    assert not journal.apply(Patch(base=1, prev=1, schema=1, key="b", set={"n": 99}), 3)
    assert journal.fields == {"n": 1} and "b" not in journal.recent


def test_second_writer_from_a_stale_version_is_rejected() -> None:
    """Two writers committing from one version: the second gets CommitConflictError."""
    store = MemoryStore()
    key = store.create("app/s", initial_base(Doc()))
    a: StateHandle[Doc] = StateHandle(store, key, Doc)
    b: StateHandle[Doc] = StateHandle(store, key, Doc)
    wa, wb = a.working_copy(), b.working_copy()
    wa.lines.append("from a")
    wb.lines.append("from b")
    a.commit(wa, idempotency_key="a", reply=None)
    with pytest.raises(CommitConflictError):
        b.commit(wb, idempotency_key="b", reply=None)
    assert StateHandle(store, key, Doc).context().lines.tolist() == ["from a"]


def test_invalid_context_or_replaced_history_leaves_state_unchanged() -> None:
    """A context that fails validation, or a reassigned History, is not committed."""
    store = MemoryStore()
    key = store.create("app/s", initial_base(Doc(title="t")))
    handle: StateHandle[Doc] = StateHandle(store, key, Doc)
    work = handle.working_copy()
    work.title = 42  # type: ignore[assignment]
    with pytest.raises(ContextValidationError):
        handle.commit(work, idempotency_key="x", reply=None)
    work = handle.working_copy()
    work.lines = History(["replaced"])
    with pytest.raises(ContextValidationError, match="append-only"):
        handle.commit(work, idempotency_key="y", reply=None)
    assert store.patch_count(key) == 0
    assert StateHandle(store, key, Doc).context().title == "t"


def test_history_reads_only_the_chunks_it_needs() -> None:
    """Indexing a long history loads one chunk; len needs none; slices and negatives work."""
    store = MemoryStore()
    key = store.create("app/s", initial_base(Doc(scores=History(range(1000))), chunk=10))
    handle: StateHandle[Doc] = StateHandle(store, key, Doc, compact_every=1)
    work = handle.working_copy()
    work.scores.append(1000)
    handle.commit(work, idempotency_key="k", reply=None)  # compacts: 100 chunks sealed
    reads: list[str] = []
    original = store.read

    def counting_read(k: str) -> bytes:
        reads.append(k)
        return original(k)

    store.read = counting_read  # type: ignore[method-assign]
    doc = StateHandle(store, key, Doc).context()
    assert len(doc.scores) == 1001 and reads == []
    assert doc.scores[555] == 555 and len(reads) == 1
    assert doc.scores[-1] == 1000 and doc.scores[-2] == 999
    assert doc.scores[998:1001] == [998, 999, 1000]
    assert list(doc.scores)[:3] == [0, 1, 2]
    with pytest.raises(IndexError):
        doc.scores[1001]
