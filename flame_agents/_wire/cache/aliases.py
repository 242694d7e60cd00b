"""Earlier endpoints of one cache: how refs made before a restart on new ports keep working.

Our extension of the Flame cache protocol. An ``ObjectRef`` names the cache endpoint that stored
the object. The embedded runtime keeps its objects across restarts, but a restart may have to
listen on other ports (the old ones taken); every ref made before it would then name a dead
address. The runtime records every endpoint its home's cache ever advertised, and:

- re-aims refs it hands out (a session's ``common_data``) at the current endpoint
  (:func:`retarget_ref`);
- answers the Flight action :data:`FORMER_ENDPOINTS_ACTION` with those endpoints as a JSON list,
  so a client holding an old ref learns, from the cache it is configured with, that the old
  address means this cache.

A Flame cache server does not know the action; clients then see no aliases.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass

__all__ = [
    "FORMER_ENDPOINTS_ACTION",
    "RefAliases",
    "decode_former",
    "encode_former",
    "retarget_ref",
]

FORMER_ENDPOINTS_ACTION = "flame-agents.former-endpoints"
"""Flight action type: the reply body is a JSON list of the cache's earlier endpoints."""


def encode_former(endpoints: Collection[str]) -> bytes:
    """The action's reply body for ``endpoints``."""
    return json.dumps(sorted(endpoints)).encode()


def decode_former(body: bytes) -> tuple[str, ...]:
    """Parse the action's reply body; anything but a JSON list of strings reads as none."""
    try:
        value = json.loads(body)
    except ValueError:
        return ()
    if not isinstance(value, list):
        return ()
    return tuple(e for e in value if isinstance(e, str))


def retarget_ref(data: bytes, former: Collection[str], current: str) -> bytes:
    """``data`` with its endpoint replaced by ``current`` if it is a BSON ObjectRef naming one of
    ``former``; any other bytes (a flamepy pickle, a ref to another cache) come back unchanged."""
    if not former or b"endpoint" not in data:
        return data  # cheap exit: most common_data is not a ref, and most runtimes never moved
    import bson
    from bson.errors import BSONError

    try:
        doc = bson.decode(bytes(data))
    except (BSONError, ValueError, TypeError, IndexError):
        return data
    if doc.get("endpoint") not in former:
        return data
    doc["endpoint"] = current
    return bytes(bson.encode(doc))


def retarget_url(url: str, former: Collection[str], current: str) -> str:
    """``url`` (``grpc://host:port/<key>``, a package in the cache) aimed at ``current`` if it
    names one of the ``former`` endpoints; any other url comes back unchanged."""
    for endpoint in former:
        if url.startswith(f"{endpoint}/"):
            return current + url[len(endpoint) :]
    return url


@dataclass(frozen=True)
class RefAliases:
    """The current endpoint of a cache and those it advertised before."""

    current: str
    """The endpoint the cache advertises now."""
    former: tuple[str, ...] = ()
    """Endpoints of earlier runs of the same cache (the same home)."""

    def retarget(self, data: bytes) -> bytes:
        """:func:`retarget_ref` with these endpoints."""
        return retarget_ref(data, self.former, self.current)
