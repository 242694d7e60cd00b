"""Streams of agent turns on real processes: an embedded runtime, instance processes, the cache."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamdefs import Emit, Emitted, StreamAgent, StreamContext, Token

from flame_agents import core
from flame_agents.agent import AgentSession
from flame_agents.agent._stream import KEEP_STREAMS
from flame_agents.agent._stream_format import registry_key, segment_key, stream_key
from flame_agents.cache import ObjectRef, _transport, fetch_raw, follow_raw
from flame_agents.errors import Interrupted, TaskFailedError
from flame_agents.runtime.cache.server import NO_FOLLOW_ENV
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

SERVICE = Path(__file__).resolve().parent / "services" / "stream_service.py"


def register(name: str) -> None:
    """Register application ``name`` serving ``streamdefs.StreamAgent``."""
    core.register_application(
        name, {"command": sys.executable, "arguments": [str(SERVICE), "StreamAgent"]}
    )


@pytest.fixture(scope="module")
def app(runtime: LocalRuntime) -> Iterator[str]:
    register("streamer")
    yield "streamer"


@pytest.fixture
def session(app: str) -> Iterator[AgentSession[StreamContext]]:
    with AgentSession(app, ctx=StreamContext(), agent=StreamAgent) as s:
        yield s


def _exists(s: AgentSession[StreamContext], key: str) -> bool:
    """Whether the stream of turn ``key`` is in the cache."""
    prefix = stream_key(s.ref.key, key)
    return follow_raw(ObjectRef(s.ref.endpoint, segment_key(prefix, 0), 0)).found


def test_items_arrive_in_order_typed_then_the_reply(session: AgentSession[StreamContext]) -> None:
    """Items come in emit order as the reply's models; the reply follows; the stream is gone."""
    stream = session.stream(Emit(n=30, delay=0.005), idempotency_key="ordered")
    items = list(stream)
    assert items == [Token(i=i, text=f"t{i}") for i in range(30)]
    assert stream.reply == Emitted(count=30, turns=1)
    assert stream.outcome == "reply" and stream.offset == 30
    assert not _exists(session, "ordered")  # the client deleted it once it read the end


def test_thousands_of_items_without_loss_or_reordering(
    session: AgentSession[StreamContext],
) -> None:
    """A turn emitting 5,000 items as fast as it can: every one arrives, once, in order."""
    stream = session.stream(Emit(n=5000, plain=True))
    assert [item["i"] for item in stream] == list(range(5000))
    assert stream.reply.count == 5000


def test_reconnect_with_the_same_key_gets_missed_items_then_the_rest(
    session: AgentSession[StreamContext],
) -> None:
    """A client that drops a running turn's stream and streams the same key again gets every
    item from the start, then the rest; the turn ran once."""
    first = session.stream(Emit(n=40, delay=0.02), idempotency_key="reconnect")
    seen = []
    for item in first:
        seen.append(item.i)
        if len(seen) == 5:
            break
    first.close()
    again = session.stream(Emit(n=40, delay=0.02), idempotency_key="reconnect")
    assert [item.i for item in again] == list(range(40))
    assert again.reply == Emitted(count=40, turns=1)
    assert first.reply == Emitted(count=40, turns=1)
    assert session.context().turns == 1


def test_after_resumes_from_an_offset(session: AgentSession[StreamContext]) -> None:
    """``after=n`` with the same key yields items from index n on (here of a finished turn
    whose stream nobody read to its end)."""
    first = session.stream(Emit(n=25, delay=0.005), idempotency_key="offset")
    got = [next(iter(first)).i]
    first.close()
    assert first.reply.count == 25  # the turn finished; its stream was not read to the end
    rest = session.stream(Emit(n=25, delay=0.005), idempotency_key="offset", after=first.offset)
    assert got + [item.i for item in rest] == list(range(25))
    assert rest.reply == Emitted(count=25, turns=1)


