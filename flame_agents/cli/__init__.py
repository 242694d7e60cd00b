"""Command line of flame-agents, installed as both ``flame-agents`` and ``flmctl``.

``main(argv=None) -> int`` is the console script: runtime verbs (``up``, ``down``, ``status``),
Flame's flmctl verbs (``register``, ``update``, ``unregister``, ``list``, ``view``, ``create``,
``close``) and ``demo``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line (``sys.argv[1:]`` when ``argv`` is None); returns the exit code."""
    # Imported here so `flame_agents.cli.app_yaml` stays importable on its own, without the
    # client and runtime modules the verbs need.
    from flame_agents.cli._main import main as _main

    return _main(argv)
