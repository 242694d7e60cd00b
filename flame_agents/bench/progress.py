"""A one-line progress bar on stderr, so stdout carries only the result table.

Small enough not to need a dependency; redraws in place on a terminal and prints one line per
scenario otherwise (CI logs stay readable).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Counts units of work across the whole suite; ``label`` names the current scenario."""

    def __init__(self, total: int, *, stream: TextIO | None = None, width: int = 28) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.label = ""
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._width = width
        self._start = time.monotonic()

    def begin(self, label: str) -> None:
        """Name the scenario that runs next."""
        self.label = label
        if not self._tty:
            self._stream.write(f"[bench] {label} ...\n")
            self._stream.flush()
        self._draw()

    def advance(self, n: int = 1) -> None:
        """Mark ``n`` units done (clamped to the total)."""
        self.done = min(self.done + n, self.total)
        self._draw()

    def _draw(self) -> None:
        if not self._tty:
            return
        frac = self.done / self.total
        filled = int(frac * self._width)
        elapsed = time.monotonic() - self._start
        bar = "#" * filled + "-" * (self._width - filled)
        self._stream.write(f"\r[{bar}] {frac:4.0%} {elapsed:5.0f}s {self.label[:40]:<40}")
        self._stream.flush()

    def close(self) -> None:
        """Finish the line (terminal) or print the elapsed time (logs)."""
        elapsed = time.monotonic() - self._start
        if self._tty:
            self.done = self.total
            self._draw()
            self._stream.write("\n")
        else:
            self._stream.write(f"[bench] done in {elapsed:.1f} s\n")
        self._stream.flush()
