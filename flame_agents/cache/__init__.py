"""The object cache client: versioned objects over Arrow Flight, Flame 0.6 compatible.

The object API (:func:`put_object`, :func:`get_object`, :func:`update_object`,
:func:`patch_object`, :func:`delete_objects`) stores Python objects exactly as flamepy does, so
either client reads what the other wrote. The raw API (:func:`put_raw`, :func:`update_raw`,
:func:`patch_raw`, :func:`fetch_raw`) stores bytes as-is, supports conditional commits
(``expected_version``) and incremental reads, and :func:`follow_raw` waits for an object's next
patches (polling a cache that cannot wait); the agent layer builds on it.

Without an explicit ``endpoint``, new objects go to the configured cache
(``FLAME_CACHE_ENDPOINT``, ``~/.flame/flame.yaml``) or the embedded runtime's; reads and
writes of existing objects always go to the endpoint in their :class:`ObjectRef`.
"""

from flame_agents.cache._follow import FollowReply, follow_raw
from flame_agents.cache._objects import (
    delete_objects,
    get_object,
    get_object_versioned,
    patch_object,
    put_object,
    reset_clients,
    update_object,
)
from flame_agents.cache._raw import RawObject, fetch_raw, patch_raw, put_raw, update_raw
from flame_agents.cache._ref import ObjectRef

__all__ = [
    "FollowReply",
    "ObjectRef",
    "RawObject",
    "delete_objects",
    "fetch_raw",
    "follow_raw",
    "get_object",
    "get_object_versioned",
    "patch_object",
    "patch_raw",
    "put_object",
    "put_raw",
    "reset_clients",
    "update_object",
    "update_raw",
]
