"""The two durability modes of the cache: flushes per write, group commit, option plumbing."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flame_agents._wire.cache.keys import parse_key
from flame_agents.cli._main import build_parser
from flame_agents.cli.runtime_cmds import _runtime_options
from flame_agents.runtime.__main__ import _parser
from flame_agents.runtime.cache.journal import GroupSync
from flame_agents.runtime.cache.object_store import ObjectStore
from flame_agents.runtime.sessions._store import Store


@pytest.fixture
def flushes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record every fsync/fdatasync the process makes (still performing them)."""
    calls: list[str] = []

    def counting(name: str, real: Callable[[int], None]) -> Callable[[int], None]:
        def call(fd: int) -> None:
            calls.append(name)
            real(fd)

        return call

    monkeypatch.setattr(os, "fsync", counting("fsync", os.fsync))
    monkeypatch.setattr(os, "fdatasync", counting("fdatasync", os.fdatasync))
    yield calls


def _writes(store: ObjectStore) -> None:
    key, _ = store.put(parse_key("a/s", allow_prefix=True), b"base")
    store.patch(parse_key(key), b"first patch creates the journal")
    store.patch(parse_key(key), b"second patch appends")
    store.put(parse_key(key), b"small update appends")


def test_default_mode_never_flushes(tmp_path: Path, flushes: list[str]) -> None:
    """Without --fsync no cache write calls fsync or fdatasync."""
    store = ObjectStore(tmp_path)
    flushes.clear()
    _writes(store)
    assert flushes == []


def test_fsync_mode_flushes_every_write_before_returning(
    tmp_path: Path, flushes: list[str]
) -> None:
    """With --fsync each append is fdatasync'd, a new file and its directory entry fsync'd."""
    store = ObjectStore(tmp_path, fsync=True)
    key, _ = store.put(parse_key("a/s", allow_prefix=True), b"base")
    assert flushes.count("fsync") >= 2  # the base file, then its directory (and new parents)
    flushes.clear()
    store.patch(parse_key(key), b"creates the journal")
    assert flushes == ["fdatasync", "fsync"]  # the record, then the new journal's entry
    flushes.clear()
    store.patch(parse_key(key), b"appends")
    assert flushes == ["fdatasync"]
    flushes.clear()
    store.put(parse_key(key), b"small update")
    assert flushes == ["fdatasync"]


def test_concurrent_directory_flushes_are_shared() -> None:
    """Callers arriving while a flush runs share the next one: 1 + 1 flushes for 9 callers."""
    group = GroupSync()
    release = threading.Event()
    flushed: list[int] = []

    def flush() -> None:
        flushed.append(1)
        if len(flushed) == 1:
            assert release.wait(60)

    first = threading.Thread(target=group.sync, args=("d", flush))
    first.start()
    while not flushed:
        threading.Event().wait(0.001)
    others = [threading.Thread(target=group.sync, args=("d", flush)) for _ in range(8)]
    for thread in others:
        thread.start()
    # Wait until all eight are parked on the condition behind the running flush.
    while len(group._cond._waiters) < 8:  # type: ignore[attr-defined]
        threading.Event().wait(0.001)
    release.set()
    for thread in [first, *others]:
        thread.join(60)
    assert len(flushed) == 2


def test_a_failed_flush_fails_the_callers_it_was_for() -> None:
    """A flush error reaches the caller whose change it was meant to cover."""
    group = GroupSync()

    def broken() -> None:
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        group.sync("d", broken)
    group.sync("d", lambda: None)  # the next one starts clean


def test_runtime_fsync_option_parses() -> None:
    """`--fsync` is off by default and a flag when given."""
    assert _parser().parse_args(["--home", "h"]).fsync is False
    assert _parser().parse_args(["--home", "h", "--fsync"]).fsync is True


def test_up_passes_fsync_to_the_runtime() -> None:
    """`flame-agents up -- --fsync` hands --fsync to the runtime process."""
    args = build_parser().parse_args(["up", "--", "--fsync"])
    assert "--fsync" in _runtime_options(args)


@pytest.mark.parametrize(("fsync", "level"), [(False, 1), (True, 2)])
def test_store_synchronous_level_follows_fsync(tmp_path: Path, fsync: bool, level: int) -> None:
    """The sqlite store runs synchronous=NORMAL by default and FULL with --fsync."""
    store = Store(tmp_path / "flame.db", fsync=fsync)
    try:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == level
    finally:
        store.close()
