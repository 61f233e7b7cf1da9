"""Which events a (rule, listing) pair emits when the listing changes, and what to remember.

Pure: the caller passes the remembered ``PairState``, the listing as it is now and the time
(``at``: when the change was observed, timezone-aware); no clock is read. Price alerts are
measured from a reference price: the price when the pair first matched, then the price at
the last price event. Drops smaller than the threshold accumulate (the reference stays)
until together they clear it; a rise moves the reference up at once, alerted only when
PRICE_RISE is on and the rise clears the same threshold. Within ``cooldown`` of an alert of
the same type, a repeat is emitted only when it beats the last alerted price by the
threshold, so a price flapping 100 -> 80 -> 100 -> 80 alerts once (and the reference goes back
to the price last alerted); stock flapping likewise alerts BACK_IN_STOCK once per cooldown.

Dedupe keys come from the event type, the values that triggered it and the previous state
(never from ``at`` alone), so processing the same change twice from the same state yields
the same keys, while a later, genuine repeat gets a new one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

ENDED = "ended"
ACTIVE = "active"


class EventType(StrEnum):
    """What a watch event reports; the values are stored and shown as they are."""

    NEW_MATCH = "NEW_MATCH"
    PRICE_DROP = "PRICE_DROP"
    PRICE_RISE = "PRICE_RISE"
    BACK_IN_STOCK = "BACK_IN_STOCK"
    ENDED = "ENDED"
    LOWEST_IN_DAYS = "LOWEST_IN_DAYS"
    RULE_CREATED = "RULE_CREATED"
    RULE_UPDATED = "RULE_UPDATED"
    RULE_ENABLED = "RULE_ENABLED"
    RULE_DISABLED = "RULE_DISABLED"
    RULE_DELETED = "RULE_DELETED"


@dataclass(frozen=True, slots=True)
class NotifyOn:
    """A rule's notification settings.

    The price threshold (``drop_amount_minor``, ``drop_percent``) applies to drops, rises and
    repeats alike: with neither set any change of one minor unit counts; with both set a
    change clearing either one counts.
    """

    new_match: bool = True
    price_drop: bool = True
    drop_amount_minor: int | None = None
    drop_percent: float | None = None
    price_rise: bool = False
    back_in_stock: bool = True
    ended: bool = False
    lowest_in_days: int | None = None

    def __post_init__(self) -> None:
        if self.drop_amount_minor is not None and self.drop_amount_minor < 1:
            raise ValueError("drop_amount_minor must be at least 1")
        if self.drop_percent is not None and not 0 < self.drop_percent <= 100:
            raise ValueError("drop_percent must be above 0 and at most 100")
        if self.lowest_in_days is not None and self.lowest_in_days < 1:
            raise ValueError("lowest_in_days must be at least 1")

    def meets(self, change_minor: int, base_minor: int) -> bool:
        """Whether a price change of ``change_minor`` from ``base_minor`` clears the threshold."""
        amount, percent = self.drop_amount_minor, self.drop_percent
        if change_minor < 1:
            return False
        if amount is None and percent is None:
            return True
        if amount is not None and change_minor >= amount:
            return True
        return percent is not None and change_minor * 100 >= base_minor * percent

    def thresholds(self) -> dict[str, object]:
        """The threshold as shown in an event's details."""
        amount, percent = self.drop_amount_minor, self.drop_percent
        if amount is None and percent is None:
            combined = "any change"
        else:
            combined = "either" if amount is not None and percent is not None else "the one set"
        return {"min_amount_minor": amount, "min_percent": percent, "combined": combined}


