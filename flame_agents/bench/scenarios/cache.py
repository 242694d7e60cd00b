"""Object cache put/get/patch latency and throughput at 100 B, 64 KiB and 4 MiB.

Each sample puts a fresh object, gets it back and appends one patch of the same size, so
objects never grow across samples. Ours is ``flame_agents.cache`` against our cache server;
baselines: a gRPC echo of the same bytes (1 hop), a Ray actor keeping a dict, and flamepy's
cache API against our cache server. ``get`` is ``get_object`` of the ref just written, as a
user calls it, so client-side caches may answer part of it (both ours and flamepy have one).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from flame_agents.bench.baselines import flamepy_peer
from flame_agents.bench.harness import BenchContext
from flame_agents.bench.measure import OURS, interleaved, latency_rows
from flame_agents.bench.model import Profile, Row, median

__all__ = ["CacheOps"]

OPS = ("put", "get", "patch")
PREFIX = "bench-cache/run"


def _size_label(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size // (1024 * 1024)}MiB"
    if size >= 1024:
        return f"{size // 1024}KiB"
    return f"{size}B"


Store = tuple[Callable[[bytes], Any], Callable[[Any], Any], Callable[[Any, bytes], Any]]
"""(put(data) -> ref, get(ref), patch(ref, delta)) of one implementation."""


def _samples(store: Store, data: bytes, n: int) -> dict[str, list[float]]:
    put, get, patch = store
    out: dict[str, list[float]] = {op: [] for op in OPS}
    for _ in range(n):
        t0 = time.perf_counter()
        ref = put(data)
        t1 = time.perf_counter()
        get(ref)
        t2 = time.perf_counter()
        patch(ref, data)
        t3 = time.perf_counter()
        out["put"].append(t1 - t0)
        out["get"].append(t2 - t1)
        out["patch"].append(t3 - t2)
    return out


class CacheOps:
    """put/get/patch through the object cache at three sizes."""

    name = "cache"
    description = "object cache put/get/patch latency and throughput"
    requires: tuple[str, ...] = ("flame_agents.testing", "flame_agents.cache")

    def steps(self, profile: Profile) -> int:
        """One step per size and round."""
        return len(profile.cache_sizes) * profile.rounds

    def run(self, ctx: BenchContext) -> list[Row]:
        """For each size, interleave every store; p50 per op, and MB/s of ours."""
        from flame_agents import cache

        ctx.runtime()
        stores: dict[str, Store] = {
            OURS: (
                lambda d: cache.put_object(PREFIX, d),
                cache.get_object,
                cache.patch_object,
            )
        }
        floor = ctx.floor()
        stores["grpc-1hop"] = (floor.one_hop, lambda ref: None, lambda ref, d: floor.one_hop(d))
        ray = ctx.ray()
        with contextlib.ExitStack() as stack:
            if ray is not None:
                actor = ray.actor()
                stack.callback(ray.kill, actor)
                counter = iter(range(1 << 62))

                def ray_put(d: bytes) -> str:
                    key = f"k{next(counter)}"
                    ray.call(actor, "put", key, d)
                    return key

                stores["ray-actor"] = (
                    ray_put,
                    lambda key: ray.call(actor, "get", key),
                    lambda key, d: ray.call(actor, "patch", key, d),
                )
            flamepy = flamepy_peer.load()
            if flamepy is not None:
                stores["flamepy"] = (
                    lambda d: flamepy.core.put_object(PREFIX, d),
                    flamepy.core.get_object,
                    flamepy.core.patch_object,
                )
            return self._measure(ctx, stores)

    def _measure(self, ctx: BenchContext, stores: dict[str, Store]) -> list[Row]:
        p = ctx.profile
        rows: list[Row] = []
        for size in p.cache_sizes:
            data = b"\xa5" * size
            per_op: dict[str, dict[str, list[float]]] = {op: {} for op in OPS}

            def arm(
                name: str,
                store: Store,
                data: bytes = data,
                per_op: dict[str, dict[str, list[float]]] = per_op,
            ) -> Callable[[], list[float]]:
                def run_batch() -> list[float]:
                    for op, samples in _samples(store, data, p.cache_ops).items():
                        per_op[op].setdefault(name, []).extend(samples)
                    return []

                return run_batch

            interleaved(
                {name: arm(name, store) for name, store in stores.items()},
                rounds=p.rounds,
                progress=ctx.progress,
            )
            label = _size_label(size)
            for op in OPS:
                pooled = per_op[op]
                if op == "get":  # the gRPC floor has no separate read: it echoed on put
                    pooled = {k: v for k, v in pooled.items() if k != "grpc-1hop"}
                rows.extend(
                    latency_rows(
                        self.name, pooled, quantiles=(("p50", 50.0),), prefix=f"{op} {label} "
                    )
                )
                mb_s = size / median(pooled[OURS]) / 1e6
                rows.append(Row.compare(self.name, f"{op} {label}", mb_s, "MB/s"))
        return rows
