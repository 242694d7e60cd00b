"""Many sessions at once: S client threads, each opens its own session and invokes M times.

Each session gets its own instance process, so this measures instance launch under load, the
scheduler and the Frontend with S concurrent streams. Figures: wall time of the whole batch and
invokes/s, median over interleaved trials; baselines do S x M calls from S threads, each with
its own connection (gRPC 2-hop), its own new actor (Ray), or its own flamepy session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cloudpickle

from flame_agents.bench.baselines import flamepy_peer
from flame_agents.bench.harness import BenchContext
from flame_agents.bench.measure import OURS, Arm, interleaved, value_rows
from flame_agents.bench.model import Profile, Row
from flame_agents.bench.scenarios._common import (
    CALL_TIMEOUT,
    NOOP_APP,
    NOOP_MODULE,
    close_quietly,
    flamepy_invoke,
)

__all__ = ["RAY_MAX_ACTORS", "ManySessions"]

RAY_MAX_ACTORS = 20
"""Above this many sessions the Ray arm is skipped (its actor start-up dominates the run)."""


def _batch(sessions: int, one: Callable[[], None]) -> list[float]:
    """Seconds for ``sessions`` threads to each run ``one`` (a whole session's work)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=sessions) as pool:
        for fut in [pool.submit(one) for _ in range(sessions)]:
            fut.result()
    return [time.perf_counter() - start]


class ManySessions:
    """S sessions x M invokes, all sessions at once."""

    name = "sessions"
    description = "many sessions at once, each with its own instance"
    requires: tuple[str, ...] = (
        "flame_agents.testing",
        "flame_agents.core",
        "flame_agents.service",
    )

    def steps(self, profile: Profile) -> int:
        """One step per round."""
        return profile.heavy_rounds

    def run(self, ctx: BenchContext) -> list[Row]:
        """Interleaved batches of every arm; median wall time and invokes/s."""
        from flame_agents import core

        p = ctx.profile
        s, m = p.sessions, p.invokes_per_session
        app = ctx.register_app(NOOP_APP, NOOP_MODULE)
        payload = cloudpickle.dumps(b"x" * 100)

        def ours() -> None:
            session = core.create_session(app)
            try:
                for _ in range(m):
                    session.invoke(payload, timeout=CALL_TIMEOUT)
            finally:
                close_quietly(session)

        floor = ctx.floor()

        def grpc_client() -> None:
            channel, call = floor.new_client(two_hop=True)
            with channel:
                for _ in range(m):
                    call(payload)

        arms: dict[str, Arm] = {
            OURS: lambda: _batch(s, ours),
            "grpc-2hop": lambda: _batch(s, grpc_client),
        }
        ray = ctx.ray()
        if ray is not None and s > RAY_MAX_ACTORS:
            ctx.skip(
                f"{self.name}: ray-actor",
                f"{s} new actors (one worker process each) take minutes on a small machine; "
                f"measured up to {RAY_MAX_ACTORS} sessions (run --quick --ray to see it)",
            )
        elif ray is not None:

            def ray_client() -> None:
                actor = ray.actor()
                try:
                    for _ in range(m):
                        ray.call(actor, "noop", payload)
                finally:
                    ray.kill(actor)

            arms["ray-actor"] = lambda: _batch(s, ray_client)
        flamepy = flamepy_peer.load()
        if flamepy is not None:

            def flamepy_client() -> None:
                session = flamepy.core.create_session(app)
                try:
                    for _ in range(m):
                        flamepy_invoke(session, payload)
                finally:
                    close_quietly(session)

            arms["flamepy"] = lambda: _batch(s, flamepy_client)
        pooled = interleaved(arms, rounds=p.heavy_rounds, progress=ctx.progress)
        rates = {name: [s * m / t for t in times] for name, times in pooled.items()}
        metric = f"{s} sessions x {m} invokes"
        return [
            *value_rows(self.name, metric + " wall", pooled, "s"),
            *value_rows(self.name, metric, rates, "invokes/s"),
        ]
