"""Property tests: the store's version arithmetic and patch application equal a plain model,
across conditional commits, evictions and restarts."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from flame_agents._wire.cache.keys import parse_key
from flame_agents.errors import CommitConflictError, ObjectNotFoundError
from flame_agents.runtime.cache.object_store import NotModified, ObjectStore, RowsReply

_DATA = st.binary(max_size=40)


@dataclass
class _Model:
    base_version: int
    base: bytes
    patches: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def version(self) -> int:
        return self.patches[-1][0] if self.patches else self.base_version

    def reply(self, since: int) -> NotModified | RowsReply:
        """The do_get rules of flame-wire §4.2, written as plainly as possible."""
        if since != 0 and since == self.version:
            return NotModified(self.version)
        if since != 0 and self.base_version <= since < self.version:
            return RowsReply(self.version, [(v, "patch", d) for v, d in self.patches if v > since])
        rows = [(self.base_version, "base", self.base)]
        return RowsReply(self.version, rows + [(v, "patch", d) for v, d in self.patches])


class StoreMachine(RuleBasedStateMachine):
    """Random puts, updates, (conditional) patches, reads, deletes and restarts."""

    keys = Bundle("keys")

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="cache-prop-"))
        # A tiny memory budget so reads also exercise eviction and reloading from disk.
        self.store = ObjectStore(self.root, max_memory=64)
        self.model: dict[str, _Model] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.root, ignore_errors=True)

    @rule(target=keys, data=_DATA, session=st.sampled_from(["s1", "s2"]))
    def create(self, data: bytes, session: str) -> str:
        key, version = self.store.put(parse_key(f"app/{session}", allow_prefix=True), data)
        assert version == 1
        self.model[key] = _Model(1, data)
        return key

    @rule(key=keys, data=_DATA, stale=st.booleans(), conditional=st.booleans())
    def replace(self, key: str, data: bytes, stale: bool, conditional: bool) -> None:
        current = self.model[key].version if key in self.model else 0
        expected = (current + 1 if stale else current) if conditional else None
        try:
            _, version = self.store.put(parse_key(key), data, expected=expected)
        except CommitConflictError:
            assert conditional and stale
            return
        assert not (conditional and stale)
        assert version == current + 1
        self.model[key] = _Model(version, data)

    @rule(key=keys, data=_DATA, stale=st.booleans(), conditional=st.booleans())
    def patch(self, key: str, data: bytes, stale: bool, conditional: bool) -> None:
        obj = self.model.get(key)
        expected = None
        if conditional and obj is not None:
            expected = obj.version - 1 if stale else obj.version
        try:
            version = self.store.patch(parse_key(key), data, expected=expected)
        except ObjectNotFoundError:
            assert obj is None
            return
        except CommitConflictError:
            assert conditional and stale
            return
        assert obj is not None and not (conditional and stale)
        assert version == obj.version + 1
        obj.patches.append((version, data))

    @rule(key=keys, offset=st.integers(min_value=-3, max_value=2))
    def read(self, key: str, offset: int) -> None:
        obj = self.model.get(key)
        since = max(0, (obj.version if obj else 1) + offset)
        try:
            reply = self.store.read(parse_key(key), since)
        except ObjectNotFoundError:
            assert obj is None
            return
        assert obj is not None
        assert reply == obj.reply(since)

    @rule(key=keys)
    def delete(self, key: str) -> None:
        self.store.delete(parse_key(key))
        self.model.pop(key, None)

    @rule()
    def restart(self) -> None:
        self.store.close()
        self.store = ObjectStore(self.root, max_memory=64)

    @invariant()
    def listing_matches_model(self) -> None:
        listed = {info.key: info.version for info in self.store.objects()}
        assert listed == {k: m.version for k, m in self.model.items()}


class TestStoreMatchesModel(StoreMachine.TestCase):  # type: ignore[name-defined,misc]
    """The store behaves like the plain model under random operation sequences."""

    settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
