"""Schema versions and migrations: older stored state is upgraded on read and on write."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from flame_agents.agent import ContextModel, History
from flame_agents.agent._state import StateHandle
from flame_agents.agent._state_objects import initial_base
from flame_agents.agent._store import MemoryStore
from flame_agents.errors import ContextValidationError


class NoteV1(BaseModel):
    text: str


class NoteV2(BaseModel):
    text: str
    author: str


class BookV1(ContextModel):
    name: str = ""
    notes: History[NoteV1] = Field(default_factory=History)


class BookV3(ContextModel):
    schema_version = 3
    title: str = ""
    count: int = 0
    notes: History[NoteV2] = Field(default_factory=History)


@BookV3.migration(from_version=1)
def _rename(state: dict[str, Any]) -> dict[str, Any]:
    state = dict(state)
    state["title"] = state.pop("name")
    return state


@BookV3.migration(from_version=2)
def _authors(state: dict[str, Any]) -> dict[str, Any]:
    notes = [{**n, "author": "?"} for n in state["notes"]]
    return {**state, "notes": notes, "count": len(notes)}


@settings(max_examples=30, deadline=None)
@given(name=st.text(max_size=5), texts=st.lists(st.text(max_size=4), max_size=30))
def test_migrations_round_trip(name: str, texts: list[str]) -> None:
    """State written by v1 reads as v3; a writer persists the upgrade once and continues."""
    store = MemoryStore()
    old = BookV1(name=name, notes=History([NoteV1(text=t) for t in texts]))
    key = store.create("app/s", initial_base(old, chunk=4))
    v1: StateHandle[BookV1] = StateHandle(store, key, BookV1, compact_every=2)
    for i in range(3):  # seal some chunks in the v1 format
        work = v1.working_copy()
        work.notes.append(NoteV1(text=f"late{i}"))
        v1.commit(work, idempotency_key=f"old{i}", reply={"i": i})
    all_texts = [*texts, "late0", "late1", "late2"]

    read = StateHandle(store, key, BookV3).context()
    assert read.title == name and read.count == len(all_texts)
    assert [n.text for n in read.notes] == all_texts
    assert {n.author for n in read.notes} <= {"?"}

    writer: StateHandle[BookV3] = StateHandle(store, key, BookV3, compact_every=2)
    assert writer.upgrade() is True
    assert writer.upgrade() is False
    work = writer.working_copy()
    work.notes.append(NoteV2(text="new", author="me"))
    writer.commit(work, idempotency_key="new", reply=None)
    final = StateHandle(store, key, BookV3)
    assert final.journal.schema == 3
    assert [n.text for n in final.context().notes] == [*all_texts, "new"]
    assert final.lookup("old1") == (True, {"i": 1})  # keys survive the rewrite


def test_newer_stored_schema_is_refused() -> None:
    """Old code reading state written by a newer schema fails with a clear error."""
    store = MemoryStore()
    key = store.create("app/s", initial_base(BookV3()))
    with pytest.raises(ContextValidationError, match="newer"):
        StateHandle(store, key, BookV1).context()


def test_missing_migration_names_the_step() -> None:
    """A gap in the migration chain says which migration to add."""

    class Gappy(ContextModel):
        schema_version = 2

    with pytest.raises(ContextValidationError, match="from_version=1"):
        Gappy.migrate({}, from_version=1)


def test_migration_outside_the_version_range_is_rejected() -> None:
    """Registering a migration that can never run fails at definition time."""
    with pytest.raises(ValueError, match="from_version"):
        BookV3.migration(from_version=3)
