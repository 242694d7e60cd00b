"""Cold start: from creating a new session to its first reply, including a new instance process.

Ours is the seed's echo through ``flame_agents.service.Session`` (create the session with a
context, first invoke). Baselines: the floor of any process-per-session design (spawn a bare
Python gRPC echo process and get its first reply), a new Ray actor's first call, and flamepy's
``service.Session`` doing the same on our runtime. Also set against issue 5's 300 ms target.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cloudpickle

from flame_agents.bench.baselines import flamepy_peer
from flame_agents.bench.baselines.grpc_floor import cold_echo_process
from flame_agents.bench.harness import BenchContext
from flame_agents.bench.measure import OURS, Arm, interleaved, value_rows
from flame_agents.bench.model import Profile, Row
from flame_agents.bench.scenarios._common import CALL_TIMEOUT, ECHO_APP, ECHO_MODULE

__all__ = ["TARGET_COLD_START_MS", "ColdStart"]

TARGET_COLD_START_MS = 300.0
"""Issue 5's target for new session to first reply."""


def _timed_ms(fn: Callable[[], object]) -> list[float]:
    start = time.perf_counter()
    fn()
    return [(time.perf_counter() - start) * 1e3]


class ColdStart:
    """New session (and instance process) to first reply."""

    name = "cold_start"
    description = "new session to first reply, new instance process"
    requires: tuple[str, ...] = (
        "flame_agents.testing",
        "flame_agents.core",
        "flame_agents.service",
    )

    def steps(self, profile: Profile) -> int:
        """One step per trial round."""
        return profile.cold_starts

    def run(self, ctx: BenchContext) -> list[Row]:
        """Interleaved cold starts of every arm; median ms."""
        from flame_agents.bench.services.echo import EchoRequest
        from flame_agents.service import Session

        app = ctx.register_app(ECHO_APP, ECHO_MODULE)
        req = EchoRequest("hello")

        def ours_timed() -> list[float]:
            holder: list[Session] = []

            def first_reply() -> None:
                session = Session(app, ctx=[])
                holder.append(session)
                session.invoke(req, timeout=CALL_TIMEOUT)

            try:
                return _timed_ms(first_reply)
            finally:
                # Closing is outside the timed part: it is not on the user's path to a reply.
                for session in holder:
                    session.close()

        payload = cloudpickle.dumps(req)
        arms: dict[str, Arm] = {
            OURS: ours_timed,
            "grpc-process": lambda: [cold_echo_process(payload) * 1e3],
        }
        ray = ctx.ray()
        if ray is not None:

            def ray_cold() -> list[float]:
                actors: list[object] = []
                try:
                    return _timed_ms(lambda: actors.append(ray.actor()))
                finally:
                    for actor in actors:
                        ray.kill(actor)

            arms["ray-actor"] = ray_cold
        flamepy = flamepy_peer.load()
        if flamepy is not None:

            def flamepy_cold() -> list[float]:
                holder: list[object] = []

                def first_reply() -> None:
                    session = flamepy.service.Session(app, ctx=[])
                    holder.append(session)
                    session.invoke(req)

                try:
                    return _timed_ms(first_reply)
                finally:
                    for session in holder:
                        session.close()  # type: ignore[attr-defined]

            arms["flamepy"] = flamepy_cold
        pooled = interleaved(arms, rounds=ctx.profile.cold_starts, progress=ctx.progress)
        pooled["target"] = [TARGET_COLD_START_MS]
        return value_rows(self.name, "new session to first reply", pooled, "ms")
