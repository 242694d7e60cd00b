"""A FlameInstance service whose entrypoint fails two calls deep: ``{"op": "parse", "text": t}``
raises ValueError(t) inside ``parse_record``; ``{"op": "ok"}`` answers ``"fine"``."""

from __future__ import annotations

from typing import Any

from flame_agents import service

ins = service.FlameInstance()


def parse_record(text: str) -> int:
    """Fails on anything but digits."""
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def load(req: dict[str, Any]) -> int:
    return parse_record(req["text"])


@ins.entrypoint
def handle(req: dict[str, Any]) -> Any:
    if req["op"] == "parse":
        return load(req)
    return "fine"


if __name__ == "__main__":
    ins.run()
