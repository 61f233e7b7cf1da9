"""The retry policy is pure: exhaustive checks with an injected random source."""

from __future__ import annotations

import pytest

from dispatch.queue.errors import PermanentFailure, RetryAfter
from dispatch.queue.policy import RetryPolicy


def test_backoff_doubles_until_the_cap() -> None:
    policy = RetryPolicy(base_seconds=10, cap_seconds=300, jitter=0.0)
    assert [policy.backoff(n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]


def test_jitter_stays_within_its_band() -> None:
    policy = RetryPolicy(base_seconds=10, cap_seconds=1000, jitter=0.5)
    assert policy.backoff(3, rand=lambda: 0.0) == 40
    assert policy.backoff(3, rand=lambda: 1.0) == 20
    assert policy.backoff(3, rand=lambda: 0.5) == 30


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert RetryPolicy(cap_seconds=3600, jitter=0).backoff(10_000) == 3600


def test_decisions() -> None:
    policy = RetryPolicy(base_seconds=1, cap_seconds=60, jitter=0)
    retry = policy.decide(1, 3, RuntimeError("boom"))
    assert (retry.retry, retry.delay) == (True, 1)
    assert policy.decide(2, 3, RuntimeError("boom")).delay == 2
    assert not policy.decide(3, 3, RuntimeError("boom")).retry
    assert not policy.decide(1, 3, PermanentFailure("bad args")).retry


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(retry_after_cap_seconds=120)
    assert policy.decide(1, 5, RetryAfter(30)).delay == 30
    assert policy.decide(1, 5, RetryAfter(86_400)).delay == 120
    assert not policy.decide(5, 5, RetryAfter(30)).retry


def test_only_listed_errors_retry() -> None:
    policy = RetryPolicy(retry_on=(ConnectionError,))
    assert policy.decide(1, 5, ConnectionError()).retry
    assert not policy.decide(1, 5, ValueError()).retry


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"jitter": 1.5}, {"base_seconds": 10, "cap_seconds": 5}]
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
