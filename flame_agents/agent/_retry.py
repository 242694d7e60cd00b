"""``RetryPolicy``: how a client retries an invocation, compiled to tenacity.

Only errors whose class is marked ``retryable`` (runtime unavailable, instance lost, timeout) are
retried, and always with the same idempotency key, so a retry can never apply an update twice.
A handler's own exception is never retried: running it again would not change its answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity

from flame_agents.errors import FlameAgentsError

__all__ = ["RetryPolicy"]

R = TypeVar("R")


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, FlameAgentsError) and exc.retryable


@dataclass(frozen=True)
class RetryPolicy:
    """Retry budget for one invocation (finite by default)."""

    max_attempts: int = 5
    """Attempts in total, the first included (1 = never retry)."""
    max_delay: float | None = 120.0
    """Give up once this many seconds have passed since the first attempt (None = no limit)."""
    initial_backoff: float = 0.2
    """Wait before the first retry, in seconds."""
    max_backoff: float = 5.0
    """Upper bound of the exponential wait between attempts, in seconds."""
    jitter: float = 0.1
    """Random extra wait added to each backoff, in seconds (spreads retrying clients apart)."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.jitter < 0:
            raise ValueError("RetryPolicy backoffs and jitter must be >= 0")

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)

    def retrying(self, *, on_retry: Callable[[BaseException, int], None] | None = None) -> Any:
        """A ``tenacity.Retrying`` applying this policy (re-raises the last error)."""
        stop: Any = tenacity.stop_after_attempt(self.max_attempts)
        if self.max_delay is not None:
            stop = stop | tenacity.stop_after_delay(self.max_delay)
        wait = tenacity.wait_exponential(
            multiplier=self.initial_backoff, max=self.max_backoff
        ) + tenacity.wait_random(0, self.jitter)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None:
                exc = state.outcome.exception()
                if exc is not None:
                    on_retry(exc, state.attempt_number)

        return tenacity.Retrying(
            stop=stop,
            wait=wait,
            retry=tenacity.retry_if_exception(_is_retryable),
            reraise=True,
            before_sleep=before_sleep,
        )

    def call(
        self,
        fn: Callable[[], R],
        *,
        on_retry: Callable[[BaseException, int], None] | None = None,
    ) -> R:
        """Run ``fn`` under this policy."""
        result: R = self.retrying(on_retry=on_retry)(fn)
        return result
