"""The breaker state machine, driven with explicit datetimes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dispatch.gateway.breaker import (
    Breaker,
    BreakerConfig,
    State,
    Transition,
    admit,
    is_healthy,
    panic_choice,
    record_failure,
    record_probe,
    record_success,
)

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
CFG = BreakerConfig()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def requests(
    b: Breaker, outcomes: str, start: float = 0.0, cfg: BreakerConfig = CFG
) -> tuple[Breaker, list[Transition]]:
    """Apply ``s``/``f`` request outcomes one second apart."""
    transitions: list[Transition] = []
    for i, outcome in enumerate(outcomes):
        record = record_failure if outcome == "f" else record_success
        b, transition = record(b, at(start + i), cfg)
        if transition is not None:
            transitions.append(transition)
    return b, transitions


def open_breaker(opened: float = 0.0) -> Breaker:
    return Breaker(state=State.OPEN, opened_at=at(opened), last_failure_at=at(opened))


def half_open(trial_started: float = 30.0) -> Breaker:
    verdict = admit(open_breaker(), at(trial_started), CFG)
    assert verdict.trial
    return verdict.breaker


# --- closed: consecutive failures -------------------------------------------------------------


def test_opens_after_consecutive_failures() -> None:
    b, transitions = requests(Breaker(), "ffff")
    assert b.state is State.CLOSED
    assert transitions == []
    b, transition = record_failure(b, at(4), CFG)
    assert b.state is State.OPEN
    assert b.opened_at == at(4)
    assert b.last_failure_at == at(4)
    assert transition == Transition(State.CLOSED, State.OPEN, "5 consecutive failures")


def test_success_resets_consecutive_failures() -> None:
    b, _ = requests(Breaker(), "ffff")
    b, transition = record_success(b, at(4), CFG)
    assert transition is None
    assert b.consecutive_failures == 0
    assert b.consecutive_successes == 1
    assert b.last_success_at == at(4)
    b, transitions = requests(b, "ffff", start=5)
    assert b.state is State.CLOSED
    assert transitions == []


def test_failure_resets_consecutive_successes() -> None:
    b, _ = record_success(Breaker(), at(0), CFG)
    b, _ = record_success(b, at(1), CFG)
    assert b.consecutive_successes == 2
    b, _ = record_failure(b, at(2), CFG)
    assert b.consecutive_successes == 0
    assert b.consecutive_failures == 1


def test_admit_closed_is_allowed_without_trial() -> None:
    b = Breaker()
    verdict = admit(b, at(0), CFG)
    assert verdict.allowed
    assert not verdict.trial
    assert verdict.breaker == b
    assert verdict.transition is None


# --- closed: failure rate over a window ---------------------------------------------------------


def test_opens_on_failure_rate_once_min_requests_reached() -> None:
    b, transitions = requests(Breaker(), "sfsffsfsf")  # 9 requests, 5 failures
    assert b.state is State.CLOSED
    assert transitions == []
    b, transition = record_failure(b, at(9), CFG)  # 10 requests, 6 failures
    assert b.state is State.OPEN
    assert transition == Transition(State.CLOSED, State.OPEN, "failure rate 60% over 10 requests")


def test_rate_exactly_at_threshold_opens() -> None:
    b, _ = requests(Breaker(), "sfsfsfsfs")  # 9 requests, 4 failures
    b, transition = record_failure(b, at(9), CFG)  # 10 requests, 5 failures: 50%
    assert transition is not None
    assert transition.reason == "failure rate 50% over 10 requests"


def test_rate_below_threshold_stays_closed() -> None:
    b, transitions = requests(Breaker(), "ssfsfsfsfs" * 3)  # 40% failures
    assert b.state is State.CLOSED
    assert transitions == []


def test_high_rate_below_min_requests_stays_closed() -> None:
    cfg = BreakerConfig(consecutive_failures=100, min_requests=11)
    b, transitions = requests(Breaker(), "ffffsffffs", cfg=cfg)
    assert b.state is State.CLOSED
    assert (b.window_requests, b.window_failures) == (10, 8)
    assert transitions == []
    b, transition = record_failure(b, at(10), cfg)
    assert transition == Transition(State.CLOSED, State.OPEN, "failure rate 82% over 11 requests")


def test_window_resets_after_window_seconds() -> None:
    b, _ = requests(Breaker(), "sfsfsfsfs")  # 9 requests, 4 failures in window at t=0
    assert b.window_started_at == at(0)
    b, transition = record_failure(b, at(60), CFG)  # window elapsed: a new one starts
    assert transition is None
    assert b.state is State.CLOSED
    assert b.window_started_at == at(60)
    assert b.window_requests == 1
    assert b.window_failures == 1


def test_window_just_before_expiry_still_counts() -> None:
    b, _ = requests(Breaker(), "sfsfsfsfs")
    b, transition = record_failure(b, at(59.9), CFG)
    assert b.window_started_at == at(0)
    assert transition is not None
    assert b.state is State.OPEN


def test_success_starts_and_counts_in_window() -> None:
    b, _ = record_success(Breaker(), at(5), CFG)
    assert b.window_started_at == at(5)
    assert (b.window_requests, b.window_failures) == (1, 0)


# --- open -> half_open -> closed / open ---------------------------------------------------------


def test_open_refuses_until_cool_down() -> None:
    b = open_breaker()
    verdict = admit(b, at(29.9), CFG)
    assert not verdict.allowed
    assert not verdict.trial
    assert verdict.breaker == b
    assert verdict.transition is None


def test_cool_down_elapsed_starts_a_trial() -> None:
    verdict = admit(open_breaker(), at(30), CFG)
    assert verdict.allowed
    assert verdict.trial
    assert verdict.breaker.state is State.HALF_OPEN
    assert verdict.breaker.trial_started_at == at(30)
    assert verdict.transition == Transition(State.OPEN, State.HALF_OPEN, "cool-down elapsed")


def test_only_one_trial_at_a_time() -> None:
    b = half_open(30)
    for seconds in (30, 31, 89.9):
        verdict = admit(b, at(seconds), CFG)
        assert not verdict.allowed
        assert not verdict.trial
        assert verdict.breaker == b
        assert verdict.transition is None


def test_lost_trial_after_timeout_allows_another() -> None:
    b = half_open(30)
    verdict = admit(b, at(90), CFG)
    assert verdict.allowed
    assert verdict.trial
    assert verdict.transition is None
    assert verdict.breaker.state is State.HALF_OPEN
    assert verdict.breaker.trial_started_at == at(90)
    assert not admit(verdict.breaker, at(91), CFG).allowed


def test_half_open_without_trial_timestamp_allows_a_trial() -> None:
    verdict = admit(Breaker(state=State.HALF_OPEN), at(0), CFG)
    assert verdict.allowed
    assert verdict.trial


def test_open_without_opened_at_lets_a_trial_through() -> None:
    verdict = admit(Breaker(state=State.OPEN), at(0), CFG)
    assert verdict.trial
    assert verdict.breaker.state is State.HALF_OPEN


def test_trial_success_closes_and_resets_counters() -> None:
    b, _ = requests(Breaker(), "fffff")
    b = admit(b, at(40), CFG).breaker
    b, transition = record_success(b, at(41), CFG)
    assert transition == Transition(State.HALF_OPEN, State.CLOSED, "trial succeeded")
    assert b == Breaker(last_failure_at=at(4), last_success_at=at(41))
    assert is_healthy(b)


def test_trial_failure_reopens_with_fresh_opened_at() -> None:
    b = half_open(30)
    b, transition = record_failure(b, at(35), CFG)
    assert transition == Transition(State.HALF_OPEN, State.OPEN, "trial failed")
    assert b.state is State.OPEN
    assert b.opened_at == at(35)
    assert b.trial_started_at is None
    assert b.last_failure_at == at(35)
    assert not admit(b, at(64.9), CFG).allowed
    assert admit(b, at(65), CFG).trial


def test_late_results_while_open_do_not_change_state() -> None:
    b = open_breaker()
    after_success, transition = record_success(b, at(1), CFG)
    assert transition is None
    assert after_success.state is State.OPEN
    assert after_success.last_success_at == at(1)
    after_failure, transition = record_failure(b, at(2), CFG)
    assert transition is None
    assert after_failure.state is State.OPEN
    assert after_failure.opened_at == at(0)
    assert after_failure.last_failure_at == at(2)


# --- active probes ------------------------------------------------------------------------------


def probe(b: Breaker, outcomes: str, start: float = 0.0) -> tuple[Breaker, list[Transition]]:
    transitions: list[Transition] = []
    for i, outcome in enumerate(outcomes):
        b, transition = record_probe(b, outcome == "+", at(start + i), CFG)
        if transition is not None:
            transitions.append(transition)
    return b, transitions


def test_probe_failures_open_a_closed_breaker() -> None:
    b, transitions = probe(Breaker(), "--")
    assert b.state is State.CLOSED
    assert b.last_failure_at == at(1)
    b, transitions = probe(b, "-", start=2)
    assert b.state is State.OPEN
    assert b.opened_at == at(2)
    assert transitions == [Transition(State.CLOSED, State.OPEN, "probe: 3 consecutive failures")]


def test_probe_success_interrupts_failure_run() -> None:
    b, transitions = probe(Breaker(), "--+--")
    assert b.state is State.CLOSED
    assert transitions == []


def test_probes_do_not_count_in_request_window() -> None:
    b, _ = probe(Breaker(), "--+-")
    assert b.window_started_at is None
    assert (b.window_requests, b.window_failures) == (0, 0)
    assert b.consecutive_failures == 0


def test_probe_successes_close_an_open_breaker() -> None:
    b, transitions = probe(open_breaker(), "+")
    assert b.state is State.OPEN
    b, transitions = probe(b, "+", start=1)
    assert transitions == [Transition(State.OPEN, State.CLOSED, "probe: 2 consecutive successes")]
    assert b == Breaker(last_failure_at=at(0), last_success_at=at(1))


def test_probe_successes_close_a_half_open_breaker() -> None:
    b, transitions = probe(half_open(30), "++", start=31)
    assert transitions == [
        Transition(State.HALF_OPEN, State.CLOSED, "probe: 2 consecutive successes")
    ]
    assert b.state is State.CLOSED
    assert b.trial_started_at is None


def test_probe_failure_while_open_keeps_it_open_and_resets_successes() -> None:
    b, transitions = probe(open_breaker(), "+-+-+")
    assert b.state is State.OPEN
    assert transitions == []
    assert b.last_failure_at == at(3)


def test_probe_successes_from_before_opening_do_not_close_it() -> None:
    b, _ = probe(Breaker(), "+++")
    assert b.probe_successes == 3
    b, _ = requests(b, "fffff", start=10)
    assert b.state is State.OPEN
    b, transitions = probe(b, "+", start=20)
    assert b.state is State.OPEN
    assert transitions == []


def test_probe_failures_do_not_act_on_open_or_half_open() -> None:
    for start in (open_breaker(), half_open(30)):
        b, transitions = probe(start, "-----", start=31)
        assert b.state is start.state
        assert transitions == []


# --- transitions and health ---------------------------------------------------------------------


def test_transitions_only_on_state_change() -> None:
    b = Breaker()
    states: list[tuple[State, State]] = []
    steps = [("f", 0)] * 5 + [("admit", 10), ("admit", 40), ("admit", 41), ("s", 42), ("s", 43)]
    for step, seconds in steps:
        if step == "admit":
            verdict = admit(b, at(seconds), CFG)
            b, transition = verdict.breaker, verdict.transition
        elif step == "f":
            b, transition = record_failure(b, at(seconds), CFG)
        else:
            b, transition = record_success(b, at(seconds), CFG)
        if transition is not None:
            assert transition.old is not transition.new
            states.append((transition.old, transition.new))
    assert states == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


@pytest.mark.parametrize(
    ("state", "healthy"),
    [(State.CLOSED, True), (State.OPEN, False), (State.HALF_OPEN, False)],
)
def test_is_healthy(state: State, healthy: bool) -> None:
    assert is_healthy(Breaker(state=state)) is healthy


def test_state_values_are_stable_strings() -> None:
    assert [s.value for s in State] == ["closed", "open", "half_open"]


# --- panic choice -------------------------------------------------------------------------------


def test_panic_choice_empty_is_none() -> None:
    assert panic_choice([]) is None


def test_panic_choice_prefers_never_failed_then_oldest_failure() -> None:
    candidates = [
        ("recent", open_breaker(50)),
        ("oldest", open_breaker(10)),
        ("middle", open_breaker(30)),
    ]
    assert panic_choice(candidates) == "oldest"
    never = ("never", Breaker(state=State.OPEN, opened_at=at(60)))
    assert panic_choice([*candidates, never]) == "never"


def test_panic_choice_ties_by_input_order() -> None:
    assert panic_choice([("a", open_breaker(5)), ("b", open_breaker(5))]) == "a"
    assert panic_choice([("b", open_breaker(5)), ("a", open_breaker(5))]) == "b"
    assert panic_choice([(2, Breaker()), (1, Breaker())]) == 2


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"consecutive_failures": 0},
        {"min_requests": 0},
        {"healthy_threshold": 0},
        {"unhealthy_threshold": 0},
        {"failure_rate": 0.0},
        {"failure_rate": 1.5},
        {"window_seconds": 0.0},
        {"cool_down_seconds": -1.0},
        {"trial_timeout_seconds": 0.0},
    ],
)
def test_config_rejects_nonsense(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        replace(CFG, **overrides)
