"""Serve one of the test agents (named by argv[1]) as an application's service process."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import agentdefs

if __name__ == "__main__":
    getattr(agentdefs, sys.argv[1]).run()
