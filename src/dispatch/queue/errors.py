"""What a job handler may raise to steer its job.

JobError              base
  RetryAfter          retry after the given delay (e.g. a provider's Retry-After)
  PermanentFailure    do not retry; the job fails now
"""

from __future__ import annotations


class JobError(Exception):
    """Base of the exceptions a handler raises on purpose."""


class RetryAfter(JobError):
    def __init__(self, seconds: float, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.seconds = max(0.0, seconds)


class PermanentFailure(JobError):
    """The job cannot succeed by trying again (bad arguments, a 4xx that will not change)."""
