"""Streams of agent turns: first-item latency and items per second of one stream.

First item: the time from ``AgentSession.stream(req)`` to the first emitted item in the
client, against a no-op ``invoke`` of the same agent (the same task path, commit included),
interleaved. Rate: one turn emitting ``stream_items`` small items as fast as it can, from
``stream()`` to the last item read, against the same items returned in one reply.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from flame_agents.bench.harness import BenchContext
from flame_agents.bench.measure import OURS, interleaved, time_calls
from flame_agents.bench.model import Profile, Row, median, percentile
from flame_agents.bench.scenarios._common import close_quietly

__all__ = ["TurnStreams"]

STREAM_APP = "bench-stream-agent"
STREAM_MODULE = "flame_agents.bench.services.stream_agent"
NOOP = "noop-invoke"
INLINE = "items-in-reply"


class TurnStreams:
    """First-item latency against a no-op invoke; items/s against the items in one reply."""

    name = "agent_stream"
    description = "agent turn streams: first-item latency, items/s of one stream"
    requires: tuple[str, ...] = ("flame_agents.testing", "flame_agents.agent")

    def steps(self, profile: Profile) -> int:
        """One step per round of each comparison."""
        return 2 * profile.rounds

    def run(self, ctx: BenchContext) -> list[Row]:
        """Interleave stream and baseline arms; p50 latency in ms, median rate in items/s."""
        from flame_agents.agent import AgentSession
        from flame_agents.bench.services.stream_agent import Produce, StreamAgent, StreamContext

        app = ctx.register_app(STREAM_APP, STREAM_MODULE)
        p = ctx.profile
        with contextlib.ExitStack() as stack:
            session = AgentSession(app, ctx=StreamContext(), agent=StreamAgent)
            stack.callback(close_quietly, session)
            session.invoke(Produce(n=0))  # instance up and state loaded before timing
            _drain(session.stream(Produce(n=1)))

            def first_item() -> float:
                start = time.perf_counter()
                stream = session.stream(Produce(n=1))
                next(iter(stream))
                elapsed = time.perf_counter() - start
                _drain(stream)
                return elapsed

            latency = interleaved(
                {
                    OURS: lambda: [first_item() for _ in range(p.invokes_per_round)],
                    NOOP: lambda: time_calls(
                        lambda: session.invoke(Produce(n=0)), p.invokes_per_round
                    ),
                },
                rounds=p.rounds,
                progress=ctx.progress,
            )
            n = p.stream_items
            rates = interleaved(
                {
                    OURS: _rate(lambda: _drain(session.stream(Produce(n=n))), n),
                    INLINE: _rate(lambda: session.invoke(Produce(n=n, inline=True)), n),
                },
                rounds=p.rounds,
                progress=ctx.progress,
            )
        ours_ms = percentile(latency[OURS], 50) * 1e3
        noop_ms = percentile(latency[NOOP], 50) * 1e3
        return [
            Row.compare(self.name, "first item p50", ours_ms, "ms", NOOP, noop_ms),
            Row.compare(
                self.name,
                f"items/s, one stream of {n:,}",
                median(rates[OURS]),
                "items/s",
                INLINE,
                median(rates[INLINE]),
            ),
        ]


def _drain(stream: Any) -> int:
    """Read a stream to its end and its reply; the number of items read."""
    count = sum(1 for _ in stream)
    _ = stream.reply
    return count


def _rate(call: Callable[[], object], n: int) -> Callable[[], list[float]]:
    """An arm: one call moving ``n`` items, as items per second."""

    def run() -> list[float]:
        start = time.perf_counter()
        call()
        return [n / (time.perf_counter() - start)]

    return run
