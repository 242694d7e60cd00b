"""FlameInstance services to cancel: ``stoppable.py async`` or ``stoppable.py sync``.

Requests are dicts. ``{"op": "wait", "dir": d}``: write the pid to ``d/pid``; the async
entrypoint then sleeps, writes ``d/cancelled`` when it gets ``asyncio.CancelledError`` and
re-raises it; the sync one waits until ``ins.cancelled()`` (writes ``d/seen``), then until
``d/release`` exists, then calls ``update_context`` when the request says ``"update": True``,
and returns ``"finished"``. Both bump the context (an int) only when they finish.
``{"op": "hang", "dir": d}``: write the pid and sleep, whatever happens. ``{"op": "pid"}``:
the pid. ``{"op": "count"}``: bump the context and return it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from flame_agents import service

ins = service.FlameInstance()


def _started(req: dict[str, Any]) -> Path:
    folder = Path(req["dir"])
    (folder / "pid.tmp").write_text(str(os.getpid()))
    (folder / "pid.tmp").rename(folder / "pid")
    return folder


def _bump() -> int:
    count = int(ins.context() or 0) + 1
    ins.update_context(count)
    return count


def _until(predicate: Any) -> None:
    deadline = time.monotonic() + 120
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)


async def handle_async(req: dict[str, Any]) -> Any:
    if req["op"] == "wait":
        folder = _started(req)
        try:
            await asyncio.sleep(120)
        except asyncio.CancelledError:
            (folder / "cancelled").touch()
            raise
        return _bump()
    return handle_common(req)


def handle_sync(req: dict[str, Any]) -> Any:
    if req["op"] == "wait":
        folder = _started(req)
        _until(ins.cancelled)
        (folder / "seen").touch()
        _until((folder / "release").exists)
        if req.get("update"):
            _bump()
        return "finished"
    return handle_common(req)


def handle_common(req: dict[str, Any]) -> Any:
    if req["op"] == "hang":
        _started(req)
        time.sleep(120)
    if req["op"] == "count":
        return _bump()
    return os.getpid()


if __name__ == "__main__":
    ins.entrypoint(handle_async if sys.argv[1] == "async" else handle_sync)
    ins.run()