@dataclass(frozen=True, slots=True)
class LastEvent:
    """The latest event of one type for a pair, with the price it reported."""

    type: EventType
    at: datetime
    price_minor: int | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class PairState:
    """What is remembered per (rule, listing); stored as JSON through ``to_json``."""

    price_minor: int | None
    currency: str | None  # of the reference (and of price_minor when known)
    in_stock: bool
    status: str
    reference_price_minor: int | None
    last_events: tuple[LastEvent, ...] = ()  # at most one per type, ordered by type
    out_of_stock_since: datetime | None = None

    def last(self, event_type: EventType) -> LastEvent | None:
        """The latest event of that type, if any."""
        return next((e for e in self.last_events if e.type == event_type), None)

    def last_event_at(self, event_type: EventType) -> datetime | None:
        """When the latest event of that type was emitted, if ever."""
        last = self.last(event_type)
        return last.at if last else None

    @property
    def last_alerted_price_minor(self) -> int | None:
        """The price reported by the latest PRICE_DROP or PRICE_RISE."""
        alerts = [self.last(EventType.PRICE_DROP), self.last(EventType.PRICE_RISE)]
        latest = max((a for a in alerts if a), key=lambda a: a.at, default=None)
        return latest.price_minor if latest else None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict; times as ISO 8601 UTC strings."""
        return {
            "price_minor": self.price_minor,
            "currency": self.currency,
            "in_stock": self.in_stock,
            "status": self.status,
            "reference_price_minor": self.reference_price_minor,
            "out_of_stock_since": _iso(self.out_of_stock_since),
            "last_events": {
                str(e.type): {
                    "at": _iso(e.at),
                    "price_minor": e.price_minor,
                    "currency": e.currency,
                }
                for e in self.last_events
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> PairState:
        """The state ``to_json`` produced; ValueError when it is malformed."""
        in_stock, status, events = data.get("in_stock"), data.get("status"), data.get("last_events")
        if not isinstance(in_stock, bool) or not isinstance(status, str):
            raise ValueError("pair state needs a boolean in_stock and a string status")
        if not isinstance(events, Mapping):
            raise ValueError("pair state last_events must be an object")
        return cls(
            price_minor=_int(data, "price_minor"),
            currency=_str(data, "currency"),
            in_stock=in_stock,
            status=status,
            reference_price_minor=_int(data, "reference_price_minor"),
            last_events=_sorted(_last_event(kind, value) for kind, value in events.items()),
            out_of_stock_since=_time(data, "out_of_stock_since"),
        )


@dataclass(frozen=True, slots=True)
class Observation:
    """The listing now, as far as events go.

    ``low_in_days_minor`` is the listing's lowest price over the rule's ``lowest_in_days``
    before now, in the listing's current currency (the caller's job), or None when unknown.
    """

    price_minor: int | None
    currency: str | None
    in_stock: bool
    status: str = ACTIVE
    low_in_days_minor: int | None = None


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An event to write; unique per (rule, listing, dedupe_key) in the database."""

    type: EventType
    dedupe_key: str
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """The events to emit and the state to remember instead of the previous one."""

    events: tuple[EventDraft, ...]
    state: PairState


class _Outcome:
    """Collects the events of one decision and the state's per-type record of them."""

    def __init__(self, previous: tuple[LastEvent, ...], at: datetime) -> None:
        self.at = at
        self.events: list[EventDraft] = []
        self.last = {e.type: e for e in previous}

    def emit(self, draft: EventDraft, price: int | None, currency: str | None) -> None:
        self.events.append(draft)
        self.last[draft.type] = LastEvent(draft.type, self.at, price, currency)

    def last_events(self) -> tuple[LastEvent, ...]:
        return _sorted(self.last.values())


