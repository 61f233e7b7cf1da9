"""Event decisions are pure: each event type, thresholds, cooldowns, dedupe keys, stored state."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest

from dispatch.watch.decisions import (
    Decision,
    EventType,
    NotifyOn,
    Observation,
    PairState,
    decide,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
COOLDOWN = timedelta(hours=6)


def seen(
    price: int | None = 10000,
    currency: str | None = "USD",
    *,
    in_stock: bool = True,
    status: str = "active",
    low: int | None = None,
) -> Observation:
    return Observation(price, currency, in_stock, status, low)


def run(
    notify: NotifyOn,
    observations: Sequence[Observation],
    *,
    step: timedelta = HOUR,
    cooldown: timedelta = COOLDOWN,
    state: PairState | None = None,
) -> tuple[list[Decision], PairState]:
    """Feed observations one ``step`` apart, from T0, threading the state through."""
    decisions = []
    for n, observation in enumerate(observations):
        decision = decide(notify, state, observation, T0 + n * step, cooldown)
        decisions.append(decision)
        state = decision.state
    assert state is not None
    return decisions, state


def types(decisions: Sequence[Decision]) -> list[list[EventType]]:
    return [[event.type for event in d.events] for d in decisions]


def prices(*values: int) -> list[Observation]:
    return [seen(value) for value in values]


def test_the_first_match_emits_new_match_and_sets_the_reference() -> None:
    decision = decide(NotifyOn(), None, seen(12999), T0, COOLDOWN)
    (event,) = decision.events
    assert event.type == EventType.NEW_MATCH
    assert event.dedupe_key == "NEW_MATCH"
    assert event.details == {"price_minor": 12999, "currency": "USD", "in_stock": True}
    state = decision.state
    assert (state.price_minor, state.currency, state.reference_price_minor) == (12999, "USD", 12999)
    assert (state.in_stock, state.status, state.out_of_stock_since) == (True, "active", None)
    assert state.last_event_at(EventType.NEW_MATCH) == T0


def test_new_match_can_be_switched_off() -> None:
    decision = decide(NotifyOn(new_match=False), None, seen(), T0, COOLDOWN)
    assert decision.events == ()
    assert decision.state.reference_price_minor == 10000


def test_an_ended_listing_is_not_announced_until_it_is_relisted() -> None:
    notify = NotifyOn(ended=True)
    decisions, _ = run(
        notify, [seen(status="ended"), seen(9000, status="ended"), seen(8000), seen(7000)]
    )
    assert types(decisions) == [[], [], [EventType.NEW_MATCH], [EventType.PRICE_DROP]]
    assert decisions[2].events[0].dedupe_key == "NEW_MATCH"
    assert decisions[2].state.reference_price_minor == 8000


def test_a_first_match_out_of_stock_remembers_since_when() -> None:
    decision = decide(NotifyOn(), None, seen(in_stock=False), T0, COOLDOWN)
    assert decision.state.out_of_stock_since == T0


@pytest.mark.parametrize(
    ("amount", "percent", "new_price", "alerted"),
    [
        (None, None, 9999, True),  # no threshold: any drop
        (None, None, 10000, False),
        (500, None, 9501, False),
        (500, None, 9500, True),
        (None, 10.0, 9001, False),
        (None, 10.0, 9000, True),
        (500, 10.0, 9500, True),  # both set: either one suffices (the amount here)
        (2000, 10.0, 9000, True),  # (the percent here)
        (2000, 30.0, 9000, False),  # neither
    ],
)
def test_drop_thresholds(
    amount: int | None, percent: float | None, new_price: int, alerted: bool
) -> None:
    notify = NotifyOn(drop_amount_minor=amount, drop_percent=percent)
    decisions, state = run(notify, prices(10000, new_price))
    assert types(decisions)[1] == ([EventType.PRICE_DROP] if alerted else [])
    assert state.reference_price_minor == (new_price if alerted else 10000)


def test_a_drop_explains_itself() -> None:
    notify = NotifyOn(drop_amount_minor=500, drop_percent=10.0)
    decisions, state = run(notify, prices(12999, 11000))
    (event,) = decisions[1].events
    assert event.dedupe_key == "PRICE_DROP:11000:USD:first"
    assert event.details == {
        "previous_price_minor": 12999,
        "price_minor": 11000,
        "currency": "USD",
        "change_minor": -1999,
        "change_percent": -15.38,
        "last_alerted_price_minor": None,
        "thresholds": {"min_amount_minor": 500, "min_percent": 10.0, "combined": "either"},
    }
    assert state.last_alerted_price_minor == 11000


def test_small_drops_add_up_to_one_alert() -> None:
    decisions, state = run(NotifyOn(drop_percent=10.0), prices(10000, 9500, 9100, 9000, 8900))
    assert types(decisions) == [[EventType.NEW_MATCH], [], [], [EventType.PRICE_DROP], []]
    assert decisions[3].events[0].details["previous_price_minor"] == 10000
    assert state.reference_price_minor == 9000


def test_a_flapping_price_alerts_once_within_the_cooldown() -> None:
    decisions, state = run(NotifyOn(), prices(100, 80, 100, 80, 100, 80))
    assert types(decisions)[1:] == [[EventType.PRICE_DROP], [], [], [], []]
    assert state.reference_price_minor == 80


def test_a_flapping_price_alerts_again_after_the_cooldown() -> None:
    decisions, _ = run(NotifyOn(), prices(100, 80, 100, 80), step=COOLDOWN / 2)
    assert types(decisions)[1:] == [[EventType.PRICE_DROP], [], [EventType.PRICE_DROP]]
    first, second = decisions[1].events[0], decisions[3].events[0]
    assert first.dedupe_key == "PRICE_DROP:80:USD:first"
    assert second.dedupe_key == f"PRICE_DROP:80:USD:{(T0 + COOLDOWN / 2).isoformat()}"


def test_a_new_low_within_the_cooldown_is_alerted() -> None:
    notify = NotifyOn(drop_percent=10.0)
    decisions, _ = run(notify, prices(10000, 8000, 10000, 7500, 7100, 7000))
    # 7500 repeats the 8000 alert (not 10% below it); 7100 is 11% below what the user was told.
    assert types(decisions)[1:] == [[EventType.PRICE_DROP], [], [], [EventType.PRICE_DROP], []]
    assert decisions[4].events[0].details["previous_price_minor"] == 8000
    assert decisions[4].events[0].details["last_alerted_price_minor"] == 8000


def test_rises_re_arm_the_reference_silently_by_default() -> None:
    decisions, state = run(NotifyOn(drop_percent=10.0), prices(10000, 12000, 11000, 10700))
    assert types(decisions)[1:] == [[], [], [EventType.PRICE_DROP]]
    assert decisions[3].events[0].details["previous_price_minor"] == 12000
    assert state.reference_price_minor == 10700


def test_drops_move_the_reference_down_when_drop_alerts_are_off() -> None:
    notify = NotifyOn(price_drop=False, price_rise=True, drop_percent=10.0)
    decisions, _ = run(notify, prices(10000, 5000, 6000))
    assert types(decisions)[1:] == [[], [EventType.PRICE_RISE]]
    assert decisions[2].events[0].details["change_percent"] == 20.0


def test_price_rises_when_enabled() -> None:
    notify = NotifyOn(price_rise=True, drop_percent=10.0)
    decisions, state = run(notify, prices(10000, 10500, 12000, 11900))
    # 10500 is under the threshold, yet the reference follows it up.
    assert types(decisions)[1:] == [[], [EventType.PRICE_RISE], []]
    (event,) = decisions[2].events
    assert event.dedupe_key == "PRICE_RISE:12000:USD:first"
    assert event.details["previous_price_minor"] == 10500
    assert event.details["change_minor"] == 1500
    assert event.details["change_percent"] == 14.29
    assert state.reference_price_minor == 12000


def test_rise_and_drop_flapping_alerts_each_once_within_the_cooldown() -> None:
    notify = NotifyOn(price_rise=True)
    decisions, _ = run(notify, prices(100, 120, 100, 120, 100))
    assert types(decisions)[1:] == [[EventType.PRICE_RISE], [EventType.PRICE_DROP], [], []]
    decisions, _ = run(notify, prices(100, 120, 100, 120, 100), step=COOLDOWN)
    assert types(decisions)[1:] == [
        [EventType.PRICE_RISE],
        [EventType.PRICE_DROP],
        [EventType.PRICE_RISE],
        [EventType.PRICE_DROP],
    ]


def test_a_currency_change_resets_the_reference_silently() -> None:
    observations = [seen(10000), seen(8000, "EUR"), seen(7000, "EUR")]
    decisions, state = run(NotifyOn(), observations)
    assert types(decisions)[1:] == [[], [EventType.PRICE_DROP]]
    assert decisions[1].state.reference_price_minor == 8000
    assert decisions[2].events[0].dedupe_key == "PRICE_DROP:7000:EUR:first"
    assert (state.currency, state.reference_price_minor) == ("EUR", 7000)


def test_an_alert_in_another_currency_is_no_reason_to_hold_back() -> None:
    observations = [seen(100), seen(80), seen(100, "EUR"), seen(80, "EUR")]
    decisions, _ = run(NotifyOn(), observations)
    assert types(decisions)[1:] == [[EventType.PRICE_DROP], [], [EventType.PRICE_DROP]]
    keys = {d.events[0].dedupe_key for d in (decisions[1], decisions[3])}
    assert len(keys) == 2


def test_a_missing_price_keeps_the_reference() -> None:
    decisions, _ = run(NotifyOn(), [seen(10000), seen(None, None), seen(9000)])
    assert types(decisions)[1:] == [[], [EventType.PRICE_DROP]]
    assert decisions[1].state.reference_price_minor == 10000
    assert decisions[1].state.currency == "USD"
    assert decisions[2].events[0].details["previous_price_minor"] == 10000


def test_back_in_stock() -> None:
    observations = [seen(), seen(in_stock=False), seen(in_stock=False), seen()]
    decisions, state = run(NotifyOn(), observations)
    assert types(decisions)[1:] == [[], [], [EventType.BACK_IN_STOCK]]
    assert decisions[1].state.out_of_stock_since == T0 + HOUR
    assert decisions[2].state.out_of_stock_since == T0 + HOUR  # since it went out, not since seen
    (event,) = decisions[3].events
    assert event.dedupe_key == f"BACK_IN_STOCK:{(T0 + HOUR).isoformat()}"
    assert event.details == {
        "out_of_stock_since": (T0 + HOUR).isoformat(),
        "price_minor": 10000,
        "currency": "USD",
    }
    assert state.out_of_stock_since is None
    assert state.in_stock


def test_back_in_stock_can_be_switched_off() -> None:
    decisions, _ = run(NotifyOn(back_in_stock=False), [seen(), seen(in_stock=False), seen()])
    assert types(decisions)[1:] == [[], []]


@pytest.mark.parametrize(("step", "alerts"), [(HOUR, 1), (COOLDOWN, 2)])
def test_stock_flapping(step: timedelta, alerts: int) -> None:
    observations = [seen(in_stock=flag) for flag in (True, False, True, False, True)]
    decisions, _ = run(NotifyOn(), observations, step=step)
    found = [e for d in decisions for e in d.events if e.type == EventType.BACK_IN_STOCK]
    assert len(found) == alerts
    assert len({e.dedupe_key for e in found}) == alerts


def test_ended_then_relisted() -> None:
    notify = NotifyOn(ended=True)
    observations = [
        seen(10000),
        seen(5000, in_stock=False, status="ended"),  # no drop nor stock event for an ended one
        seen(4000, status="ended"),
        seen(9000),  # relisted: nothing, measured from its price now
        seen(8000),
        seen(8000, status="ended"),
    ]
    decisions, state = run(notify, observations)
    assert types(decisions) == [
        [EventType.NEW_MATCH],
        [EventType.ENDED],
        [],
        [],
        [EventType.PRICE_DROP],
        [EventType.ENDED],
    ]
    first, second = decisions[1].events[0], decisions[5].events[0]
    assert first.dedupe_key == "ENDED:first"
    assert first.details == {"price_minor": 5000, "currency": "USD"}
    assert second.dedupe_key == f"ENDED:{(T0 + HOUR).isoformat()}"
    assert decisions[2].state.status == "ended"
    assert decisions[3].state.status == "active"
    assert decisions[3].state.reference_price_minor == 9000
    assert decisions[4].events[0].details["previous_price_minor"] == 9000
    assert state.status == "ended"


def test_ended_is_off_by_default_and_still_silences_price_events() -> None:
    observations = [seen(10000), seen(1000, status="ended"), seen(500, status="ended")]
    decisions, _ = run(NotifyOn(), observations)
    assert types(decisions)[1:] == [[], []]


@pytest.mark.parametrize(
    ("days", "low", "price", "alerted"),
    [
        (30, 9500, 9000, True),
        (30, 9000, 9000, False),  # strictly below the low
        (30, None, 9000, False),  # low unknown
        (None, 9500, 9000, False),  # not asked for
    ],
)
def test_lowest_in_days(days: int | None, low: int | None, price: int, alerted: bool) -> None:
    notify = NotifyOn(price_drop=False, lowest_in_days=days)
    decisions, _ = run(notify, [seen(10000), seen(price, low=low)])
    assert types(decisions)[1] == ([EventType.LOWEST_IN_DAYS] if alerted else [])
    if alerted:
        (event,) = decisions[1].events
        assert event.dedupe_key == "LOWEST_IN_DAYS:9000:USD:first"
        assert event.details == {
            "days": 30,
            "previous_low_minor": 9500,
            "price_minor": 9000,
            "currency": "USD",
            "change_minor": -500,
            "change_percent": -5.26,
        }


def test_lowest_in_days_comes_with_the_drop_and_only_on_a_price_change() -> None:
    notify = NotifyOn(lowest_in_days=30)
    observations = [seen(10000), seen(9000, low=9500), seen(9000, low=9500, in_stock=False)]
    decisions, _ = run(notify, observations, step=COOLDOWN)  # past the cooldown: no repeat to hide
    assert types(decisions)[1:] == [[EventType.PRICE_DROP, EventType.LOWEST_IN_DAYS], []]


@pytest.mark.parametrize(("step", "alerted"), [(HOUR, False), (COOLDOWN, True)])
def test_lowest_in_days_repeats_need_a_new_low_within_the_cooldown(
    step: timedelta, alerted: bool
) -> None:
    notify = NotifyOn(price_drop=False, drop_amount_minor=100, lowest_in_days=30)
    observations = [seen(10000), seen(9000, low=9500), seen(8950, low=9000)]
    decisions, _ = run(notify, observations, step=step)
    assert types(decisions)[2] == ([EventType.LOWEST_IN_DAYS] if alerted else [])
    decisions, _ = run(notify, [*observations[:2], seen(8900, low=9000)], step=step)
    assert types(decisions)[2] == [EventType.LOWEST_IN_DAYS]  # 100 below the last one


def test_reprocessing_the_same_change_gives_the_same_keys() -> None:
    notify = NotifyOn(ended=True, price_rise=True, lowest_in_days=7)
    _, state = run(notify, [seen(10000), seen(8000), seen(9000, in_stock=False)])
    for observation in (seen(7000, low=7500), seen(9500), seen(), seen(status="ended")):
        once = decide(notify, state, observation, T0 + 10 * HOUR, COOLDOWN)
        again = decide(notify, state, observation, T0 + 11 * HOUR, COOLDOWN)
        assert once.events
        assert [e.dedupe_key for e in once.events] == [e.dedupe_key for e in again.events]


def test_keys_differ_for_different_prices_and_currencies() -> None:
    keys = set()
    for currency in ("USD", "EUR"):
        start = decide(NotifyOn(), None, seen(10000, currency), T0, COOLDOWN).state
        for price in (8000, 7000):
            decision = decide(NotifyOn(), start, seen(price, currency), T0 + HOUR, COOLDOWN)
            keys.add(decision.events[0].dedupe_key)
    assert len(keys) == 4


def test_state_survives_a_json_round_trip() -> None:
    notify = NotifyOn(ended=True, price_rise=True, lowest_in_days=7)
    observations = [seen(10000), seen(8000, low=9000), seen(12000), seen(12000, in_stock=False)]
    _, state = run(notify, observations)
    stored = json.loads(json.dumps(state.to_json()))
    assert stored["last_events"]["PRICE_DROP"] == {
        "at": (T0 + HOUR).isoformat(),
        "price_minor": 8000,
        "currency": "USD",
    }
    assert stored["out_of_stock_since"] == (T0 + 3 * HOUR).isoformat()
    assert PairState.from_json(stored) == state
    assert {e.type for e in state.last_events} == {
        EventType.NEW_MATCH,
        EventType.PRICE_DROP,
        EventType.PRICE_RISE,
        EventType.LOWEST_IN_DAYS,
    }
    assert state.last_alerted_price_minor == 12000
    assert hash(state) == hash(PairState.from_json(stored))


def test_state_times_come_back_in_utc() -> None:
    stored = decide(NotifyOn(), None, seen(in_stock=False), T0, COOLDOWN).state.to_json()
    stored["out_of_stock_since"] = "2024-05-01T14:00:00+02:00"
    assert PairState.from_json(stored).out_of_stock_since == T0


@pytest.mark.parametrize(
    "change",
    [
        {"in_stock": "yes"},
        {"status": None},
        {"price_minor": "100"},
        {"price_minor": True},
        {"currency": 840},
        {"out_of_stock_since": "2024-05-01T12:00:00"},  # no timezone
        {"last_events": []},
        {"last_events": {"SOLD_OUT": {"at": "2024-05-01T12:00:00+00:00"}}},
        {"last_events": {"PRICE_DROP": {"price_minor": 5}}},
        {"last_events": {"PRICE_DROP": "yesterday"}},
    ],
)
def test_malformed_state_is_refused(change: dict[str, object]) -> None:
    stored = decide(NotifyOn(), None, seen(), T0, COOLDOWN).state.to_json()
    with pytest.raises(ValueError, match="pair state"):
        PairState.from_json({**stored, **change})


def test_times_are_normalised_to_utc() -> None:
    paris = timezone(timedelta(hours=2))
    decision = decide(NotifyOn(), None, seen(in_stock=False), T0.astimezone(paris), COOLDOWN)
    assert decision.state.out_of_stock_since == T0
    assert decision.state.to_json()["out_of_stock_since"] == "2024-05-01T12:00:00+00:00"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        decide(NotifyOn(), None, seen(), datetime(2024, 5, 1), COOLDOWN)
    with pytest.raises(ValueError, match="cooldown"):
        decide(NotifyOn(), None, seen(), T0, -HOUR)


@pytest.mark.parametrize(
    "settings",
    [
        {"drop_amount_minor": 0},
        {"drop_percent": 0.0},
        {"drop_percent": 150.0},
        {"lowest_in_days": 0},
    ],
)
def test_notify_settings_are_checked(settings: dict[str, int | float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        NotifyOn(**settings)  # type: ignore[arg-type]


def test_lifecycle_types_are_part_of_the_vocabulary() -> None:
    assert [str(t) for t in EventType] == [
        "NEW_MATCH",
        "PRICE_DROP",
        "PRICE_RISE",
        "BACK_IN_STOCK",
        "ENDED",
        "LOWEST_IN_DAYS",
        "RULE_CREATED",
        "RULE_UPDATED",
        "RULE_ENABLED",
        "RULE_DISABLED",
        "RULE_DELETED",
    ]
