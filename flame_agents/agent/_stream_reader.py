"""The client side of a turn's stream: :class:`StreamReader` yields its items in order.

It follows the stream's segments with the cache's follow read (one call waits on the server
until the next patch lands; against a cache without it, polling with a backoff), from item
``after`` on, until the end marker, or until ``finished()`` says the turn's task is over (then
it reads once more and stops: a task that ended without an end marker, e.g. it failed before
its handler ran, leaves none).

Items come back as the pydantic model named by the type recorded with them when this process
can import it, else as their plain JSON value.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from flame_agents._logging import get_logger
from flame_agents.agent._stream_format import (
    FINAL,
    INTERRUPTED,
    Record,
    decode_record,
    segment_key,
)
from flame_agents.cache import ObjectRef, delete_objects, follow_raw
from flame_agents.errors import FlameAgentsError, InvalidArgumentError

__all__ = ["DEFAULT_WAIT", "StreamReader", "item_model"]

DEFAULT_WAIT = 0.5
"""Seconds one follow waits on the server before the reader checks ``finished()`` again."""

_log = get_logger(__name__)
_models: dict[str, type[BaseModel] | None] = {}


def item_model(name: str) -> type[BaseModel] | None:
    """The pydantic model ``module:qualname`` names, if this process can import it."""
    if name in _models:
        return _models[name]
    model: type[BaseModel] | None = None
    module, _, qualname = name.partition(":")
    if module != "__main__" and qualname:
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            obj = None
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            model = obj
    _models[name] = model
    return model


def _item(type_name: str | None, value: Any) -> Any:
    if type_name is None:
        return value
    model = item_model(type_name)
    if model is None:
        return value
    try:
        return model.model_validate(value)
    except ValidationError:
        return value  # the class changed since the item was emitted: keep what was sent


class StreamReader:
    """The items of the stream under ``prefix`` at the cache ``endpoint``, in emit order.

    Args:
        endpoint: The cache holding the stream (the session's state endpoint).
        prefix: The stream's key prefix (``stream_key(state_key, idempotency_key)``).
        after: Skip the stream's first ``after`` items (resume from an offset).
        finished: Called between follows; once it returns True the reader reads once more
            and stops even without an end marker.
        wait: Seconds each follow waits on the server.
        delete_at_end: Delete the stream once it ended for good (``interrupted`` is a pause:
            the resumed turn goes on in the same stream).
    """

    def __init__(
        self,
        endpoint: str,
        prefix: str,
        *,
        after: int = 0,
        finished: Callable[[], bool] | None = None,
        wait: float = DEFAULT_WAIT,
        delete_at_end: bool = False,
    ) -> None:
        if not isinstance(after, int) or after < 0:
            raise InvalidArgumentError(f"after must be a non-negative int, got {after!r}")
        self.endpoint = endpoint
        self.prefix = prefix
        self.offset = after
        """Stream index of the next item to yield (items before it were skipped or yielded)."""
        self.outcome: str | None = None
        """The end marker's outcome once read (``reply``, ``failed``, ``interrupted``, ...)."""
        self._finished = finished
        self._wait = wait
        self._delete_at_end = delete_at_end
        self._closed = False

    def close(self) -> None:
        """Stop following after the current follow (the turn itself goes on)."""
        self._closed = True

    def __iter__(self) -> Iterator[Any]:
        seg, version, index = 0, 0, 0
        draining = False
        while not self._closed:
            key = segment_key(self.prefix, seg)
            wait = 0.0 if draining else self._wait
            reply = follow_raw(ObjectRef(self.endpoint, key, 0), since_version=version, wait=wait)
            records: list[Record] = []
            for row_version, kind, data in reply.rows:
                record = decode_record(data, key=key)
                if kind == "base":
                    index = record.first or 0  # a full answer: count from the segment's start
                records.append(record)
                version = row_version
            nxt: int | None = None
            for record in records:
                if record.resume:
                    self.outcome = None
                for type_name, value in record.items:
                    if index >= self.offset:
                        self.offset = index + 1
                        yield _item(type_name, value)
                    index += 1
                if record.end is not None:
                    self.outcome = record.end
                if record.next is not None:
                    nxt = record.next
            if self.outcome is not None:
                self._ended()
                return
            if nxt is not None:
                seg, version = nxt, 0
                continue
            if records:
                continue
            if draining:
                return
            if self._finished is not None and self._finished():
                draining = True

    def _ended(self) -> None:
        if self.outcome == INTERRUPTED:
            _log.info("stream_paused", prefix=self.prefix)
        if self._delete_at_end and self.outcome in FINAL:
            try:
                delete_objects(self.prefix, endpoint=self.endpoint)
            except FlameAgentsError as exc:
                _log.warning("stream_delete_failed", prefix=self.prefix, error=str(exc))