def decide(
    notify: NotifyOn,
    previous: PairState | None,
    now_obs: Observation,
    at: datetime,
    cooldown: timedelta,
) -> Decision:
    """The events the pair emits now and its new state; ``previous`` None: it just matched."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be timezone-aware")
    if cooldown < timedelta(0):
        raise ValueError("cooldown cannot be negative")
    at = at.astimezone(UTC)
    if previous is None:
        return _fresh(notify, now_obs, at, ())
    if now_obs.status == ENDED:
        return _ended(notify, previous, now_obs, at)
    if previous.status == ENDED:
        # Relisted: a new life for the listing, measured from its price now.
        return _fresh(notify, now_obs, at, previous.last_events)
    return _changed(notify, previous, now_obs, at, cooldown)


def _fresh(
    notify: NotifyOn, obs: Observation, at: datetime, last_events: tuple[LastEvent, ...]
) -> Decision:
    """First sight, or a relisting: state from the observation; NEW_MATCH once per pair."""
    out = _Outcome(last_events, at)
    if notify.new_match and obs.status != ENDED and EventType.NEW_MATCH not in out.last:
        details: dict[str, object] = {
            "price_minor": obs.price_minor,
            "currency": obs.currency,
            "in_stock": obs.in_stock,
        }
        out.emit(
            EventDraft(EventType.NEW_MATCH, "NEW_MATCH", details), obs.price_minor, obs.currency
        )
    state = PairState(
        price_minor=obs.price_minor,
        currency=obs.currency,
        in_stock=obs.in_stock,
        status=obs.status,
        reference_price_minor=obs.price_minor,
        last_events=out.last_events(),
        out_of_stock_since=None if obs.in_stock else at,
    )
    return Decision(tuple(out.events), state)


def _observed(previous: PairState, obs: Observation, at: datetime) -> PairState:
    """The previous state with the observation recorded; the reference is left alone."""
    since = previous.out_of_stock_since if not previous.in_stock else None
    since = None if obs.in_stock else since or at
    known = obs.price_minor is not None
    return replace(
        previous,
        price_minor=obs.price_minor,
        currency=obs.currency if known else previous.currency,
        in_stock=obs.in_stock,
        status=obs.status,
        out_of_stock_since=since,
    )


def _ended(notify: NotifyOn, previous: PairState, obs: Observation, at: datetime) -> Decision:
    """An ended listing emits ENDED once per ending and nothing about price or stock."""
    out = _Outcome(previous.last_events, at)
    if notify.ended and previous.status != ENDED:
        key = f"ENDED:{_mark(previous.last(EventType.ENDED))}"
        details: dict[str, object] = {"price_minor": obs.price_minor, "currency": obs.currency}
        out.emit(EventDraft(EventType.ENDED, key, details), obs.price_minor, obs.currency)
    state = replace(_observed(previous, obs, at), last_events=out.last_events())
    return Decision(tuple(out.events), state)


def _changed(
    notify: NotifyOn, previous: PairState, obs: Observation, at: datetime, cooldown: timedelta
) -> Decision:
    """An active listing that still matches: price, stock and lowest-price events."""
    out = _Outcome(previous.last_events, at)
    reference = _price_events(notify, previous, obs, cooldown, out)
    _stock_event(notify, previous, obs, cooldown, out)
    _lowest_event(notify, previous, obs, cooldown, out)
    state = replace(
        _observed(previous, obs, at),
        reference_price_minor=reference,
        last_events=out.last_events(),
    )
    return Decision(tuple(out.events), state)


def _price_events(
    notify: NotifyOn, previous: PairState, obs: Observation, cooldown: timedelta, out: _Outcome
) -> int | None:
    """Emit PRICE_DROP or PRICE_RISE when due; returns the new reference price."""
    price, reference = obs.price_minor, previous.reference_price_minor
    if price is None:
        return reference
    if reference is None or obs.currency != previous.currency:
        return price  # nothing to compare with: a new reference, silently
    if price < reference:
        if not notify.price_drop:
            return price
        if not notify.meets(reference - price, reference):
            return reference  # small drops add up until they clear the threshold
        return _price_alert(
            EventType.PRICE_DROP, notify, previous, (reference, price), obs, cooldown, out
        )
    if price > reference and notify.price_rise and notify.meets(price - reference, reference):
        return _price_alert(
            EventType.PRICE_RISE, notify, previous, (reference, price), obs, cooldown, out
        )
    return price


def _price_alert(
    kind: EventType,
    notify: NotifyOn,
    previous: PairState,
    change: tuple[int, int],
    obs: Observation,
    cooldown: timedelta,
    out: _Outcome,
) -> int:
    """Alert a change (reference, price) that cleared the threshold; returns the new reference.

    A repeat of an alert from within the cooldown is dropped, and the reference goes back to
    the price that alert reported: later changes are measured from what the user was told.
    """
    (reference, price), currency = change, obs.currency
    recent = previous.last(kind)
    falling = kind == EventType.PRICE_DROP
    repeated = _repeated_price(notify, recent, out.at, cooldown, price, currency, falling=falling)
    if repeated is not None:
        return repeated
    details: dict[str, object] = {
        "previous_price_minor": reference,
        "price_minor": price,
        "currency": currency,
        "change_minor": price - reference,
        "change_percent": _percent(price - reference, reference),
        "last_alerted_price_minor": recent.price_minor if recent else None,
        "thresholds": notify.thresholds(),
    }
    key = f"{kind}:{price}:{currency}:{_mark(recent)}"
    out.emit(EventDraft(kind, key, details), price, currency)
    return price


def _repeated_price(
    notify: NotifyOn,
    recent: LastEvent | None,
    at: datetime,
    cooldown: timedelta,
    price: int,
    currency: str | None,
    *,
    falling: bool,
) -> int | None:
    """The price of the alert (``recent``) this one would repeat, or None when it is news.

    Within the cooldown, an alert is news only when it beats the last one by the threshold.
    """
    if recent is None or recent.price_minor is None or recent.currency != currency:
        return None
    if at - recent.at >= cooldown:
        return None
    beyond = recent.price_minor - price if falling else price - recent.price_minor
    return None if notify.meets(beyond, recent.price_minor) else recent.price_minor


def _stock_event(
    notify: NotifyOn, previous: PairState, obs: Observation, cooldown: timedelta, out: _Outcome
) -> None:
    if previous.in_stock or not obs.in_stock or not notify.back_in_stock:
        return
    recent = previous.last(EventType.BACK_IN_STOCK)
    if recent is not None and out.at - recent.at < cooldown:
        return  # the stock flag is flapping
    since = previous.out_of_stock_since
    details: dict[str, object] = {
        "out_of_stock_since": _iso(since),
        "price_minor": obs.price_minor,
        "currency": obs.currency,
    }
    key = f"BACK_IN_STOCK:{_iso(since) if since else _mark(recent)}"
    out.emit(EventDraft(EventType.BACK_IN_STOCK, key, details), obs.price_minor, obs.currency)


def _lowest_event(
    notify: NotifyOn, previous: PairState, obs: Observation, cooldown: timedelta, out: _Outcome
) -> None:
    days, low, price = notify.lowest_in_days, obs.low_in_days_minor, obs.price_minor
    if days is None or low is None or price is None or price >= low:
        return
    if price == previous.price_minor and obs.currency == previous.currency:
        return  # only a price change can set a new low
    recent = previous.last(EventType.LOWEST_IN_DAYS)
    repeated = _repeated_price(notify, recent, out.at, cooldown, price, obs.currency, falling=True)
    if repeated is not None:
        return
    details: dict[str, object] = {
        "days": days,
        "previous_low_minor": low,
        "price_minor": price,
        "currency": obs.currency,
        "change_minor": price - low,
        "change_percent": _percent(price - low, low),
    }
    key = f"LOWEST_IN_DAYS:{price}:{obs.currency}:{_mark(recent)}"
    out.emit(EventDraft(EventType.LOWEST_IN_DAYS, key, details), price, obs.currency)


def _percent(change: int, base: int) -> float | None:
    return round(change * 100 / base, 2) if base else None


def _mark(recent: LastEvent | None) -> str:
    """The previous event of the type, which tells one alert apart from a later repeat."""
    return recent.at.isoformat() if recent else "first"


def _sorted(events: Iterable[LastEvent]) -> tuple[LastEvent, ...]:
    return tuple(sorted(events, key=lambda e: e.type))


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _int(data: Mapping[str, object], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"pair state {key} must be an integer")
    return value


def _str(data: Mapping[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"pair state {key} must be a string")


def _time(data: Mapping[str, object], key: str) -> datetime | None:
    value = _str(data, key)
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"pair state {key} must carry a timezone")
    return parsed.astimezone(UTC)


def _last_event(kind: object, value: object) -> LastEvent:
    if not isinstance(kind, str) or kind not in EventType.__members__:
        raise ValueError(f"pair state has an unknown event type {kind!r}")
    if not isinstance(value, Mapping):
        raise ValueError(f"pair state event {kind} must be an object")
    at = _time(value, "at")
    if at is None:
        raise ValueError(f"pair state event {kind} needs a time")
    return LastEvent(EventType(kind), at, _int(value, "price_minor"), _str(value, "currency"))
