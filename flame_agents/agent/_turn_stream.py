"""``TurnStream``: what ``AgentSession.stream`` returns, one invocation and its emitted items.

The invocation runs on a background thread with the session's retries and idempotency key
(as ``invoke`` would); the caller iterates the turn's items as the handler emits them, and
reads ``reply`` once the stream has ended.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from flame_agents._logging import get_logger
from flame_agents.agent._envelope import ReplyEnvelope
from flame_agents.agent._stream_format import FINAL, REPLY, scan_stream
from flame_agents.agent._stream_reader import StreamReader
from flame_agents.cache import delete_objects
from flame_agents.errors import FlameAgentsError

__all__ = ["TurnStream"]

_log = get_logger(__name__)


class TurnStream:
    """The items a turn emits, in order, then its reply.

    Iterate it for the items (each a pydantic model when this process can import its class,
    else its JSON value); then ``reply`` is the typed reply, or raises the invocation's error
    (``TaskFailedError``, ``Interrupted``, ``Cancelled``, ...). ``offset`` is the stream index
    after the last item yielded: pass it as ``after=`` to a later ``stream()`` with the same
    ``key`` to go on from there.
    """

    def __init__(
        self,
        *,
        key: str,
        endpoint: str,
        prefix: str,
        send: Callable[[], ReplyEnvelope],
        to_reply: Callable[[ReplyEnvelope], Any],
        after: int = 0,
        reconnect: bool = False,
        cancel: Callable[[], object] | None = None,
    ) -> None:
        self.key = key
        """The invocation's idempotency key (reuse it to reconnect)."""
        self.prefix = prefix
        """The stream object's key prefix in the object cache."""
        self._to_reply = to_reply
        self._cancel = cancel
        self._done = threading.Event()
        self._envelope: ReplyEnvelope | None = None
        self._error: BaseException | None = None
        if reconnect:
            _discard_ended_run(endpoint, prefix)
        self._reader = StreamReader(
            endpoint, prefix, after=after, finished=self._done.is_set, delete_at_end=True
        )
        self._thread = threading.Thread(
            target=self._invoke, args=(send,), name=f"stream-{key[:12]}", daemon=True
        )
        self._thread.start()

    def _invoke(self, send: Callable[[], ReplyEnvelope]) -> None:
        try:
            self._envelope = send()
        except BaseException as exc:  # handed to the caller by `reply`
            self._error = exc
        finally:
            self._done.set()

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._reader
        except KeyboardInterrupt:
            # Ctrl-C while following: the turn is cancelled, not left running unseen.
            if self._cancel is not None and not self._done.is_set():
                try:
                    self._cancel()
                except FlameAgentsError as exc:
                    _log.warning("stream_cancel_failed", key=self.key, error=str(exc))
            raise

    def __enter__(self) -> TurnStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def offset(self) -> int:
        """Stream index after the last item yielded (or skipped with ``after=``)."""
        return self._reader.offset

    @property
    def outcome(self) -> str | None:
        """The stream's end marker once read: ``reply``, ``failed``, ``interrupted``,
        ``cancelled``; None before (or when the turn ended without one)."""
        return self._reader.outcome

    @property
    def done(self) -> bool:
        """Whether the invocation has finished."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the invocation to finish (items not read are left in the stream)."""
        return self._done.wait(timeout)

    @property
    def reply(self) -> Any:
        """The typed reply; waits for the invocation, and raises its error if it failed."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._envelope is not None
        return self._to_reply(self._envelope)

    def close(self) -> None:
        """Stop following the items (the turn goes on; reconnect with ``key`` to read on)."""
        self._reader.close()


def _discard_ended_run(endpoint: str, prefix: str) -> None:
    """Before re-sending a turn by a key given again: a stream its earlier run ended
    ``failed``/``cancelled`` describes a run that is over (the turn runs again, afresh), so
    it goes; a running turn's, a replied one's or an interrupted one's is read as it is."""
    try:
        scan = scan_stream(endpoint, prefix)
        if scan.found and scan.end in FINAL and scan.end != REPLY:
            delete_objects(prefix, endpoint=endpoint)
    except FlameAgentsError as exc:
        _log.warning("stream_check_failed", prefix=prefix, error=str(exc))
