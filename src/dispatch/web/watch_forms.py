"""The watch pages' pure parts: the rule and preferences forms, and how events read.

No I/O here. A rule form becomes the same ``WatchRuleCreate`` the JSON API validates (an
edit, a ``WatchRulePatch`` made from it), the preferences form a ``MePatch``; refused
input comes back as sentences for the form. An event reads as the notification e-mail
says it (``watch.messages.headline``): what happened, to which item, at what price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

from starlette.datastructures import FormData

from dispatch.models import WatchEvent, WatchNotification
from dispatch.watch.messages import Item, headline
from dispatch.watch.schemas import (
    Frequency,
    MePatch,
    NotifyOn,
    Preferences,
    WatchRuleCreate,
    WatchRuleOut,
    WatchRulePatch,
)
from dispatch.web.catalog_forms import web_link
from dispatch.web.gateway_forms import (
    FormSpec,
    Values,
    body,
    parse,
    values_from,
    values_from_form,
)

FREQUENCIES: tuple[Frequency, ...] = get_args(Frequency)
QUERY_LISTS = ("keywords", "exclude_keywords", "brands", "sizes")
QUERY_FIELDS = ("q", "currency", "min_price", "max_price", *QUERY_LISTS)
NOTIFY_FLAGS = ("new_match", "price_drop", "price_rise", "back_in_stock", "ended")
NOTIFY_NUMBERS = ("drop_amount", "drop_percent", "lowest_in_days")
RULE = FormSpec(
    text=("name", "q", "currency"),
    numbers=("poll_interval_seconds", "min_price", "max_price", *NOTIFY_NUMBERS),
    nullable=("q", "currency", "min_price", "max_price", *NOTIFY_NUMBERS),
    flags=("is_active", *NOTIFY_FLAGS),
    lists=QUERY_LISTS,
)
PREFERENCES = FormSpec(
    text=("display_name", "timezone", "currency", "notification_timezone", "delivery_frequency"),
    numbers=("quiet_hours_start", "quiet_hours_end"),
    nullable=("display_name", "notification_timezone", "quiet_hours_start", "quiet_hours_end"),
    flags=("notifications_email", "notifications_push", "notifications_webhook"),
)
WEBHOOK_URLS = "webhook_urls"  # a textarea, one URL a line (a URL may hold a comma)


# Rules -----------------------------------------------------------------------------------


def new_rule_values() -> Values:
    """A new rule's form: the API's defaults (active, every 10 minutes, the usual alerts)."""
    interval = WatchRuleCreate.model_fields["poll_interval_seconds"].default
    stored = {"is_active": True, "poll_interval_seconds": interval, **NotifyOn().model_dump()}
    return values_from(stored, RULE) | {"sources": []}


def rule_values(rule: WatchRuleOut) -> Values:
    """What the form shows for a stored rule."""
    stored = {
        "name": rule.name,
        "is_active": rule.is_active,
        "poll_interval_seconds": rule.poll_interval_seconds,
        **rule.query,
        **rule.notify_on.model_dump(),
    }
    return values_from(stored, RULE) | {"sources": list(rule.query.get("sources") or [])}


def rule_values_from_form(form: FormData) -> Values:
    """The rule form as submitted, to show again when it is refused."""
    sources = [value for value in form.getlist("sources") if isinstance(value, str)]
    return values_from_form(form, RULE) | {"sources": sources}


def _rule_body(values: Values) -> dict[str, Any]:
    flat = body(values, RULE)
    query: dict[str, Any] = {name: flat.pop(name) for name in QUERY_FIELDS}
    query |= {name: query[name] or None for name in QUERY_LISTS}  # blank: no such filter
    query["sources"] = values["sources"]
    notify = {name: flat.pop(name) for name in (*NOTIFY_FLAGS, *NOTIFY_NUMBERS)}
    return flat | {"query": query, "notify_on": notify}


def rule_create(values: Values) -> WatchRuleCreate:
    """The new rule the form stands for; FormInvalid says what the API would refuse."""
    return parse(WatchRuleCreate, _rule_body(values))


def rule_patch(values: Values, stored_query: Mapping[str, Any]) -> WatchRulePatch:
    """An edit: every field the form shows, checked as a whole rule first.

    Blank fields are sent as null so they clear; query fields the form does not show
    (``conditions``, set through the API) keep their stored values.
    """
    data = _rule_body(values)
    checked = parse(WatchRuleCreate, data | {"query": {**stored_query, **data["query"]}})
    return WatchRulePatch(
        name=checked.name,
        query=checked.query.model_dump(),
        notify_on=(checked.notify_on or NotifyOn()).model_dump(),
        poll_interval_seconds=checked.poll_interval_seconds,
    )


# Preferences -----------------------------------------------------------------------------


def preference_values(display_name: str | None, preferences: Preferences) -> Values:
    stored = {"display_name": display_name, **preferences.model_dump()}
    return values_from(stored, PREFERENCES) | {WEBHOOK_URLS: "\n".join(preferences.webhook_urls)}


def preference_values_from_form(form: FormData) -> Values:
    urls = form.get(WEBHOOK_URLS)
    return values_from_form(form, PREFERENCES) | {
        WEBHOOK_URLS: urls if isinstance(urls, str) else ""
    }


def me_patch(values: Values) -> MePatch:
    """The preferences form as ``PATCH /me`` takes it: the whole set, checked as a whole."""
    data = body(values, PREFERENCES)
    display_name = data.pop("display_name")
    data[WEBHOOK_URLS] = [
        line.strip() for line in values[WEBHOOK_URLS].splitlines() if line.strip()
    ]
    preferences = parse(Preferences, data)
    return parse(MePatch, {"display_name": display_name, "preferences": preferences.model_dump()})


# Events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventView:
    """An event as the pages list it."""

    id: int
    type: str
    headline: str
    rule_id: int | None
    rule_name: str | None
    why: str | None  # the match explanation's summary
    link: str | None  # the listing's page, when it is http(s)
    provider: str | None
    created_at: datetime


def _lifecycle_headline(event_type: str, rule_name: str | None) -> str:
    """``RULE_DISABLED`` -> ``Rule disabled: Dunks under 100``."""
    label = event_type.replace("_", " ").capitalize()
    return f"{label}: {rule_name}" if rule_name else label


def event_view(event: WatchEvent) -> EventView:
    payload = event.payload or {}
    rule = payload.get("rule") or {}
    listing = payload.get("listing") or {}
    rule_name = rule.get("name") if isinstance(rule.get("name"), str) else None
    if event.type.startswith("RULE_"):
        text = _lifecycle_headline(event.type, rule_name)
    else:
        text = headline(Item(event.type, payload, event.created_at))
    why = (payload.get("match") or {}).get("summary")
    return EventView(
        id=event.id,
        type=event.type,
        headline=text,
        rule_id=event.rule_id,
        rule_name=rule_name,
        why=why if isinstance(why, str) else None,
        link=web_link(listing.get("url")),
        provider=listing.get("provider"),
        created_at=event.created_at,
    )


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One in-app notification with the event it tells of."""

    id: int
    is_read: bool
    event: EventView


def feed_item(notification: WatchNotification, event: WatchEvent) -> FeedItem:
    return FeedItem(notification.id, notification.is_read, event_view(event))


def query_summary(query: Mapping[str, Any]) -> str:
    """A rule's filters in one line: ``keywords dunk, panda · brands nike · price <= 150 USD``."""
    parts = [
        f"{name.replace('_', ' ')} {', '.join(query[name])}"
        for name in ("keywords", "exclude_keywords", "brands", "sizes", "conditions")
        if query.get(name)
    ]
    if query.get("q"):
        parts.append(f'text "{query["q"]}"')
    low, high = query.get("min_price"), query.get("max_price")
    if low is not None and high is not None:
        parts.append(f"price {low:g}-{high:g}")
    elif low is not None:
        parts.append(f"price >= {low:g}")
    elif high is not None:
        parts.append(f"price <= {high:g}")
    if query.get("currency"):
        parts.append(f"in {query['currency']}")
    return " · ".join(parts) or "every listing"
