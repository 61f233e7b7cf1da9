"""Retry decisions: pure functions of the attempt, the error and a random source."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime

from dispatch.queue.errors import PermanentFailure, RetryAfter

RandomSource = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to a job after a failed attempt: retry after ``delay`` seconds, or not."""

    retry: bool
    delay: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter and a cap, per job kind.

    The n-th retry waits ``min(cap, base * 2**(n-1))`` scaled by a factor drawn
    uniformly from ``[1 - jitter, 1]``, so a burst of failures spreads out instead
    of retrying in lock step.
    """

    max_attempts: int = 20
    base_seconds: float = 15.0
    cap_seconds: float = 6 * 3600.0
    jitter: float = 0.5
    retry_after_cap_seconds: float = 3600.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    never_retry: tuple[type[BaseException], ...] = field(default=(PermanentFailure,))

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")
        if self.base_seconds < 0 or self.cap_seconds < self.base_seconds:
            raise ValueError("need 0 <= base_seconds <= cap_seconds")

    def backoff(self, attempt: int, rand: RandomSource = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt - 1, 0), 62)  # 2**62 already dwarfs any cap
        ceiling = min(self.cap_seconds, self.base_seconds * 2.0**exponent)
        return ceiling * (1.0 - self.jitter * rand())

    def decide(
        self,
        attempt: int,
        max_attempts: int,
        error: BaseException,
        rand: RandomSource = random.random,
    ) -> Decision:
        """Retry or give up after ``attempt`` of ``max_attempts`` failed with ``error``."""
        if isinstance(error, self.never_retry) or not isinstance(error, self.retry_on):
            return Decision(False, reason=f"not retried: {type(error).__name__}")
        if attempt >= max_attempts:
            return Decision(False, reason=f"gave up after {attempt} attempts")
        if isinstance(error, RetryAfter):
            return Decision(True, min(error.seconds, self.retry_after_cap_seconds), str(error))
        return Decision(True, self.backoff(attempt, rand), "backoff")


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds()) if when.tzinfo else None
