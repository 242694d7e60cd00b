"""Serve one of the streaming test agents (named by argv[1]) as an application's service."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamdefs

if __name__ == "__main__":
    getattr(streamdefs, sys.argv[1]).run()
