"""The flamepy-compatible object API: put, get, update, patch and delete Python objects."""

from __future__ import annotations

from typing import Any

import pyarrow.flight as flight

from flame_agents._wire.cache.commands import patch_command
from flame_agents._wire.cache.keys import check_key, check_pattern, check_prefix
from flame_agents._wire.cache.schemas import OPAQUE_SCHEMA, opaque_batch
from flame_agents.cache import _transport
from flame_agents.cache._codec import decode_data, encode_data, from_native, native_payload
from flame_agents.cache._local import Cached, Deserializer, LocalCache
from flame_agents.cache._ref import ObjectRef
from flame_agents.errors import InvalidArgumentError, ObjectNotFoundError

__all__ = [
    "default_endpoint",
    "delete_objects",
    "get_object",
    "get_object_versioned",
    "local_cache",
    "patch_object",
    "put_object",
    "reset_clients",
    "update_object",
]

local_cache = LocalCache()


def default_endpoint(endpoint: str | None) -> str:
    """``endpoint`` or, when None, the configured cache (or the embedded runtime's)."""
    if endpoint is not None:
        if not isinstance(endpoint, str) or "://" not in endpoint:
            raise InvalidArgumentError(
                f"cache endpoint must be a URL like grpc://127.0.0.1:9090, got {endpoint!r}"
            )
        return endpoint
    # Imported here: the embedded module may start a runtime, which only a call should do.
    from flame_agents.embedded import current_endpoints

    return str(current_endpoints().cache_endpoint)


def reset_clients() -> None:
    """Drop pooled Flight clients and the local object cache (e.g. after a runtime restart)."""
    _transport.reset_clients()
    local_cache.clear()


def _check_ref(ref: ObjectRef) -> None:
    if not isinstance(ref, ObjectRef):
        raise InvalidArgumentError(f"expected an ObjectRef, got {type(ref).__name__}")
    check_key(ref.key)


def _upload(
    endpoint: str, descriptor: flight.FlightDescriptor, obj: Any, *, op: str, key: str
) -> ObjectRef:
    native = native_payload(obj)
    if native is not None:
        return _transport.put(endpoint, descriptor, native.schema, native.batches, op=op, key=key)
    batch = opaque_batch(encode_data(obj))
    return _transport.put(endpoint, descriptor, OPAQUE_SCHEMA, [batch], op=op, key=key)


def put_object(key_prefix: str, obj: Any, *, endpoint: str | None = None) -> ObjectRef:
    """Store ``obj`` as a new object under ``<app>/<session>``; returns its ref (version 1).

    Tables, record batches and data frames are stored as native Arrow; anything else is
    encoded like flamepy (numpy/Arrow fast paths, cloudpickle otherwise).
    """
    check_prefix(key_prefix)
    target = default_endpoint(endpoint)
    descriptor = flight.FlightDescriptor.for_path(key_prefix)
    return _upload(target, descriptor, obj, op="put_object", key=key_prefix)


def update_object(ref: ObjectRef, obj: Any, *, expected_version: int | None = None) -> ObjectRef:
    """Replace the object's base with ``obj`` (its patches are dropped); returns the new ref.

    With ``expected_version`` (from :func:`get_object_versioned`), only if nobody wrote the
    object since: otherwise CommitConflictError and nothing is written. Not for Arrow tables.
    """
    _check_ref(ref)
    if expected_version is not None:
        if native_payload(obj) is not None:
            raise InvalidArgumentError(
                "update_object: expected_version is not supported for Arrow tables; "
                "store them without it"
            )
        from flame_agents.cache._raw import update_raw

        new_ref = update_raw(ref, encode_data(obj), expected_version=expected_version)
        local_cache.remove(ref.endpoint, ref.key)
        return new_ref
    descriptor = flight.FlightDescriptor.for_path(ref.key)
    new_ref = _upload(ref.endpoint, descriptor, obj, op="update_object", key=ref.key)
    local_cache.remove(ref.endpoint, ref.key)
    return new_ref


def patch_object(ref: ObjectRef, delta: Any) -> ObjectRef:
    """Append ``delta`` to the object's patches; returns the new ref (version + 1)."""
    _check_ref(ref)
    descriptor = flight.FlightDescriptor.for_command(patch_command(ref.key))
    batch = opaque_batch(encode_data(delta))
    new_ref = _transport.put(
        ref.endpoint, descriptor, OPAQUE_SCHEMA, [batch], op="patch_object", key=ref.key
    )
    local_cache.remove(ref.endpoint, ref.key)
    return new_ref


def _full(ref: ObjectRef) -> Cached:
    reply = _transport.get(ref.endpoint, ref.key, 0)
    if reply.mode == "native":
        cached = Cached(reply.version, from_native(reply.table))
    elif reply.mode == "full" and reply.base is not None:
        patches = [(v, decode_data(d)) for v, d in reply.patches]
        cached = Cached(reply.version, decode_data(reply.base), patches)
    else:
        raise ObjectNotFoundError(f"get_object: object not found: {ref.key}", key=ref.key)
    local_cache.put(ref.endpoint, ref.key, cached)
    return cached


def get_object(ref: ObjectRef, deserializer: Deserializer | None = None) -> Any:
    """The object's base, or ``deserializer(base, [patch values])`` when one is given.

    Uses the local cache: only changes since the cached version are downloaded. A ref with
    version 0 bypasses the cache.
    """
    return _read(ref, deserializer)[0]


def get_object_versioned(ref: ObjectRef) -> tuple[Any, ObjectRef]:
    """The object's base and a ref at the version read: pass that version as
    ``update_object(..., expected_version=)`` to make a read-modify-write safe."""
    value, version = _read(ref, None)
    return value, ObjectRef(ref.endpoint, ref.key, version)


def _read(ref: ObjectRef, deserializer: Deserializer | None) -> tuple[Any, int]:
    _check_ref(ref)
    cached = local_cache.get(ref.endpoint, ref.key) if ref.version != 0 else None
    if cached is None:
        full = _full(ref)
        return full.materialize(deserializer), full.version
    since = cached.version
    reply = _transport.get(ref.endpoint, ref.key, since)
    if reply.mode == "not_modified":
        return cached.materialize(deserializer), cached.version
    if reply.mode == "patches":
        patches = [(v, decode_data(d)) for v, d in reply.patches]
        updated = local_cache.apply_patches(ref.endpoint, ref.key, since, reply.version, patches)
        # Another reader moved the entry meanwhile: start over from a full copy.
        entry = updated or _full(ref)
        return entry.materialize(deserializer), entry.version
    if reply.mode == "native":
        fresh = Cached(reply.version, from_native(reply.table))
    else:
        fresh = Cached(
            reply.version,
            decode_data(reply.base or b""),
            [(v, decode_data(d)) for v, d in reply.patches],
        )
    local_cache.put(ref.endpoint, ref.key, fresh)
    return fresh.materialize(deserializer), fresh.version


def delete_objects(key_prefix: str, *, endpoint: str | None = None) -> None:
    """Delete one object, every object of ``<app>/<session>``, or of ``<app>/*``."""
    check_pattern(key_prefix)
    _transport.delete(default_endpoint(endpoint), key_prefix)
    local_cache.remove_matching(key_prefix)
