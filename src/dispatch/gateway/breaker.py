"""Circuit breaker as a pure state machine: the caller loads a ``Breaker``, asks, stores the answer.

Nothing here reads a clock or does I/O: every function takes ``now``, so the state machine is
tested with explicit datetimes and the caller persists one row per resource.

closed -> open      ``consecutive_failures`` failures in a row, or a failure rate of at least
                    ``failure_rate`` over at least ``min_requests`` requests in the current window,
                    or ``unhealthy_threshold`` failed active probes in a row.
open -> half_open   the first request after ``cool_down_seconds`` becomes the single trial.
half_open -> closed the trial succeeds, or ``healthy_threshold`` probes succeed in a row.
half_open -> open   the trial fails (the cool-down starts again).
open -> closed      ``healthy_threshold`` probes succeed in a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

K = TypeVar("K")


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    consecutive_failures: int = 5
    window_seconds: float = 60.0
    min_requests: int = 10
    failure_rate: float = 0.5
    cool_down_seconds: float = 30.0
    trial_timeout_seconds: float = 60.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3

    def __post_init__(self) -> None:
        counts = (
            self.consecutive_failures,
            self.min_requests,
            self.healthy_threshold,
            self.unhealthy_threshold,
        )
        if min(counts) < 1:
            raise ValueError("breaker thresholds and min_requests must be at least 1")
        if not 0.0 < self.failure_rate <= 1.0:
            raise ValueError("failure_rate must be in (0, 1]")
        durations = (self.window_seconds, self.cool_down_seconds, self.trial_timeout_seconds)
        if min(durations) <= 0:
            raise ValueError("breaker durations must be positive")


@dataclass(frozen=True, slots=True)
class Breaker:
    state: State = State.CLOSED
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    probe_failures: int = 0
    probe_successes: int = 0
    window_started_at: datetime | None = None
    window_requests: int = 0
    window_failures: int = 0
    opened_at: datetime | None = None
    trial_started_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_success_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    old: State
    new: State
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    trial: bool
    breaker: Breaker
    transition: Transition | None


def admit(b: Breaker, now: datetime, cfg: BreakerConfig) -> Verdict:
    """Whether a request may go to the resource now, and the state to store if one starts."""
    if b.state == State.CLOSED:
        return Verdict(allowed=True, trial=False, breaker=b, transition=None)
    if b.state == State.OPEN:
        # An open row without opened_at is corrupt; letting one trial through heals it.
        if b.opened_at is not None and _seconds(b.opened_at, now) < cfg.cool_down_seconds:
            return Verdict(allowed=False, trial=False, breaker=b, transition=None)
        half_open = replace(b, state=State.HALF_OPEN, trial_started_at=now)
        transition = Transition(State.OPEN, State.HALF_OPEN, "cool-down elapsed")
        return Verdict(allowed=True, trial=True, breaker=half_open, transition=transition)
    trial_lost = (
        b.trial_started_at is None or _seconds(b.trial_started_at, now) >= cfg.trial_timeout_seconds
    )
    if not trial_lost:
        return Verdict(allowed=False, trial=False, breaker=b, transition=None)
    return Verdict(
        allowed=True, trial=True, breaker=replace(b, trial_started_at=now), transition=None
    )


def record_success(
    b: Breaker, now: datetime, cfg: BreakerConfig
) -> tuple[Breaker, Transition | None]:
    """Account for a request that succeeded; a half-open trial success closes the breaker."""
    if b.state == State.HALF_OPEN:
        return _closed(b, now), Transition(State.HALF_OPEN, State.CLOSED, "trial succeeded")
    if b.state == State.OPEN:
        # A late answer to a request admitted before the breaker opened: noted, not acted on.
        return replace(b, last_success_at=now), None
    counted = _count_in_window(b, now, cfg, failed=False)
    return replace(
        counted,
        consecutive_failures=0,
        consecutive_successes=b.consecutive_successes + 1,
        last_success_at=now,
    ), None


def record_failure(
    b: Breaker, now: datetime, cfg: BreakerConfig
) -> tuple[Breaker, Transition | None]:
    """Account for a request that failed; opens on the consecutive or failure-rate rule."""
    failed = replace(
        b,
        consecutive_failures=b.consecutive_failures + 1,
        consecutive_successes=0,
        last_failure_at=now,
    )
    if b.state == State.HALF_OPEN:
        return _opened(failed, now), Transition(State.HALF_OPEN, State.OPEN, "trial failed")
    if b.state == State.OPEN:
        return failed, None
    counted = _count_in_window(failed, now, cfg, failed=True)
    reason = _open_reason(counted, cfg)
    if reason is None:
        return counted, None
    return _opened(counted, now), Transition(State.CLOSED, State.OPEN, reason)


def record_probe(
    b: Breaker, ok: bool, now: datetime, cfg: BreakerConfig
) -> tuple[Breaker, Transition | None]:
    """Account for an active health check; probes never count in the request window."""
    if ok:
        probed = replace(
            b, probe_successes=b.probe_successes + 1, probe_failures=0, last_success_at=now
        )
        if b.state == State.CLOSED or probed.probe_successes < cfg.healthy_threshold:
            return probed, None
        reason = f"probe: {probed.probe_successes} consecutive successes"
        return _closed(probed, now), Transition(b.state, State.CLOSED, reason)
    probed = replace(b, probe_failures=b.probe_failures + 1, probe_successes=0, last_failure_at=now)
    if b.state != State.CLOSED or probed.probe_failures < cfg.unhealthy_threshold:
        return probed, None
    reason = f"probe: {probed.probe_failures} consecutive failures"
    return _opened(probed, now), Transition(State.CLOSED, State.OPEN, reason)


def panic_choice(candidates: Sequence[tuple[K, Breaker]]) -> K | None:
    """Last resort when all are refused: the oldest last failure wins, never-failed first."""
    if not candidates:
        return None
    key, _ = min(candidates, key=lambda candidate: _failure_age_order(candidate[1]))
    return key


def is_healthy(b: Breaker) -> bool:
    """Whether the breaker is closed."""
    return b.state == State.CLOSED


def _seconds(since: datetime, now: datetime) -> float:
    return (now - since).total_seconds()


def _count_in_window(b: Breaker, now: datetime, cfg: BreakerConfig, *, failed: bool) -> Breaker:
    expired = (
        b.window_started_at is None or _seconds(b.window_started_at, now) >= cfg.window_seconds
    )
    if expired:
        b = replace(b, window_started_at=now, window_requests=0, window_failures=0)
    return replace(
        b,
        window_requests=b.window_requests + 1,
        window_failures=b.window_failures + int(failed),
    )


def _open_reason(b: Breaker, cfg: BreakerConfig) -> str | None:
    if b.consecutive_failures >= cfg.consecutive_failures:
        return f"{b.consecutive_failures} consecutive failures"
    if b.window_requests < cfg.min_requests:
        return None
    rate = b.window_failures / b.window_requests
    if rate < cfg.failure_rate:
        return None
    return f"failure rate {rate:.0%} over {b.window_requests} requests"


def _opened(b: Breaker, now: datetime) -> Breaker:
    # Probe successes from before the outage must not count towards closing it again.
    return replace(b, state=State.OPEN, opened_at=now, trial_started_at=None, probe_successes=0)


def _closed(b: Breaker, now: datetime) -> Breaker:
    # A closed breaker starts from clean counters; only the failure history survives.
    return Breaker(last_failure_at=b.last_failure_at, last_success_at=now)


def _failure_age_order(b: Breaker) -> tuple[bool, float]:
    failed_at = b.last_failure_at
    return (failed_at is not None, failed_at.timestamp() if failed_at is not None else 0.0)
