"""Code the runner tests expose remotely: shipped to the instances in the runner's package."""

from __future__ import annotations

import os
import time


class DemoError(Exception):
    """A user's own exception class, raised remotely."""


def square(x: int) -> int:
    """x squared."""
    return x * x


def add(a: int, b: int = 0) -> int:
    """a plus b."""
    return a + b


def fail(message: str) -> None:
    """Raise DemoError(message)."""
    raise DemoError(message)


def when_exists(path: str, value: int) -> int:
    """Return value once the file at path exists."""
    while not os.path.exists(path):
        time.sleep(0.02)
    return value


async def total(values: list[int]) -> int:
    """The sum of values, computed by a coroutine."""
    return sum(values)


class Tally:
    """A running total; exposed as a class (one object per instance) or as an object."""

    def __init__(self, start: int = 0) -> None:
        self.total = start

    def add(self, n: int) -> int:
        """Add n and return the new total."""
        self.total += n
        return self.total

    def where(self) -> int:
        """The pid of the process holding this object."""
        return os.getpid()

    def _secret(self) -> str:
        return "private"
