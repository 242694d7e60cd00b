"""The raw object API for the agent layer: bytes stored as-is (no pickling), conditional
commits, and incremental reads that return only the patches after a known version.

Conditional commits use our cache's ``PATCHIF:<expected>:<key>`` / ``PUTIF:<expected>:<key>``
commands (:mod:`flame_agents._wire.cache.commands`), which apply atomically. A Flame server
rejects those commands; against one the client falls back to check-then-write (read at the
expected version, then write and verify the resulting version), which detects but cannot always
prevent a concurrent writer. Which rejection means "no such command" is decided by its code
(:func:`~flame_agents._wire.cache.rejections.is_unsupported_command`), never by its text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.flight as flight

from flame_agents._logging import get_logger
from flame_agents._wire.cache.commands import (
    PATCH_IF,
    PUT_IF,
    conditional_command,
    patch_command,
)
from flame_agents._wire.cache.keys import check_key, check_key_or_prefix
from flame_agents._wire.cache.rejections import is_unsupported_command
from flame_agents._wire.cache.schemas import OPAQUE_SCHEMA, opaque_batch
from flame_agents.cache import _transport
from flame_agents.cache._objects import default_endpoint, local_cache
from flame_agents.cache._ref import ObjectRef
from flame_agents.errors import (
    CacheError,
    CommitConflictError,
    InvalidArgumentError,
    ObjectNotFoundError,
)

__all__ = ["RawObject", "fetch_raw", "patch_raw", "put_raw", "update_raw"]

_log = get_logger(__name__)


@dataclass(frozen=True)
class RawObject:
    """What :func:`fetch_raw` returns.

    A full answer has ``base`` (at ``base_version``) and every patch after it. When
    ``since_version`` was given and still valid, ``base`` is None (``base_version`` 0) and
    ``patches`` holds only the patches after ``since_version`` (none if unchanged).
    """

    key: str
    version: int
    base: bytes | None
    base_version: int
    patches: list[tuple[int, bytes]] = field(default_factory=list)


def _check_data(data: bytes) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError(f"raw data must be bytes, got {type(data).__name__}")
    return bytes(data)


def _check_expected(expected_version: int | None) -> None:
    if expected_version is not None and (
        not isinstance(expected_version, int) or expected_version < 0
    ):
        raise InvalidArgumentError(
            f"expected_version must be a non-negative int or None, got {expected_version!r}"
        )


def _send(ref: ObjectRef, descriptor: flight.FlightDescriptor, data: bytes, op: str) -> ObjectRef:
    new_ref = _transport.put(
        ref.endpoint, descriptor, OPAQUE_SCHEMA, [opaque_batch(data)], op=op, key=ref.key
    )
    local_cache.remove(ref.endpoint, ref.key)
    return new_ref


def put_raw(key_or_prefix: str, data: bytes, *, endpoint: str | None = None) -> ObjectRef:
    """Store ``data`` as-is: a new object under ``<app>/<session>``, or at a full key
    (creating or replacing it). Returns the ref with the new version."""
    check_key_or_prefix(key_or_prefix)
    body = _check_data(data)
    target = default_endpoint(endpoint)
    descriptor = flight.FlightDescriptor.for_path(key_or_prefix)
    return _transport.put(
        target, descriptor, OPAQUE_SCHEMA, [opaque_batch(body)], op="put_raw", key=key_or_prefix
    )


def update_raw(ref: ObjectRef, data: bytes, *, expected_version: int | None = None) -> ObjectRef:
    """Replace the base with ``data`` (dropping patches).

    With ``expected_version``, only if the object is at that version (0: does not exist);
    otherwise CommitConflictError and nothing is written.
    """
    check_key(ref.key)
    body = _check_data(data)
    _check_expected(expected_version)
    if expected_version is None:
        return _send(ref, flight.FlightDescriptor.for_path(ref.key), body, "update_raw")
    command = conditional_command(PUT_IF, expected_version, ref.key)
    return _conditional(ref, command, body, expected_version, "update_raw", patch=False)


def patch_raw(ref: ObjectRef, data: bytes, *, expected_version: int | None = None) -> ObjectRef:
    """Append ``data`` as a patch; with ``expected_version``, only if the object is at that
    version (else CommitConflictError, nothing written). ObjectNotFoundError if absent."""
    check_key(ref.key)
    body = _check_data(data)
    _check_expected(expected_version)
    if expected_version is None:
        descriptor = flight.FlightDescriptor.for_command(patch_command(ref.key))
        return _send(ref, descriptor, body, "patch_raw")
    command = conditional_command(PATCH_IF, expected_version, ref.key)
    return _conditional(ref, command, body, expected_version, "patch_raw", patch=True)


def _conditional(
    ref: ObjectRef, command: bytes, data: bytes, expected: int, op: str, *, patch: bool
) -> ObjectRef:
    if ref.endpoint not in _transport.unconditional_endpoints:
        try:
            return _send(ref, flight.FlightDescriptor.for_command(command), data, op)
        except (InvalidArgumentError, CacheError) as exc:
            if not is_unsupported_command(exc):
                raise
            _log.warning("cache_conditional_unsupported", endpoint=ref.endpoint, error=str(exc))
            _transport.unconditional_endpoints.add(ref.endpoint)
    return _check_then_write(ref, data, expected, op, patch=patch)


def _check_then_write(
    ref: ObjectRef, data: bytes, expected: int, op: str, *, patch: bool
) -> ObjectRef:
    """Best effort for servers without conditional commands (see the module docstring)."""
    try:
        current = _transport.get(ref.endpoint, ref.key, expected).version if expected else 0
    except ObjectNotFoundError:
        current = 0
    if expected == 0 and current == 0 and patch:
        raise ObjectNotFoundError(f"{op}: object not found: {ref.key}", key=ref.key)
    if current != expected:
        raise CommitConflictError(
            f"{op}: version conflict (expected {expected}, current {current}) on {ref.key}",
            key=ref.key,
            expected_version=expected,
            current_version=current,
        )
    descriptor = (
        flight.FlightDescriptor.for_command(patch_command(ref.key))
        if patch
        else flight.FlightDescriptor.for_path(ref.key)
    )
    new_ref = _send(ref, descriptor, data, op)
    if new_ref.version != expected + 1:
        raise CommitConflictError(
            f"{op}: version conflict (expected {expected}, current {new_ref.version - 1}) on "
            f"{ref.key}: another writer committed concurrently",
            key=ref.key,
            expected_version=expected,
            current_version=new_ref.version - 1,
        )
    return new_ref


def fetch_raw(ref: ObjectRef, *, since_version: int = 0) -> RawObject:
    """The stored bytes: base and patches, or only patches after ``since_version`` (> 0)."""
    check_key(ref.key)
    _check_expected(since_version)
    reply = _transport.get(ref.endpoint, ref.key, since_version)
    if reply.mode == "native":
        raise CacheError(
            f"fetch_raw: {ref.key} is a native Arrow table; read it with get_object", key=ref.key
        )
    if reply.mode == "not_modified":
        return RawObject(ref.key, since_version, None, 0, [])
    if reply.mode == "patches":
        return RawObject(ref.key, reply.version, None, 0, reply.patches)
    return RawObject(ref.key, reply.version, reply.base, reply.base_version, reply.patches)
