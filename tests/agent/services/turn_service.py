"""Serve one of the durable-turn tests' agents (named by argv[1]) as an application's service."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import turn_agents

if __name__ == "__main__":
    getattr(turn_agents, sys.argv[1]).run()
