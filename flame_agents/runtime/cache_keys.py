"""Object cache keys on the server: Flame's key grammar, checked so no key can name a path
outside the store root.

Grammar (flame-wire §4.1): ``<app>/<session>/<object_id>`` for an object, ``<app>/<session>`` for
a prefix, ``<app>/*`` (DELETE only) for every session of an application.
"""

from __future__ import annotations

from dataclasses import dataclass

from flame_agents.errors import InvalidArgumentError

__all__ = ["MAX_COMPONENT_BYTES", "WILDCARD", "CacheKey", "parse_key"]

WILDCARD = "*"
"""The session component that matches every session of an application (DELETE only)."""

MAX_COMPONENT_BYTES = 200
"""Each component becomes a file or directory name; stay well below the usual 255-byte limit."""

_NAMES = ("application", "session", "object id")


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
    parts = text.split("/")
    shapes = []
    if allow_prefix:
        shapes.append("'<app>/<session>'")
    if allow_object:
        shapes.append("'<app>/<session>/<object_id>'")
    if allow_wildcard:
        shapes.append("'<app>/*'")
    if len(parts) not in (2, 3) or (len(parts) == 3 and not allow_object):
        raise InvalidArgumentError(
            f"invalid key {text!r}: expected {' or '.join(shapes)}", key=text
        )
    for value, what in zip(parts, _NAMES, strict=False):
        if value == WILDCARD and what == "session" and len(parts) == 2 and allow_wildcard:
            continue
        if WILDCARD in value:
            raise InvalidArgumentError(
                f"invalid key {text!r}: '*' is only allowed as the whole session component of "
                "a DELETE pattern '<app>/*'",
                key=text,
            )
        _check_component(value, what, text)
    if len(parts) == 2:
        if parts[1] != WILDCARD and not allow_prefix:
            raise InvalidArgumentError(
                f"invalid key {text!r}: expected {' or '.join(shapes)}", key=text
            )
        return CacheKey(parts[0], parts[1])
    return CacheKey(parts[0], parts[1], parts[2])
