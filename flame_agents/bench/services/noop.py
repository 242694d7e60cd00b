"""A no-op service: returns its input unchanged (measures the runtime path, not user code)."""

from __future__ import annotations

from typing import Any

from flame_agents import service

ins = service.FlameInstance()


@ins.entrypoint
def noop(data: Any) -> Any:
    """Return ``data``."""
    return data


if __name__ == "__main__":
    ins.run()
