"""Serve one of the cancellation tests' agents (named by argv[1]) as an application's service."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cancel_agents

if __name__ == "__main__":
    getattr(cancel_agents, sys.argv[1]).run()
