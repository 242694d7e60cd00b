"""kill -9 of the runtime while clients write to the object cache, in both durability modes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from faults_support import rng_for, wait_until

from flame_agents import cache, core
from flame_agents.cache import ObjectRef, fetch_raw, patch_raw, put_raw, update_raw
from flame_agents.errors import FlameAgentsError
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

WRITERS = 4


@dataclass
class _Model:
    """What one writer had acknowledged, and the one write in flight when the runtime died."""

    ref: ObjectRef | None = None
    base: bytes = b""
    patches: list[bytes] = field(default_factory=list)
    pending: tuple[str, bytes] | None = None
    created: list[tuple[ObjectRef, bytes]] = field(default_factory=list)
    """Objects created (put) and acknowledged; each must exist after the restart."""

    def states(self) -> list[tuple[bytes, list[bytes]]]:
        """The object's possible contents: without, or with, the in-flight write."""
        states = [(self.base, list(self.patches))]
        if self.pending is not None:
            kind, data = self.pending
            states.append((data, []) if kind == "update" else (self.base, [*self.patches, data]))
        return states


def _reset_clients() -> None:
    core.reset_default_connection()
    cache.reset_clients()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A kept runtime home; clients are reset before and after."""
    _reset_clients()
    try:
        yield tmp_path / "home"
    finally:
        _reset_clients()


def _writer(n: int, model: _Model, errors: list[tuple[float, BaseException]]) -> None:
    """Patch (mostly), update (a small new base) and create objects until the runtime dies."""
    i = 0
    try:
        model.base = f"w{n}-base-0".encode()
        model.ref = put_raw(f"kill-app/w{n}", model.base)
        while True:
            i += 1
            if i % 7 == 0:
                data = f"w{n}-base-{i}".encode()
                model.pending = ("update", data)
                model.ref = update_raw(model.ref, data)
                model.base, model.patches = data, []
            elif i % 11 == 0:
                data = f"w{n}-object-{i}".encode()
                model.pending = ("create", data)
                model.created.append((put_raw(f"kill-app/w{n}", data), data))
            else:
                data = f"w{n}-patch-{i}".encode() * (1 + i % 5)
                model.pending = ("patch", data)
                model.ref = patch_raw(model.ref, data)
                model.patches.append(data)
            model.pending = None
    except BaseException as exc:  # the runtime went away (checked by the test)
        errors.append((time.monotonic(), exc))


@pytest.mark.parametrize("fsync", [False, True], ids=["default", "fsync"])
def test_cache_writes_survive_runtime_kill_9(home: Path, fsync: bool, rep: int) -> None:
    """kill -9 of the runtime mid-writes: every acknowledged put, update and patch is there
    after the restart exactly once, in order; only the write in flight may be missing."""
    rng = rng_for(f"cache-kill-{fsync}", rep)
    with LocalRuntime(home, set_env=True, extra_args=["--fsync"] if fsync else []) as rt:
        log = home / "logs" / "runtime.log"
        assert f"fsync={fsync}" in log.read_text(errors="replace")
        models = [_Model() for _ in range(WRITERS)]
        errors: list[tuple[float, BaseException]] = []
        threads = [
            threading.Thread(target=_writer, args=(n, models[n], errors), daemon=True)
            for n in range(WRITERS)
        ]
        for thread in threads:
            thread.start()
        wait_until(
            lambda: all(len(m.patches) + len(m.created) >= 3 for m in models),
            what="every writer acknowledged a few writes",
        )
        time.sleep(rng.uniform(0.0, 1.0))
        killed_at = time.monotonic()
        rt.stop(kill=True)
        for thread in threads:
            thread.join(60)
        assert not any(t.is_alive() for t in threads)
        # Every writer stopped on an error of the kill, none on an error of its own.
        assert len(errors) == WRITERS
        for when, exc in errors:
            assert when >= killed_at and isinstance(exc, FlameAgentsError), repr(exc)
        rt.start()
        _reset_clients()
        for n, model in enumerate(models):
            assert model.ref is not None
            raw = fetch_raw(ObjectRef(model.ref.endpoint, model.ref.key, 0))
            state = (raw.base, [data for _, data in raw.patches])
            assert state in model.states(), f"writer {n}: {state!r} vs {model.states()!r}"
            versions = [raw.base_version, *(v for v, _ in raw.patches)]
            assert versions == list(range(versions[0], versions[0] + len(versions)))
            for ref, data in model.created:
                assert fetch_raw(ObjectRef(ref.endpoint, ref.key, 0)).base == data
        # The restarted cache keeps taking writes where the acknowledged ones ended.
        last = models[0].ref
        assert last is not None
        current = fetch_raw(ObjectRef(last.endpoint, last.key, 0))
        top = current.patches[-1][0] if current.patches else current.base_version
        after = patch_raw(ObjectRef(last.endpoint, last.key, top), b"after the restart")
        assert after.version == top + 1
