"""What the object cache's requests and replies say: do_put commands, do_get tickets, actions
and the PutResult (flame-wire §4.2), with our conditional writes.

- ``PATCH:<key>`` (Flame): append a patch to the object.
- ``PATCHIF:<expected>:<key>`` and ``PUTIF:<expected>:<key>`` (ours): append a patch, or replace
  the base, only if the object is at version ``<expected>`` (0: absent); otherwise the server
  rejects the write with the code ``version-conflict`` (:mod:`.rejections`) and writes nothing.
  A Flame cache does not know them; clients then fall back to check-then-write.
- Ticket ``<key>:<client_version>`` (no ``:`` means version 0).
- Action ``DELETE`` with a key, ``<app>/<session>`` or ``<app>/*`` as its body.
- PutResult ``app_metadata``: the BSON document ``{endpoint, key, version: int64}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import bson

from flame_agents._wire.cache.keys import CacheKey, parse_key
from flame_agents.errors import InvalidArgumentError

__all__ = [
    "CONDITIONAL_VERBS",
    "DELETE_ACTION",
    "PATCH",
    "PATCH_IF",
    "PUT_IF",
    "UNKNOWN_COMMAND",
    "PutCommand",
    "conditional_command",
    "decode_put_result",
    "encode_put_result",
    "parse_command",
    "parse_ticket",
    "patch_command",
    "ticket",
]

PATCH = "PATCH"
PATCH_IF = "PATCHIF"
PUT_IF = "PUTIF"
CONDITIONAL_VERBS = (PATCH_IF, PUT_IF)
"""Our conditional write commands (a Flame cache rejects them as unknown)."""

DELETE_ACTION = "DELETE"
"""The Flight action that deletes a key, a session's objects or an application's."""

UNKNOWN_COMMAND = "unknown-command"
"""Rejection code of a do_put command the server does not know (see :mod:`.rejections`)."""


@dataclass(frozen=True)
class PutCommand:
    """A parsed do_put command descriptor."""

    verb: str
    """:data:`PATCH`, :data:`PATCH_IF` or :data:`PUT_IF`."""
    key: CacheKey
    """The object written."""
    expected: int | None = None
    """The version the object must be at (conditional commands only)."""


def patch_command(key: str) -> bytes:
    """``PATCH:<key>``."""
    return f"{PATCH}:{key}".encode()


def conditional_command(verb: str, expected: int, key: str) -> bytes:
    """``PATCHIF:<expected>:<key>`` or ``PUTIF:<expected>:<key>``."""
    if verb not in CONDITIONAL_VERBS:
        raise InvalidArgumentError(f"{verb!r} is not a conditional command: use PATCHIF or PUTIF")
    return f"{verb}:{expected}:{key}".encode()


def _version(text: str, what: str) -> int:
    if not text.isdigit():
        raise InvalidArgumentError(f"{what} must be a non-negative integer, got {text!r}")
    return int(text)


def parse_command(command: bytes) -> PutCommand:
    """The do_put command ``command``; InvalidArgumentError if it is malformed, with
    ``rejection_code`` :data:`UNKNOWN_COMMAND` if its verb is not one of ours."""
    text = command.decode("utf-8", errors="replace")
    verb, _, rest = text.partition(":")
    expected: int | None = None
    if verb in CONDITIONAL_VERBS:
        expected_text, _, rest = rest.partition(":")
        expected = _version(expected_text, f"the expected version of {verb}")
    elif verb != PATCH:
        raise InvalidArgumentError(
            f"unknown do_put command {text[:60]!r}: expected PATCH:<key>, "
            "PATCHIF:<version>:<key> or PUTIF:<version>:<key>",
            command=text[:60],
            rejection_code=UNKNOWN_COMMAND,
        )
    return PutCommand(verb, parse_key(rest), expected)


def ticket(key: str, since: int) -> bytes:
    """The do_get ticket for ``key`` read by a client holding version ``since`` (0: none)."""
    return f"{key}:{since}".encode()


def parse_ticket(data: bytes) -> tuple[CacheKey, int]:
    """The key and client version of a do_get ticket (no ``:`` means version 0)."""
    text = data.decode("utf-8", errors="replace")
    key_text, sep, version_text = text.rpartition(":")
    if not sep:
        key_text, version_text = text, "0"
    since = _version(version_text, "the ticket's client version")
    return parse_key(key_text), since


def encode_put_result(endpoint: str, key: str, version: int) -> bytes:
    """The PutResult ``app_metadata`` naming the object written and its new version."""
    return bytes(bson.encode({"endpoint": endpoint, "key": key, "version": bson.Int64(version)}))


def decode_put_result(data: bytes) -> tuple[str, str, int]:
    """``(endpoint, key, version)`` from a PutResult's ``app_metadata``."""
    doc = bson.decode(bytes(data))
    return str(doc["endpoint"]), str(doc["key"]), int(doc["version"])
