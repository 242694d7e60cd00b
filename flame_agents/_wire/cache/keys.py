"""Object cache keys: Flame's key grammar (flame-wire §4.1), parsed the same way by our client
(before any network call) and our server (so no key can name a path outside its store root).

``<app>/<session>/<object_id>`` names an object, ``<app>/<session>`` a prefix (where a put
creates a new object, and what a DELETE of a session removes), and ``<app>/*`` every session of
an application (DELETE only). Every component is non-empty, free of ``..``, ``\\`` and NUL, not
``.``, and at most :data:`MAX_COMPONENT_BYTES` long (it becomes a file name on the server).
"""

from __future__ import annotations

from dataclasses import dataclass

from flame_agents.errors import InvalidArgumentError

__all__ = [
    "MAX_COMPONENT_BYTES",
    "WILDCARD",
    "CacheKey",
    "check_key",
    "check_key_or_prefix",
    "check_pattern",
    "check_prefix",
    "parse_key",
]

WILDCARD = "*"
"""The session component that matches every session of an application (DELETE only)."""

MAX_COMPONENT_BYTES = 200
"""Each component becomes a file or directory name; stay well below the usual 255-byte limit."""

_NAMES = ("application", "session", "object id")
_PREFIX = "'<app>/<session>'"
_OBJECT = "'<app>/<session>/<object_id>'"
_PATTERN = "'<app>/*'"


@dataclass(frozen=True)
class CacheKey:
    """A parsed, validated key: a full object key, a prefix, or an ``<app>/*`` pattern."""

    app: str
    session: str
    object_id: str | None = None

    @property
    def is_wildcard(self) -> bool:
        """True for ``<app>/*``."""
        return self.session == WILDCARD

    @property
    def prefix(self) -> str:
        """``<app>/<session>``."""
        return f"{self.app}/{self.session}"

    def __str__(self) -> str:
        return self.prefix if self.object_id is None else f"{self.prefix}/{self.object_id}"

    def with_object(self, object_id: str) -> CacheKey:
        """The full key for ``object_id`` under this prefix."""
        return CacheKey(self.app, self.session, object_id)

    def matches(self, key: CacheKey) -> bool:
        """Whether the full object key ``key`` is selected by this key, prefix or pattern."""
        if self.app != key.app:
            return False
        if self.is_wildcard:
            return True
        if self.session != key.session:
            return False
        return self.object_id is None or self.object_id == key.object_id


def _check_component(value: str, what: str, text: str) -> None:
    if not value:
        raise InvalidArgumentError(f"invalid key {text!r}: the {what} is empty", key=text)
    if ".." in value or "\\" in value or "\x00" in value or value == ".":
        raise InvalidArgumentError(
            f"invalid key {text!r}: the {what} {value!r} contains '..', '\\', NUL or is '.'",
            key=text,
        )
    if len(value.encode("utf-8")) > MAX_COMPONENT_BYTES:
        raise InvalidArgumentError(
            f"invalid key {text!r}: the {what} is longer than {MAX_COMPONENT_BYTES} bytes",
            key=text,
        )


def parse_key(
    text: str,
    *,
    allow_prefix: bool = False,
    allow_object: bool = True,
    allow_wildcard: bool = False,
) -> CacheKey:
    """Parse and validate ``text``; raise InvalidArgumentError saying what is wrong.

    ``allow_prefix`` accepts ``<app>/<session>``; ``allow_object`` accepts full keys;
    ``allow_wildcard`` accepts ``<app>/*`` (and only that use of ``*``).
    """
    shapes = [
        shape for shape, allowed in ((_PREFIX, allow_prefix), (_OBJECT, allow_object)) if allowed
    ]
    if allow_wildcard:
        shapes.append(_PATTERN)
    expected = " or ".join(shapes)
    if not isinstance(text, str):
        raise InvalidArgumentError(
            f"a cache key must be a str like {expected}, got {type(text).__name__}"
        )
    parts = text.split("/")
    if len(parts) not in (2, 3) or (len(parts) == 3 and not allow_object):
        raise InvalidArgumentError(f"invalid key {text!r}: expected {expected}", key=text)
    for value, what in zip(parts, _NAMES, strict=False):
        if value == WILDCARD and what == "session" and len(parts) == 2 and allow_wildcard:
            continue
        if WILDCARD in value:
            raise InvalidArgumentError(
                f"invalid key {text!r}: '*' is only allowed as the whole session component of "
                f"a DELETE pattern '<app>/*' (expected {expected})",
                key=text,
            )
        _check_component(value, what, text)
    if len(parts) == 2:
        if parts[1] != WILDCARD and not allow_prefix:
            raise InvalidArgumentError(f"invalid key {text!r}: expected {expected}", key=text)
        return CacheKey(parts[0], parts[1])
    return CacheKey(parts[0], parts[1], parts[2])


def check_prefix(text: str) -> str:
    """Accept only ``<app>/<session>`` (where a put creates a new object with a new id)."""
    parse_key(text, allow_prefix=True, allow_object=False)
    return text


def check_key(text: str) -> str:
    """Accept only a full key ``<app>/<session>/<object_id>``."""
    parse_key(text)
    return text


def check_key_or_prefix(text: str) -> str:
    """Accept a full key or a ``<app>/<session>`` prefix (no wildcard)."""
    parse_key(text, allow_prefix=True)
    return text


def check_pattern(text: str) -> str:
    """Accept what a DELETE takes: a key, ``<app>/<session>`` or ``<app>/*``."""
    parse_key(text, allow_prefix=True, allow_wildcard=True)
    return text
