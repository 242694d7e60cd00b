"""The cost of one durable step, at 10 and 50,000 messages of history, against DBOS Transact.

Ours: turns of an agent that runs N no-op ``turn.step`` s, and the same turn with none, at each
history length; one step costs (p50 with N steps - p50 without) / N. That is what a step adds
to a turn: its intent and its result, each a patch of the session's state object written
across a process boundary (instance -> object cache), and the compactions those patches bring
on sooner. The baseline is DBOS Transact's ``@DBOS.step`` in a ``@DBOS.workflow``, on SQLite,
in this process, measured the same way (a workflow of N no-op steps against one of none) and
interleaved with ours.

DBOS's SQLite database flushes every commit to disk (its default: rollback journal,
``synchronous=FULL``); our runtime does not by default (a step survives the loss of any process,
not of the machine's power). So, at the smallest history, our step is also measured on a
runtime started with ``--fsync`` (every write flushed, as DBOS's default) and DBOS's with
``synchronous=OFF`` (``dbos-sqlite-noflush``, nothing flushed, as our default). Also printed:
our step at the largest history against ours at the smallest.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flame_agents.bench.harness import BenchContext, app_spec
from flame_agents.bench.measure import interleaved, time_calls
from flame_agents.bench.model import Profile, Row, percentile
from flame_agents.bench.scenarios._common import close_quietly

__all__ = ["DurableStep", "per_step"]

STEP_APP = "bench-step-agent"
STEP_MODULE = "flame_agents.bench.services.step_agent"
BASELINE = "dbos-sqlite"
NOFLUSH = "dbos-sqlite-noflush"
TEXT = "the quick brown fox jumps over the lazy dog"

Pooled = dict[str, list[float]]

_NOISE = (
    "the turns with steps were not slower than those without (noise larger than the steps: "
    "rerun on a quieter machine, or without --quick)"
)


def per_step(with_steps: list[float], without: list[float], steps: int) -> float:
    """Seconds one step adds: the difference of the two p50s, over ``steps``."""
    return (percentile(with_steps, 50) - percentile(without, 50)) / steps


class DurableStep:
    """Per-step cost of ``turn.step`` vs history length, against DBOS steps on SQLite."""

    name = "durable_step"
    description = "cost of one durable step at 10 / 50,000 messages, against DBOS on SQLite"
    requires: tuple[str, ...] = ("flame_agents.testing", "flame_agents.agent")

    def steps(self, profile: Profile) -> int:
        """One progress step per round of each history size, of the ``--fsync`` runtime and of
        DBOS without flushes."""
        return (len(profile.step_history_sizes) + 2) * profile.rounds

    def run(self, ctx: BenchContext) -> list[Row]:
        """For each history size, interleave ours with and without steps (and DBOS alike)."""
        from flame_agents import agent

        if not hasattr(agent, "Turn"):
            ctx.skip(self.name, "flame_agents.agent.Turn is not available yet")
            return []
        p = ctx.profile
        n = p.steps_per_turn
        smallest = min(p.step_history_sizes)
        app = ctx.register_app(STEP_APP, STEP_MODULE)
        by_size: dict[int, Pooled] = {}

        def measure(turn: Callable[[int], object], dbos: Any) -> Pooled:
            arms = _arms(turn, dbos, steps=n, calls=p.agent_turns)
            return interleaved(arms, rounds=p.rounds, progress=ctx.progress)

        with contextlib.ExitStack() as stack:
            dbos = _dbos_peer(ctx, stack, flush=True)
            for size in p.step_history_sizes:
                with _step_session(app, size) as turn:
                    by_size[size] = measure(turn, dbos)
            with (
                _fsync_runtime() as connection,
                _step_session(STEP_APP, smallest, connection=connection) as turn,
            ):
                flushed = measure(turn, dbos)
        unflushed: Pooled | None = None
        if dbos is not None:
            # DBOS is one per process: the second setting runs after the first is shut down.
            with contextlib.ExitStack() as stack:
                dbos = _dbos_peer(ctx, stack, flush=False)
                with _step_session(app, smallest) as turn:
                    unflushed = measure(turn, dbos)
        rows: list[Row] = []
        steps_ms: dict[int, float] = {}
        for size, pooled in by_size.items():
            label = f"@{size:,} msgs"
            row = self._step_row(ctx, f"step ({n}/turn) {label}", pooled, n, BASELINE)
            if row is not None:
                rows.append(row)
                steps_ms[size] = row.value
            turn0 = percentile(pooled["ours-0"], 50) * 1e3
            rows.append(Row.compare(self.name, f"turn without steps p50 {label}", turn0, "ms"))
        label = f"@{smallest:,} msgs"
        more = [self._step_row(ctx, f"step ({n}/turn) {label} --fsync", flushed, n, BASELINE)]
        if unflushed is not None:
            more.append(self._step_row(ctx, f"step ({n}/turn) {label}", unflushed, n, NOFLUSH))
        rows.extend(row for row in more if row is not None)
        rows.extend(
            Row.compare(
                self.name,
                f"step ({n}/turn) @{size:,} msgs",
                value,
                "ms",
                f"ours @{smallest:,} msgs",
                steps_ms[smallest],
            )
            for size, value in steps_ms.items()
            if size != smallest and smallest in steps_ms
        )
        return rows

    def _step_row(
        self, ctx: BenchContext, metric: str, pooled: Pooled, steps: int, baseline: str
    ) -> Row | None:
        """Our per-step figure next to DBOS's; a difference that noise made zero or negative
        is reported as not measured rather than as a cost."""
        ours = per_step(pooled["ours"], pooled["ours-0"], steps) * 1e3
        if ours <= 0:
            ctx.skip(f"{self.name} {metric}", _NOISE)
            return None
        if "dbos" not in pooled:
            return Row.compare(self.name, metric, ours, "ms")
        base = per_step(pooled["dbos"], pooled["dbos-0"], steps) * 1e3
        if base <= 0:
            ctx.skip(f"{self.name} {metric} {baseline}", _NOISE)
            return Row.compare(self.name, metric, ours, "ms")
        return Row.compare(self.name, metric, ours, "ms", baseline, base)


def _arms(
    turn: Callable[[int], object], dbos: Any, *, steps: int, calls: int
) -> dict[str, Callable[[], list[float]]]:
    """Timed batches of ``calls`` turns with ``steps`` steps and with none (DBOS's alike)."""
    arms: dict[str, Callable[[], list[float]]] = {
        "ours": lambda: time_calls(lambda: turn(steps), calls),
        "ours-0": lambda: time_calls(lambda: turn(0), calls),
    }
    if dbos is not None:
        arms["dbos"] = lambda: time_calls(lambda: dbos.workflow(steps), calls)
        arms["dbos-0"] = lambda: time_calls(lambda: dbos.workflow(0), calls)
    return arms


def _dbos_peer(ctx: BenchContext, stack: contextlib.ExitStack, *, flush: bool) -> Any:
    """DBOS launched on a SQLite file in a temp folder until ``stack`` closes, or None."""
    from flame_agents.bench.baselines.dbos_peer import DbosPeer

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-dbos-")))
    try:
        peer = DbosPeer.start_or_none(folder, flush=flush)
    except Exception as exc:  # DBOS's own start-up failed: measure ours alone
        ctx.skip("dbos-sqlite baseline", f"DBOS failed to launch: {exc}")
        return None
    if peer is None:
        ctx.skip(
            "dbos-sqlite baseline",
            "dbos is not importable: pip install 'flame-agents[bench]' to add it",
        )
        return None
    stack.callback(peer.close)
    return peer


@contextlib.contextmanager
def _fsync_runtime() -> Iterator[Any]:
    """A second runtime that flushes every write (``--fsync``), with the step agent
    registered; yields a connection to it (the suite's own runtime stays the default)."""
    from flame_agents.testing import LocalRuntime

    with LocalRuntime(set_env=False, extra_args=["--fsync"]) as rt:
        connection = rt.connect()
        connection.register_application(STEP_APP, app_spec(STEP_MODULE))
        yield connection


@contextlib.contextmanager
def _step_session(app: str, size: int, *, connection: Any = None) -> Iterator[Any]:
    """A session of the step agent whose history holds ``size`` messages; yields
    ``turn(steps)``, one turn with that many steps."""
    from flame_agents.agent import AgentSession, History
    from flame_agents.bench.services.chat_agent import Message
    from flame_agents.bench.services.step_agent import StepAgent, StepContext, Work

    start = StepContext(
        messages=History(Message(role="user", text=f"{TEXT} {i}") for i in range(size))
    )
    session = AgentSession(app, ctx=start, agent=StepAgent, connection=connection)
    try:
        session.invoke(Work(steps=1, text=TEXT))  # instance up and state loaded before timing
        yield lambda steps: session.invoke(Work(steps=steps, text=TEXT))
    finally:
        close_quietly(session)
