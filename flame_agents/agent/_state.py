"""The commit path: load, refresh, look up, commit and compact one session's state object.

:class:`StateHandle` is shared by the instance-side handler, the in-process test harness and the
client's ``context()``: there is exactly one implementation of how state is read and written.
Every write is conditional on the version it was computed from, so a writer whose state moved
underneath it is rejected instead of forking the history.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from pydantic_core import PydanticSerializationError

from flame_agents._logging import get_logger
from flame_agents.agent._context import ContextModel
from flame_agents.agent._history import History
from flame_agents.agent._journal import (
    DEFAULT_CHUNK,
    KEYS_LOG,
    HistoryLog,
    Journal,
    Patch,
    chunk_key,
    decode_base,
    decode_chunk,
    encode_base,
    encode_patch,
    full_log,
    new_journal,
    seal,
)
from flame_agents.agent._store import Fetched, StateStore
from flame_agents.errors import (
    CacheError,
    CommitConflictError,
    ContextValidationError,
    FlameAgentsError,
)

__all__ = ["DEFAULT_COMPACT_EVERY", "StateHandle", "initial_base"]

C = TypeVar("C", bound=ContextModel)
_MISSING = object()
#: A new base is written after this many patches, bounding what a reader must apply.
DEFAULT_COMPACT_EVERY = 64

log = get_logger(__name__)


def _history_json(ctx: ContextModel) -> dict[str, list[Any]]:
    names = set(ctx.history_fields())
    dumped: dict[str, list[Any]] = ctx.model_dump(mode="json", include=names) if names else {}
    return dumped


def initial_base(ctx: ContextModel, *, chunk: int = DEFAULT_CHUNK) -> bytes:
    """Base bytes of a new session whose context starts as ``ctx`` (validated first)."""
    type(ctx).validate_state(ctx.model_dump(), what="initial context")
    journal = new_journal(
        ctx.scalar_state(), _history_json(ctx), schema=type(ctx).schema_version, chunk=chunk
    )
    return encode_base(journal)


class StateHandle(Generic[C]):
    """One session's state object at ``key`` in ``store``, typed as ``context_type``."""

    def __init__(
        self,
        store: StateStore,
        key: str,
        context_type: type[C],
        *,
        compact_every: int = DEFAULT_COMPACT_EVERY,
    ) -> None:
        self.store = store
        self.key = key
        self.context_type = context_type
        self.compact_every = compact_every
        self._journal: Journal | None = None
        self._ctx: C | None = None
        self._scalars: dict[str, Any] = {}
        # Sealed idempotency keys, loaded chunk by chunk on the first lookup miss.
        self._sealed_keys: dict[str, Any] = {}
        self._sealed_loaded = (0, 0)  # (generation, chunks loaded)

    # -- reading ----------------------------------------------------------------------------

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            self.load()
        assert self._journal is not None
        return self._journal

    @property
    def version(self) -> int:
        """The state version this handle has materialized."""
        return self.journal.version

    def load(self) -> None:
        """Read the whole object (base and patches) and materialize it."""
        self._load_from(self.store.fetch(self.key))

    def _load_from(self, fetched: Fetched) -> None:
        if fetched.base is None:
            raise CacheError(f"state object {self.key} came back without a base", key=self.key)
        journal = decode_base(fetched.base, version=fetched.base_version)
        journal.apply_stored(fetched.patches)
        self._set_journal(journal)

    def refresh(self) -> None:
        """Catch up with commits made elsewhere, reading only what changed since our version."""
        if self._journal is None:
            self.load()
            return
        fetched = self.store.fetch(self.key, since_version=self._journal.version)
        if fetched.base is not None:
            self._load_from(fetched)  # compacted (or too far behind): start from the new base
            return
        if not fetched.patches:
            return
        journal = self._journal.copy()
        journal.apply_stored(fetched.patches)
        self._set_journal(journal)

    def _set_journal(self, journal: Journal) -> None:
        self._journal = journal
        self._ctx = None

    def _read_chunk(self, gen: int, log_name: str, index: int) -> list[Any]:
        key = chunk_key(self.key, gen, log_name, index)
        return decode_chunk(self.store.read(key), key=key, expected=self.journal.chunk)

    def context(self) -> C:
        """The materialized, validated context (migrated if stored by an older schema)."""
        if self._ctx is None:
            self._ctx = self._materialize(self.journal)
            self._scalars = self._ctx.scalar_state()
        return self._ctx

    def _materialize(self, journal: Journal) -> C:
        cls = self.context_type
        gen = journal.gen
        if journal.schema != cls.schema_version:
            data: dict[str, Any] = dict(journal.fields)
            for name in journal.histories:
                data[name] = full_log(journal, name, lambda n, i: self._read_chunk(gen, n, i))
            migrated = cls.migrate(data, from_version=journal.schema)
            return cls.validate_state(migrated, what=f"state of {self.key} (migrated)")
        data = dict(journal.fields)
        for name in cls.history_fields():
            hlog = journal.histories.get(name, HistoryLog())
            data[name] = History._stored(
                sealed=hlog.sealed,
                chunk=journal.chunk,
                tail=hlog.tail,
                loader=lambda i, n=name: self._read_chunk(gen, n, i),  # type: ignore[misc]
                adapter=None,
            )
        return cls.validate_state(data, what=f"state of {self.key}")

    def lookup(self, idempotency_key: str) -> tuple[bool, Any]:
        """``(True, reply JSON)`` when ``idempotency_key`` is committed, else ``(False, None)``."""
        journal = self.journal
        if idempotency_key in journal.recent:
            return True, journal.recent[idempotency_key]
        gen, loaded = self._sealed_loaded
        if gen != journal.gen:
            self._sealed_keys, loaded = {}, 0
        for index in range(loaded, journal.keys.sealed):
            for item_key, reply in self._read_chunk(journal.gen, KEYS_LOG, index):
                self._sealed_keys[str(item_key)] = reply
        self._sealed_loaded = (journal.gen, journal.keys.sealed)
        if idempotency_key in self._sealed_keys:
            return True, self._sealed_keys[idempotency_key]
        return False, None

    # -- writing ----------------------------------------------------------------------------

    def working_copy(self) -> C:
        """A copy of the context for one invocation; the stored state is untouched until commit."""
        return self.context().model_copy(deep=True)

    def upgrade(self) -> bool:
        """Persist a migration: rewrite the state at the current schema version (new generation).

        Patches must share their base's schema version, so a writer with a newer context class
        rewrites the state once before committing. Returns True when it did.
        """
        journal = self.journal
        if journal.schema == self.context_type.schema_version:
            return False
        ctx = self.context()
        fresh = new_journal(
            ctx.scalar_state(),
            _history_json(ctx),
            schema=self.context_type.schema_version,
            chunk=journal.chunk,
            gen=journal.gen + 1,
        )
        fresh.keys = HistoryLog(
            tail=full_log(journal, KEYS_LOG, lambda n, i: self._read_chunk(journal.gen, n, i))
        )
        self._write_base(fresh, expected_version=journal.version)
        log.info(
            "state migrated",
            key=self.key,
            from_schema=journal.schema,
            to_schema=fresh.schema,
            version=self.version,
        )
        return True

    def commit(self, work: C, *, idempotency_key: str, reply: Any) -> int:
        """Commit ``work`` (a :meth:`working_copy` after the handler ran) as one patch.

        Raises :class:`ContextValidationError` when ``work`` is invalid and
        :class:`CommitConflictError` when the state moved since it was read; in both cases
        the stored state is unchanged. Returns the new version.
        """
        before = self.context()
        journal = self.journal
        validated, scalars, appended = self._delta(before, work)
        patch = Patch(
            base=journal.base_version,
            prev=journal.version,
            schema=journal.schema,
            key=idempotency_key,
            reply=reply,
            set={k: v for k, v in scalars.items() if self._scalars.get(k, _MISSING) != v},
            append=appended,
        )
        version = self.store.append(self.key, encode_patch(patch), expected_version=journal.version)
        if version != journal.version + 1:
            # A store without conditional commits let another write in first: ours was ignored
            # by readers (Journal.apply) unless it is the one that landed.
            self.load()
            found, _ = self.lookup(idempotency_key)
            if not found:
                raise CommitConflictError(
                    f"state of {self.key} moved during the commit (expected version "
                    f"{journal.version + 1}, got {version})",
                    key=self.key,
                    version=version,
                )
            return self.version
        journal.apply(patch, version)
        self._ctx, self._scalars = validated, scalars
        if journal.patches >= self.compact_every:
            self.compact()
        return version

    def _delta(self, before: C, work: C) -> tuple[C, dict[str, Any], dict[str, list[Any]]]:
        cls = self.context_type
        if type(work) is not cls:
            raise ContextValidationError(
                f"the context must stay a {cls.__name__}, got {type(work).__name__}"
            )
        appended: dict[str, list[Any]] = {}
        histories: dict[str, Any] = {}
        for name in cls.history_fields():
            new, old = getattr(work, name), getattr(before, name)
            if not isinstance(new, History) or not new._same_lineage(old) or len(new) < len(old):
                raise ContextValidationError(
                    f"{cls.__name__}.{name} was replaced; History fields are append-only "
                    "(use append/extend)",
                    field=name,
                )
            appended[name] = new._appended()
            histories[name] = new
        try:
            # warnings=False: a wrongly typed assignment must fail validation below, not warn.
            dumped = work.model_dump(mode="json", exclude=set(histories), warnings=False)
        except PydanticSerializationError as exc:
            raise ContextValidationError(
                f"{cls.__name__} is not serializable after the handler ran: {exc}"
            ) from exc
        validated = cls.validate_state({**dumped, **histories}, what="context after handle")
        return validated, validated.scalar_state(), appended

    def compact(self) -> bool:
        """Write a new base (sealing full history chunks first); False if it did not happen.

        Compaction only bounds read cost: when it fails (the state moved, or the cache
        failed), the committed invocation stands and the next commit tries again.
        """
        journal = self.journal.copy()
        try:
            self._write_base(journal, expected_version=self.journal.version)
        except FlameAgentsError as exc:
            # Nothing was lost: chunks are immutable and the old base + patches are intact;
            # after a conflict the next refresh reloads what the other writer stored.
            log.warning("compaction skipped", key=self.key, error=str(exc))
            return False
        return True

    def _write_base(self, journal: Journal, *, expected_version: int) -> None:
        for key, data in seal(journal, self.key):
            self.store.write(key, data)
        version = self.store.replace(
            self.key, encode_base(journal), expected_version=expected_version
        )
        journal.version = journal.base_version = version
        journal.patches = 0
        self._set_journal(journal)

    def state_summary(self) -> Mapping[str, Any]:
        """Version, schema and sizes of the stored state (for ``view``)."""
        journal = self.journal
        return {
            "key": self.key,
            "version": journal.version,
            "base_version": journal.base_version,
            "schema_version": journal.schema,
            "patches": journal.patches,
            "invocations": journal.keys.length(journal.chunk),
            "histories": {n: h.length(journal.chunk) for n, h in journal.histories.items()},
        }
