"""The commit path: load, refresh, look up, commit and compact one session's state object.

:class:`StateHandle` is shared by the instance-side handler, the in-process test harness and the
client's ``context()``: there is exactly one implementation of how state is read and written.
Every write is conditional on the version it was computed from, so a writer whose state moved
underneath it is rejected instead of forking the history.

A commit whose store call fails without saying whether the write landed (a network error after
the server applied it) is resolved, never guessed: the state is re-read and the idempotency key
looked up. Committed: the commit succeeded. Not committed and the state unchanged: the commit is
written again. Otherwise the caller gets a retryable error, and a retry with the same key either
finds the key or runs the invocation. A turn that took effect is never reported as failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic_core import PydanticSerializationError

from flame_agents._logging import get_logger
from flame_agents.agent._context import ContextModel
from flame_agents.agent._history import History
from flame_agents.agent._journal import (
    KEYS_LOG,
    HistoryLog,
    Journal,
    Patch,
    Recorded,
    chunk_key,
    decode_base,
    decode_chunk,
    encode_base,
    encode_patch,
    full_log,
    new_journal,
    seal,
)
from flame_agents.agent._progress import pending_interrupt
from flame_agents.agent._state_objects import history_json
from flame_agents.agent._store import Fetched, StateStore
from flame_agents.errors import (
    CacheError,
    CommitConflictError,
    ContextValidationError,
    FlameAgentsError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    RetryableError,
)

__all__ = ["DEFAULT_COMPACT_EVERY", "Committed", "StateHandle"]

C = TypeVar("C", bound=ContextModel)
_MISSING = object()
#: A new base is written after this many patches, bounding what a reader must apply.
DEFAULT_COMPACT_EVERY = 64
#: Writes of one patch whose outcome stayed unknown while the state did not move, before the
#: commit gives up with a retryable error (the store answers reads but keeps failing writes).
COMMIT_ATTEMPTS = 3
#: Store errors that are a definite refusal made before anything was written: no resolving.
_REFUSED = (InvalidArgumentError, LimitExceededError, NotFoundError)

log = get_logger(__name__)


@dataclass(frozen=True)
class Committed:
    """What :meth:`StateHandle.commit` did."""

    version: int
    """The state version after the commit."""
    reply: Any
    """The reply recorded for the idempotency key (ours, or an earlier delivery's)."""
    replayed: bool
    """True when the key turned out committed already (a write of ours whose outcome was
    unknown and that had landed, or a duplicate delivery another writer committed first); the
    reply is the recorded one."""


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
        found = self.recorded(idempotency_key)
        return (False, None) if found is None else (True, found.reply)

    def recorded(self, idempotency_key: str, *, request: str | None = None) -> Recorded | None:
        """What ``idempotency_key`` recorded when it is committed, else None.

        With ``request`` (a :func:`~flame_agents.agent._journal.request_digest`), a key that
        was committed with a different request raises :class:`InvalidArgumentError`: a key
        names one invocation, and its retries send the same request.
        """
        journal = self.journal
        found = journal.recent.get(idempotency_key)
        if found is None:
            gen, loaded = self._sealed_loaded
            if gen != journal.gen:
                self._sealed_keys, loaded = {}, 0
            for index in range(loaded, journal.keys.sealed):
                for entry in self._read_chunk(journal.gen, KEYS_LOG, index):
                    item_key, item = Recorded.from_entry(entry)
                    self._sealed_keys[item_key] = item
            self._sealed_loaded = (journal.gen, journal.keys.sealed)
            found = self._sealed_keys.get(idempotency_key)
        if found is not None and None not in (request, found.request) and request != found.request:
            raise InvalidArgumentError(
                f"idempotency key {idempotency_key!r} was already used by a different request "
                f"in this session (state {self.key}); give each invocation its own key and "
                "reuse a key only to retry the invocation it names",
                idempotency_key=idempotency_key,
                state_key=self.key,
            )
        return found

    def committed_keys(self) -> list[str]:
        """Every committed idempotency key, in commit order (reads every sealed key chunk)."""
        journal = self.journal
        entries = full_log(journal, KEYS_LOG, lambda n, i: self._read_chunk(journal.gen, n, i))
        return [Recorded.from_entry(entry)[0] for entry in entries]

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
            history_json(ctx),
            schema=self.context_type.schema_version,
            chunk=journal.chunk,
            gen=journal.gen + 1,
        )
        fresh.keys = HistoryLog(
            tail=full_log(journal, KEYS_LOG, lambda n, i: self._read_chunk(journal.gen, n, i))
        )
        fresh.turns = journal.turns  # turns in progress (a pending interrupt) carry over
        self._write_base(fresh, expected_version=journal.version)
        log.info(
            "state migrated",
            key=self.key,
            from_schema=journal.schema,
            to_schema=fresh.schema,
            version=self.version,
        )
        return True

    def commit(
        self, work: C, *, idempotency_key: str, reply: Any, request: str | None = None
    ) -> Committed:
        """Commit ``work`` (a :meth:`working_copy` after the handler ran) as one patch.

        ``request`` is the digest of the request (recorded with the key). Raises
        :class:`ContextValidationError` when ``work`` is invalid and
        :class:`CommitConflictError` when another writer moved the state and did not commit
        ``idempotency_key``; in both cases the stored state is unchanged. When the store fails
        without saying whether the patch landed, the outcome is resolved by re-reading (see the
        module docstring); :class:`RetryableError` when it cannot be, so the caller retries with
        the same key.
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
            request=request,
        )
        data = encode_patch(patch)
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                version = self.store.append(self.key, data, expected_version=journal.version)
            except CommitConflictError:
                # A definite refusal: nothing of ours landed, another writer moved the state.
                return self._after_conflict(idempotency_key, request)
            except _REFUSED:
                raise
            except FlameAgentsError as exc:
                resolved = self._after_unknown(idempotency_key, request, journal.version, exc)
                if resolved is not None:
                    return resolved
                # Not committed and the state did not move: the same patch is still the one.
                log.warning(
                    "commit outcome unknown: not committed, writing again",
                    key=self.key,
                    idempotency_key=idempotency_key,
                    attempt=attempt,
                    error=str(exc),
                )
                journal = self.journal
                continue
            if version != journal.version + 1:
                # A store without conditional commits let another write in first: ours was
                # ignored by readers (Journal.apply) unless it is the one that landed.
                return self._after_conflict(idempotency_key, request)
            journal.apply(patch, version)
            self._ctx, self._scalars = validated, scalars
            if journal.patches >= self.compact_every:
                self.compact()
            return Committed(version, reply, replayed=False)
        raise RetryableError(
            f"the commit of idempotency key {idempotency_key!r} to {self.key} failed "
            f"{COMMIT_ATTEMPTS} times without landing (the state did not move); retry with "
            "the same idempotency key",
            key=self.key,
            idempotency_key=idempotency_key,
        )

    def record_progress(self, record: dict[str, Any]) -> int:
        """Append one turn progress record (:mod:`~flame_agents.agent._progress`) as a patch.

        Conditional on our version like a commit, and resolved the same way when the store
        leaves the outcome unknown: the record is looked for after a re-read. Raises
        :class:`CommitConflictError` when another writer moved the state (the turn must not go
        on from a state it did not read), and :class:`RetryableError` when the outcome cannot
        be established or when the writer that moved it was another delivery of the same turn
        (its retry replays that delivery's steps, or answers its committed reply). Returns the
        new version; the context is unchanged.
        """
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            journal = self.journal
            expected = journal.version
            patch = Patch(
                base=journal.base_version,
                prev=expected,
                schema=journal.schema,
                key="",
                progress=record,
            )
            try:
                data = encode_patch(patch)
                version = self.store.append(self.key, data, expected_version=expected)
            except CommitConflictError:
                turn = str(record["k"])
                ours = journal.turns.get(turn)
                self._reload_or_retryable(record)
                theirs = self.journal.turns.get(turn)
                if self.recorded(turn) is not None or (
                    None if theirs is None else theirs.to_json()
                ) != (None if ours is None else ours.to_json()):
                    # Another delivery of this very turn (a duplicate) moved it on: a retry
                    # with the key replays its steps, or answers its committed reply.
                    raise RetryableError(
                        f"another delivery of turn {turn!r} recorded progress or committed in "
                        f"{self.key} while this one ran; retry with the same idempotency key",
                        key=self.key,
                        idempotency_key=turn,
                    ) from None
                raise CommitConflictError(
                    f"state of {self.key} moved during the turn {turn!r} (another writer "
                    f"committed version {self.version}); invoke again to run it on the new state",
                    key=self.key,
                    version=self.version,
                ) from None
            except _REFUSED:
                raise
            except FlameAgentsError as exc:
                self._reload_or_retryable(record, cause=exc)
                if self._has_progress(record):
                    return self.version
                if self.version != expected:
                    raise RetryableError(
                        f"recording progress of turn {record['k']!r} in {self.key} failed "
                        f"({exc}) and the state moved meanwhile; retry with the same "
                        "idempotency key",
                        key=self.key,
                        idempotency_key=record["k"],
                    ) from exc
                log.warning(
                    "progress outcome unknown: not recorded, writing again",
                    key=self.key,
                    attempt=attempt,
                    error=str(exc),
                )
                continue
            if version != expected + 1:
                # A store without conditional commits let another write in first.
                self._reload_or_retryable(record)
                raise CommitConflictError(
                    f"state of {self.key} moved during the turn {record['k']!r}; invoke again",
                    key=self.key,
                    version=self.version,
                )
            journal.apply(patch, version)
            return version
        raise RetryableError(
            f"recording progress of turn {record['k']!r} in {self.key} failed "
            f"{COMMIT_ATTEMPTS} times; retry with the same idempotency key",
            key=self.key,
            idempotency_key=record["k"],
        )

    def _reload_or_retryable(
        self, record: dict[str, Any], *, cause: FlameAgentsError | None = None
    ) -> None:
        try:
            self.load()
        except FlameAgentsError as exc:
            raise RetryableError(
                f"the outcome of recording progress of turn {record['k']!r} in {self.key} is "
                f"unknown ({cause or 'conflict'}; re-reading the state failed: {exc}); retry "
                "with the same idempotency key",
                key=self.key,
                idempotency_key=record["k"],
            ) from (cause or exc)

    def _has_progress(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` is reflected in the turn's progress after a re-read."""
        progress = self.journal.turns.get(str(record["k"]))
        op = record["op"]
        if op == "drop":
            return progress is None
        if progress is None:
            return False
        if op == "intent":
            return record["name"] in progress.intents or record["name"] in progress.steps
        if op == "result":
            return record["name"] in progress.steps
        if op == "interrupt":
            return len(progress.interrupts) > int(record.get("index", 0))
        return len(progress.answers) > int(record.get("index", 0))

    def _after_conflict(self, idempotency_key: str, request: str | None) -> Committed:
        """The state moved under our commit: the answer is the key's record, or a conflict."""
        found = self._reread(idempotency_key, request, cause=None)
        if found is not None:
            return found
        log.warning("commit rejected: state moved", key=self.key, version=self.version)
        raise CommitConflictError(
            f"state of {self.key} moved during the commit (another writer committed version "
            f"{self.version}); the invocation did not take effect: invoke again to run it on "
            "the new state",
            key=self.key,
            version=self.version,
        )

    def _after_unknown(
        self, idempotency_key: str, request: str | None, expected: int, exc: FlameAgentsError
    ) -> Committed | None:
        """The store failed and may or may not have applied our patch: find out.

        Returns the commit when the key is committed, None when it is not and the state is
        still at ``expected`` (write the patch again); raises :class:`RetryableError` when the
        state moved without our key or cannot be read.
        """
        found = self._reread(idempotency_key, request, cause=exc)
        if found is not None:
            log.info(
                "commit outcome unknown: committed",
                key=self.key,
                idempotency_key=idempotency_key,
                error=str(exc),
            )
            return found
        if self.version == expected:
            return None
        raise RetryableError(
            f"the commit of idempotency key {idempotency_key!r} to {self.key} did not take "
            f"effect (the store failed: {exc}; another writer committed version "
            f"{self.version} meanwhile); retry with the same idempotency key to run it again",
            key=self.key,
            idempotency_key=idempotency_key,
        ) from exc

    def _reread(
        self, idempotency_key: str, request: str | None, *, cause: FlameAgentsError | None
    ) -> Committed | None:
        try:
            self.load()
            found = self.recorded(idempotency_key, request=request)
        except InvalidArgumentError:
            raise
        except FlameAgentsError as exc:
            # Whether the key committed is unknown, so neither success nor failure may be
            # reported: a retry with the same key finds it, or runs the invocation.
            raise RetryableError(
                f"the outcome of the commit of idempotency key {idempotency_key!r} to "
                f"{self.key} is unknown ({cause or 'conflict'}; re-reading the state failed: "
                f"{exc}); retry with the same idempotency key",
                key=self.key,
                idempotency_key=idempotency_key,
            ) from (cause or exc)
        if found is None:
            return None
        return Committed(self.version, found.reply, replayed=True)

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
        for log_name, index, data in seal(journal):
            self.store.write(chunk_key(self.key, journal.gen, log_name, index), data)
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
            "open_turns": len(journal.turns),
            "pending_interrupt": self.pending_interrupt_json(),
        }

    def pending_interrupt_json(self) -> dict[str, Any] | None:
        """The interrupt waiting for an answer: ``{"idempotency_key", "index", "payload"}``."""
        found = pending_interrupt(self.journal.turns)
        if found is None:
            return None
        key, index, payload = found
        return {"idempotency_key": key, "index": index, "payload": payload}
