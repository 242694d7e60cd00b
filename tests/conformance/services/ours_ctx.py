"""The same service as ``flamepy_ctx.py``, written with ``flame_agents.service.FlameInstance``.

flamepy's client must drive it exactly as it drives the flamepy version (same requests, same
replies, same context semantics).
"""

from __future__ import annotations

import os
from typing import Any

from flame_agents import service

ins = service.FlameInstance()


@ins.entrypoint
def handle(req: dict[str, Any]) -> Any:
    op = req["op"]
    if op == "append":
        history = ins.context() or []
        history.append(req["text"])
        ins.update_context(history)
        return {"text": req["text"].upper(), "count": len(history), "pid": os.getpid()}
    if op == "context":
        return ins.context()
    if op == "fail":
        raise ValueError(req["text"])
    if op == "none":
        return None
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    ins.run()
