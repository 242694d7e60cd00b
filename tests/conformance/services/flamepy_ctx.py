"""A ``flamepy.service.FlameInstance`` with a session context, launched by the runtime under test.

Requests are plain dicts (picklable without importing this module):
``{"op": "append", "text": s}`` appends ``s`` to the context list and stores it with
``update_context``, replying ``{"text": s.upper(), "count": n, "pid": pid}``;
``{"op": "context"}`` replies the context; ``{"op": "fail", "text": s}`` raises ``ValueError(s)``;
``{"op": "none"}`` returns None.
"""

from __future__ import annotations

import os
from typing import Any

from flamepy import service

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
