"""Retry policy: how many attempts a step gets and how long to wait between them.

Pure arithmetic over immutable data; the engine only sleeps for what it says.
"""

from __future__ import annotations

import random

import attrs

from .._errors import PluginError, PluginErrorCode
from ._workflow import RetryPredicate

__all__ = ["RetryPolicy"]

# Failures that retrying cannot fix: the step is misconfigured, not unlucky.
_NON_RETRYABLE = frozenset(
    {
        PluginErrorCode.PluginNotFound,
        PluginErrorCode.CommandNotFound,
        PluginErrorCode.InvalidParameters,
        PluginErrorCode.InvalidConfiguration,
        PluginErrorCode.InvalidArgument,
    }
)


@attrs.frozen
class RetryPolicy:
    """Attempts and backoff for one step; durations in milliseconds, as in QtForge.

    The wait before retry ``n`` (1-based) is ``delay * backoff ** (n - 1)``, capped at
    `max_delay`, then shortened by a random fraction of at most `jitter`.
    """

    max_retries: int = 0
    delay: float = 1_000
    backoff: float = 2.0
    max_delay: float = 60_000
    jitter: float = 0.1
    retry_on: RetryPredicate | None = None

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    def wait_before(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        wait = min(self.max_delay, self.delay * self.backoff ** (retry - 1)) / 1000
        if self.jitter:
            wait *= 1.0 - self.jitter * (rng or random).random()
        return wait

    def allows(self, error: Exception, attempt: int, fallback: RetryPredicate | None) -> bool:
        """Whether a failure of attempt number `attempt` may be retried.

        Errors that say the step itself is wrong (unknown plugin or method, bad
        parameters or configuration) and errors marked ``non_retryable = True`` are
        never retried. Otherwise the step's `retry_on`, else `fallback`, decides; with
        neither, any ``Exception`` is retried.
        """
        if attempt >= self.max_attempts:
            return False
        if isinstance(error, PluginError) and error.code in _NON_RETRYABLE:
            return False
        if getattr(error, "non_retryable", False):
            return False
        predicate = self.retry_on or fallback
        return predicate is None or bool(predicate(error))
