"""Serve TallyAgent (tests/faults/faultagents.py) as an application's service process."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faultagents import TallyAgent

if __name__ == "__main__":
    TallyAgent.run()
