"""Throughput of no-op tasks in one session: several instances, many client threads submitting.

Figures are tasks per second over a fixed number of tasks, median over interleaved trials;
baselines do the same number of calls with the same client concurrency: the 2-hop gRPC floor,
as many Ray actors as we have instances, and flamepy's core client on our runtime.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable

import cloudpickle

from flame_agents.bench.baselines import flamepy_peer
from flame_agents.bench.harness import BenchContext
from flame_agents.bench.measure import OURS, Arm, concurrent_rate, interleaved, value_rows
from flame_agents.bench.model import Profile, Row
from flame_agents.bench.scenarios._common import (
    CALL_TIMEOUT,
    NOOP_APP,
    NOOP_MODULE,
    close_quietly,
    flamepy_invoke,
)

__all__ = ["TARGET_TASKS_PER_S", "Throughput"]

TARGET_TASKS_PER_S = 5000.0
"""Issue 5's target for one session on a 2-core machine."""


class Throughput:
    """No-op tasks/s in one session with concurrent submission and several instances."""

    name = "throughput"
    description = "no-op tasks in one session, concurrent submission, several instances"
    requires: tuple[str, ...] = (
        "flame_agents.testing",
        "flame_agents.core",
        "flame_agents.service",
    )

    def steps(self, profile: Profile) -> int:
        """One step per interleaved round."""
        return profile.rounds

    def run(self, ctx: BenchContext) -> list[Row]:
        """Interleaved trials of every arm; median tasks/s."""
        from flame_agents import core

        p = ctx.profile
        app = ctx.register_app(NOOP_APP, NOOP_MODULE)
        payload = cloudpickle.dumps(b"")
        total, threads, k = p.throughput_tasks, p.throughput_concurrency, p.throughput_instances

        def rate(call: Callable[[], object]) -> Arm:
            return lambda: [concurrent_rate(call, total=total, concurrency=threads)]

        with contextlib.ExitStack() as stack:
            session = core.create_session(app, min_instances=k, max_instances=k)
            stack.callback(close_quietly, session)
            # Bring every instance up before timing: cold start is its own scenario.
            concurrent_rate(
                lambda: session.invoke(payload, timeout=CALL_TIMEOUT),
                total=4 * k,
                concurrency=2 * k,
            )
            arms: dict[str, Arm] = {
                OURS: rate(lambda: session.invoke(payload, timeout=CALL_TIMEOUT))
            }
            floor = ctx.floor()
            arms["grpc-2hop"] = rate(lambda: floor.two_hop(payload))
            ray = ctx.ray()
            if ray is not None:
                actors = [ray.actor() for _ in range(k)]
                for actor in actors:
                    stack.callback(ray.kill, actor)
                ring = itertools.cycle(actors)  # next() on a cycle is atomic under the GIL
                arms["ray-actor"] = rate(lambda: ray.call(next(ring), "noop", payload))
            flamepy = flamepy_peer.load()
            if flamepy is not None:
                fp = flamepy.core.create_session(app, min_instances=k, max_instances=k)
                stack.callback(close_quietly, fp)
                concurrent_rate(lambda: flamepy_invoke(fp, payload), total=4 * k, concurrency=2 * k)
                arms["flamepy"] = rate(lambda: flamepy_invoke(fp, payload))
            pooled = interleaved(arms, rounds=p.rounds, progress=ctx.progress)
        metric = f"{total} tasks, {k} instances, {threads} threads"
        pooled["target"] = [TARGET_TASKS_PER_S]
        return value_rows(self.name, metric, pooled, "tasks/s")
