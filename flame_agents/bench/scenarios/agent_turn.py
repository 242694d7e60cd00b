"""Agent turn latency and bytes written per turn at 10 / 1,000 / 50,000 messages of history.

Ours is an ``Agent`` whose context holds a ``History`` (one patch per turn). The baseline is
the same turn done the common way, rewriting the whole history each turn (the seed service's
``update_context``), at the same sizes and interleaved with ours. Bytes written are what the
runtime process (which hosts the object cache) passes to ``write()`` per turn, read from
``/proc/<pid>/io``, so they count every byte the turn costs on disk, whoever's format.
Also printed: our latency at N messages against ours at the smallest size (target <= 1.2x).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flame_agents.bench.harness import BenchContext
from flame_agents.bench.measure import OURS, interleaved
from flame_agents.bench.model import Profile, Row, median, percentile
from flame_agents.bench.scenarios._common import CALL_TIMEOUT, close_quietly

__all__ = ["AgentTurn", "written_bytes"]

AGENT_APP = "bench-chat-agent"
AGENT_MODULE = "flame_agents.bench.services.chat_agent"
REWRITE_APP = "bench-chat-rewrite"
REWRITE_MODULE = "flame_agents.bench.services.rewrite_chat"
BASELINE = "rewrite-all"
TEXT = "the quick brown fox jumps over the lazy dog"  # a typical short chat message


def written_bytes(pid: int) -> int | None:
    """Bytes ``pid`` has passed to write() so far (``wchar``), or None off Linux."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _batch(
    turn: Callable[[], object], n: int, pid: int, written: list[float]
) -> Callable[[], list[float]]:
    """An arm: ``n`` timed turns; appends bytes written per turn to ``written``."""

    def run() -> list[float]:
        before = written_bytes(pid)
        samples: list[float] = []
        for _ in range(n):
            start = time.perf_counter()
            turn()
            samples.append(time.perf_counter() - start)
        after = written_bytes(pid)
        if before is not None and after is not None:
            written.append((after - before) / n)
        return samples

    return run


class AgentTurn:
    """Turn latency and bytes written vs history length, against rewrite-the-whole-history."""

    name = "agent_turn"
    description = "agent turn latency and bytes written at growing history"
    requires: tuple[str, ...] = (
        "flame_agents.testing",
        "flame_agents.service",
        "flame_agents.agent",
    )

    def steps(self, profile: Profile) -> int:
        """One step per history size and round."""
        return len(profile.history_sizes) * profile.rounds

    def run(self, ctx: BenchContext) -> list[Row]:
        """For each history size, interleave ours and the rewrite baseline."""
        from flame_agents import agent

        if not hasattr(agent, "AgentSession"):
            ctx.skip(self.name, "flame_agents.agent.AgentSession is not available yet")
            return []
        p = ctx.profile
        agent_app = ctx.register_app(AGENT_APP, AGENT_MODULE)
        rewrite_app = ctx.register_app(REWRITE_APP, REWRITE_MODULE)
        pid = ctx.runtime().pid
        rows: list[Row] = []
        p50_by_size: dict[int, float] = {}
        for size in p.history_sizes:
            with contextlib.ExitStack() as stack:
                ours = stack.enter_context(_agent_session(agent_app, size))
                base = stack.enter_context(_rewrite_session(rewrite_app, size))
                written: dict[str, list[float]] = {OURS: [], BASELINE: []}
                n = p.agent_turns
                pooled = interleaved(
                    {
                        OURS: _batch(ours, n, pid, written[OURS]),
                        BASELINE: _batch(base, n, pid, written[BASELINE]),
                    },
                    rounds=p.rounds,
                    progress=ctx.progress,
                )
            label = f"@{size:,} msgs"
            ours_p50 = percentile(pooled[OURS], 50) * 1e3
            p50_by_size[size] = ours_p50
            base_p50 = percentile(pooled[BASELINE], 50) * 1e3
            rows.append(
                Row.compare(self.name, f"turn p50 {label}", ours_p50, "ms", BASELINE, base_p50)
            )
            if written[OURS] and written[BASELINE]:
                rows.append(
                    Row.compare(
                        self.name,
                        f"bytes written/turn {label}",
                        median(written[OURS]),
                        "bytes",
                        BASELINE,
                        median(written[BASELINE]),
                    )
                )
        smallest = min(p50_by_size)
        rows.extend(
            Row.compare(
                self.name,
                f"turn p50 @{size:,} msgs",
                p50,
                "ms",
                f"ours @{smallest:,} msgs",
                p50_by_size[smallest],
            )
            for size, p50 in p50_by_size.items()
            if size != smallest
        )
        return rows


@contextlib.contextmanager
def _agent_session(app: str, size: int) -> Any:
    """An agent session whose history already holds ``size`` messages; yields one turn."""
    from flame_agents.agent import AgentSession, History
    from flame_agents.bench.services.chat_agent import ChatAgent, ChatContext, Message, Say

    # Distinct texts: identical strings would be shared by pickle's memo and flatter the baseline.
    start = ChatContext(
        messages=History(Message(role="user", text=f"{TEXT} {i}") for i in range(size))
    )
    session = AgentSession(app, ctx=start, agent=ChatAgent)
    try:
        session.invoke(Say(text=TEXT))  # instance up and state loaded before timing
        yield lambda: session.invoke(Say(text=TEXT))
    finally:
        close_quietly(session)


@contextlib.contextmanager
def _rewrite_session(app: str, size: int) -> Any:
    """A seed-service session whose context already holds ``size`` messages; yields one turn."""
    from flame_agents.service import Session

    start = [{"role": "user", "text": f"{TEXT} {i}"} for i in range(size)]
    session = Session(app, ctx=start)
    try:
        session.invoke(TEXT, timeout=CALL_TIMEOUT)
        yield lambda: session.invoke(TEXT, timeout=CALL_TIMEOUT)
    finally:
        close_quietly(session)
