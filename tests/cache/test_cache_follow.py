"""The follow read: an object's next patches as soon as they land, and polling where a cache
does not serve it."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from cache_wire_helpers import ServerFactory

from flame_agents._wire.cache.follow import FOLLOW_ACTION, FollowRequest, encode_follow
from flame_agents._wire.cache.keys import parse_key
from flame_agents._wire.cache.rejections import read_rejection
from flame_agents.cache import (
    ObjectRef,
    _transport,
    delete_objects,
    follow_raw,
    patch_raw,
    put_object,
    update_raw,
)
from flame_agents.errors import FlameAgentsError, InvalidArgumentError
from flame_agents.runtime.cache.follow import Follows
from flame_agents.runtime.cache.server import NO_FOLLOW_ENV, CacheServer


def _later(delay: float, fn: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        fn()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_follow_returns_the_patches_after_a_version(server: CacheServer) -> None:
    """since 0: the base and every patch; since v: the patches after v; nothing new: no rows."""
    ref = ObjectRef(server.endpoint, "a/s/obj", 0)
    update_raw(ref, b"base", expected_version=0)
    patch_raw(ref, b"p2")
    patch_raw(ref, b"p3")
    full = follow_raw(ref)
    assert (full.found, full.version) == (True, 3)
    assert full.rows == [(1, "base", b"base"), (2, "patch", b"p2"), (3, "patch", b"p3")]
    assert follow_raw(ref, since_version=2).rows == [(3, "patch", b"p3")]
    same = follow_raw(ref, since_version=3, wait=0.05)
    assert (same.found, same.version, same.rows) == (True, 3, [])


def test_follow_waits_for_the_next_patch(server: CacheServer) -> None:
    """A follow at the current version answers when a patch lands, not at the end of its wait."""
    ref = ObjectRef(server.endpoint, "a/s/obj", 0)
    update_raw(ref, b"base", expected_version=0)
    writer = _later(0.2, lambda: patch_raw(ref, b"next"))
    start = time.monotonic()
    reply = follow_raw(ref, since_version=1, wait=8)
    writer.join()
    assert reply.rows == [(2, "patch", b"next")]
    assert time.monotonic() - start < 6


def test_follow_waits_for_the_object_to_appear(server: CacheServer) -> None:
    """A follow of a missing key answers found=false after its wait, or the object once made."""
    ref = ObjectRef(server.endpoint, "a/s/later", 0)
    assert not follow_raw(ref, wait=0.05).found
    writer = _later(0.2, lambda: update_raw(ref, b"made", expected_version=0))
    reply = follow_raw(ref, wait=8)
    writer.join()
    assert reply.found and reply.rows == [(1, "base", b"made")]


def test_delete_wakes_a_follow(server: CacheServer) -> None:
    """Deleting a followed object answers its follow at once (found false)."""
    ref = ObjectRef(server.endpoint, "a/s/gone", 0)
    update_raw(ref, b"base", expected_version=0)
    deleter = _later(0.2, lambda: delete_objects("a/s", endpoint=server.endpoint))
    start = time.monotonic()
    reply = follow_raw(ref, since_version=1, wait=8)
    deleter.join()
    assert not reply.found and time.monotonic() - start < 6


def test_follow_of_a_native_table_is_invalid(server: CacheServer) -> None:
    """Native Arrow objects have no patches to follow: invalid argument."""
    ref = put_object("a/s", pa.table({"x": [1]}), endpoint=server.endpoint)
    with pytest.raises(InvalidArgumentError, match="native Arrow"):
        follow_raw(ObjectRef(server.endpoint, ref.key, 0))


def test_malformed_follow_bodies_are_invalid(client: flight.FlightClient) -> None:
    """A body that is not the JSON request, or names a bad key, is INVALID_ARGUMENT."""
    for body in (b"nope", json.dumps({"key": "a/s"}).encode(), encode_follow("a/../x", 0, 0)):
        with pytest.raises(pa.ArrowInvalid):
            list(client.do_action(flight.Action(FOLLOW_ACTION, body)))


def test_unknown_actions_are_rejected_with_the_unknown_command_code(server: CacheServer) -> None:
    """An action the server does not serve carries the code unknown-command (for callers
    that ask for structured rejections), so clients can tell "not served" from a bad call."""
    options = flight.FlightCallOptions(headers=[(b"flame-agents-rejections", b"json")])
    conn = flight.FlightClient(server.endpoint)
    try:
        with pytest.raises(flight.FlightError) as info:
            list(conn.do_action(flight.Action("no-such-action", b""), options))
    finally:
        conn.close()
    rejection = read_rejection(info.value)
    assert rejection is not None and rejection.code == "unknown-command"


def test_client_polls_a_cache_without_the_follow_read(
    start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a cache that rejects the follow read, follow_raw gives the same answers by
    polling, and remembers the endpoint."""
    monkeypatch.setenv(NO_FOLLOW_ENV, "1")
    server = start_server()
    assert server.follows is None
    ref = ObjectRef(server.endpoint, "a/s/polled", 0)
    assert not follow_raw(ref, wait=0.05).found
    assert server.endpoint in _transport.unfollowable_endpoints
    writer = _later(0.1, lambda: update_raw(ref, b"base", expected_version=0))
    assert follow_raw(ref, wait=8).rows == [(1, "base", b"base")]
    writer.join()
    writer = _later(0.1, lambda: patch_raw(ref, b"p"))
    assert follow_raw(ref, since_version=1, wait=8).rows == [(2, "patch", b"p")]
    writer.join()
    assert follow_raw(ref, since_version=2, wait=0.05).rows == []


def test_follows_past_the_limit_answer_at_once_as_busy() -> None:
    """Beyond max_waiters a follow does not wait: it answers at once with busy."""
    follows = Follows(max_waiters=1)
    key = parse_key("a/s/k")
    reads: list[int] = []

    def read(k: object, since: int) -> object:
        from flame_agents.runtime.cache.object_store import NotModified

        reads.append(since)
        return NotModified(1)

    waiting = threading.Thread(
        target=follows.follow, args=(FollowRequest(key, 1, 5000), read), daemon=True
    )
    waiting.start()
    while not reads:
        time.sleep(0.01)
    reply = follows.follow(FollowRequest(key, 1, 5000), read)  # type: ignore[arg-type]
    assert reply.busy and reply.rows == []
    follows.changed("a/s/other")  # another key: the waiter sleeps on
    assert waiting.is_alive()
    follows.close()  # a stopping server answers its waiting follows
    waiting.join(5)
    assert not waiting.is_alive()


def test_shutdown_answers_waiting_follows(start_server: ServerFactory) -> None:
    """Stopping the server does not wait for follows to time out."""
    server = start_server()
    ref = ObjectRef(server.endpoint, "a/s/k", 0)
    done = threading.Event()

    def follow() -> None:
        with contextlib.suppress(FlameAgentsError):
            follow_raw(ref, wait=10)
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    time.sleep(0.2)
    start = time.monotonic()
    server.shutdown()
    assert done.wait(8) and time.monotonic() - start < 8