def test_invoke_ignores_items(session: AgentSession[StreamContext]) -> None:
    """``invoke`` of a streaming agent returns its reply and writes no stream object."""
    assert session.invoke(Emit(n=200), idempotency_key="plain") == Emitted(count=200, turns=1)
    assert not _exists(session, "plain")


def test_failed_turn_streams_its_items_then_raises(session: AgentSession[StreamContext]) -> None:
    """Items emitted before a handler fails arrive; the stream ends ``failed`` and ``reply``
    raises the handler's error; state is unchanged."""
    stream = session.stream(Emit(n=3, fail=True))
    assert [item.i for item in stream] == [0, 1, 2]
    assert stream.outcome == "failed"
    with pytest.raises(TaskFailedError, match="the handler failed"):
        _ = stream.reply
    assert session.context().turns == 0


@pytest.mark.parametrize("in_step", [False, True], ids=["emits", "emits-in-a-step"])
def test_an_interrupted_turn_streams_on_after_its_resume(
    session: AgentSession[StreamContext], in_step: bool
) -> None:
    """A turn that pauses ends its stream ``interrupted`` (reply raises Interrupted); resumed,
    it goes on in the same stream, which a stream of its key then reads whole. Items emitted
    inside a step that the resumed run replays count as streamed: the item after the answer
    is not taken for one of them."""
    req = Emit(n=3, ask=True, in_step=in_step)
    stream = session.stream(req, idempotency_key="ask")
    assert [item.i for item in stream] == [0, 1, 2]
    assert stream.outcome == "interrupted"
    with pytest.raises(Interrupted):
        _ = stream.reply
    assert session.resume({"yes": True}) == Emitted(count=4, turns=1)
    again = session.stream(req, idempotency_key="ask")
    assert [item.i for item in again] == [0, 1, 2, 3]
    assert (again.reply, again.outcome) == (Emitted(count=4, turns=1), "reply")


def test_rerun_after_kill_does_not_duplicate_items(
    session: AgentSession[StreamContext], tmp_path: Path
) -> None:
    """kill -9 of the instance mid-turn: the re-run turn emits its items again, the stream
    holds each once, and the client sees 0..n-1 exactly."""
    stream = session.stream(Emit(n=30, hold_at=12, hold_dir=str(tmp_path)))
    items = iter(stream)
    head = [next(items).i for _ in range(12)]
    pid_file = tmp_path / "pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists():
        assert time.monotonic() < deadline, "the instance never reached the hold"
        time.sleep(0.02)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert head + [item.i for item in items] == list(range(30))
    assert stream.reply == Emitted(count=30, turns=1)


def test_instance_keeps_the_last_streams_of_a_session(
    session: AgentSession[StreamContext],
) -> None:
    """Streams nobody read to their end are deleted by the instance once a session has more
    than KEEP_STREAMS newer ones; the newest stay."""
    keys = [f"kept-{i}" for i in range(KEEP_STREAMS + 2)]
    for key in keys:
        assert session.stream(Emit(n=2), idempotency_key=key).reply.count == 2
    assert [_exists(session, key) for key in keys] == [False] * 2 + [True] * KEEP_STREAMS
    recent = fetch_raw(ObjectRef(session.ref.endpoint, registry_key(session.ref.key), 0))
    assert recent.base is not None and len(json.loads(recent.base)) == KEEP_STREAMS


def test_streams_by_polling_on_a_cache_without_the_follow_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a cache that rejects the follow read (as Flame does), streams still deliver every
    item in order, by polling."""
    monkeypatch.setenv(NO_FOLLOW_ENV, "1")
    with LocalRuntime():
        register("poll-streamer")
        with AgentSession("poll-streamer", ctx=StreamContext(), agent=StreamAgent) as s:
            stream = s.stream(Emit(n=50, delay=0.002))
            assert [item.i for item in stream] == list(range(50))
            assert stream.reply == Emitted(count=50, turns=1)
            assert s.ref.endpoint in _transport.unfollowable_endpoints
