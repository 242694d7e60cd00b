"""ObjectRef: where an object lives and which version a reader saw (BSON on the Flame wire)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bson
from bson.errors import BSONError

from flame_agents.errors import InvalidArgumentError

__all__ = ["ObjectRef"]


@dataclass(frozen=True)
class ObjectRef:
    """A reference to a cached object, as Flame passes it in ``common_data`` and task outputs.

    ``version`` 0 means "unknown": reading it bypasses the local cache.
    """

    endpoint: str
    """The cache server that holds the object (the one it advertised), e.g. ``grpc://h:9090``."""
    key: str
    """``<app>/<session>/<object_id>``."""
    version: int = 0
    """The object's version when this ref was made (1 after a put, +1 per update/patch)."""

    def encode(self) -> bytes:
        """BSON ``{endpoint, key, version}``; the version is int32 when it fits, like flamepy."""
        return bytes(
            bson.encode({"endpoint": self.endpoint, "key": self.key, "version": int(self.version)})
        )

    @classmethod
    def decode(cls, data: bytes) -> ObjectRef:
        """Parse the BSON written by :meth:`encode` (or by flamepy, or a Flame cache server)."""
        try:
            doc: dict[str, Any] = bson.decode(bytes(data))
            return cls(str(doc["endpoint"]), str(doc["key"]), int(doc.get("version", 0)))
        except (KeyError, TypeError, ValueError, BSONError) as exc:
            raise InvalidArgumentError(
                f"not an encoded ObjectRef (BSON with endpoint, key, version): {exc}"
            ) from exc
