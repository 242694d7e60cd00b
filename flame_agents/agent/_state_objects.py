"""Creating and deleting a session's state object (the base, and its sealed history chunks).

:func:`create_state` stores a new session's state; :func:`delete_state` removes one no session
references; :func:`initial_base` is the unsealed base of a context (for tests and tools).
Reading and committing live in :mod:`flame_agents.agent._state`.
"""

from __future__ import annotations

from typing import Any

from flame_agents._logging import get_logger
from flame_agents.agent._context import ContextModel
from flame_agents.agent._journal import (
    DEFAULT_CHUNK,
    KEYS_LOG,
    Journal,
    chunk_key,
    decode_base,
    encode_base,
    new_journal,
    seal,
)
from flame_agents.agent._store import StateStore
from flame_agents.errors import FlameAgentsError

__all__ = ["create_state", "delete_state", "history_json", "initial_base"]

log = get_logger(__name__)


def history_json(ctx: ContextModel) -> dict[str, list[Any]]:
    names = set(ctx.history_fields())
    dumped: dict[str, list[Any]] = ctx.model_dump(mode="json", include=names) if names else {}
    return dumped


def _initial_journal(ctx: ContextModel, chunk: int) -> Journal:
    type(ctx).validate_state(ctx.model_dump(), what="initial context")
    return new_journal(
        ctx.scalar_state(), history_json(ctx), schema=type(ctx).schema_version, chunk=chunk
    )


def initial_base(ctx: ContextModel, *, chunk: int = DEFAULT_CHUNK) -> bytes:
    """Base bytes of a new state whose context starts as ``ctx`` (validated first), unsealed.

    Its histories stay whole in the base until the first compaction; sessions are created with
    :func:`create_state`, which seals them at once.
    """
    return encode_base(_initial_journal(ctx, chunk))


def create_state(
    store: StateStore, prefix: str, ctx: ContextModel, *, chunk: int = DEFAULT_CHUNK
) -> str:
    """Store the state object of a new session under ``prefix``; returns its key.

    The initial histories are sealed into chunks as a compaction seals them, so the base holds
    less than a chunk's worth of each history from the start, whatever ``ctx`` holds. The base
    goes first (the store names the object, and chunk keys derive from that name), then its
    chunks: nobody knows the key before this returns, so no reader sees the base without them.
    """
    journal = _initial_journal(ctx, chunk)
    chunks = seal(journal)
    key = store.create(prefix, encode_base(journal))
    try:
        for log_name, index, data in chunks:
            store.write(chunk_key(key, journal.gen, log_name, index), data)
    except BaseException:
        delete_state(store, key)
        raise
    return key


def delete_state(store: StateStore, key: str) -> None:
    """Delete a state object that no session references, and its chunks (best effort).

    For cleaning up after a session that could not be created; logs what it could not delete.
    """
    try:
        fetched = store.fetch(key)
        keys: list[str] = []
        if fetched.base is not None:
            journal = decode_base(fetched.base, version=fetched.base_version)
            logs = [*journal.histories.items(), (KEYS_LOG, journal.keys)]
            for name, hlog in logs:
                keys += [chunk_key(key, journal.gen, name, i) for i in range(hlog.sealed)]
        for target in [*keys, key]:
            store.delete(target)
    except FlameAgentsError as exc:
        log.warning("could not delete orphan state", key=key, error=str(exc))
