"""What a notification says: an event (or a digest of events) as a subject and a plain-text body.

Seed 003 mailed "You have a new NEW_MATCH notification. Notification id: …"; these name the
rule, the item, the prices and the link, and say why the rule matched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dispatch.watch.matching import format_money

HEADLINES = {
    "NEW_MATCH": "New match",
    "PRICE_DROP": "Price drop",
    "PRICE_RISE": "Price rise",
    "BACK_IN_STOCK": "Back in stock",
    "ENDED": "Listing ended",
    "LOWEST_IN_DAYS": "Lowest price",
}


@dataclass(frozen=True, slots=True)
class Item:
    """One event as a notification shows it."""

    event_type: str
    payload: Mapping[str, Any]
    created_at: datetime


def _money(minor: object, currency: object) -> str | None:
    if isinstance(minor, int) and isinstance(currency, str) and currency:
        return format_money(minor, currency)
    return None


def _price_move(payload: Mapping[str, Any]) -> str | None:
    currency = payload.get("currency") or payload.get("listing", {}).get("currency")
    before = _money(
        payload.get("previous_price_minor", payload.get("previous_low_minor")), currency
    )
    after = _money(payload.get("price_minor"), currency)
    if before and after:
        percent = payload.get("change_percent")
        share = f" ({percent:+.2f}%)" if isinstance(percent, int | float) else ""
        return f"{before} -> {after}{share}"
    return None


def headline(item: Item) -> str:
    """``Price drop: Nike Dunk Low, 120.00 USD -> 99.00 USD (-17.50%)``."""
    listing = item.payload.get("listing", {})
    title = listing.get("title") or "an item"
    label = HEADLINES.get(item.event_type, item.event_type.replace("_", " ").capitalize())
    if item.event_type == "LOWEST_IN_DAYS":
        label = f"Lowest price in {item.payload.get('days', '?')} days"
    price = _price_move(item.payload) or _money(listing.get("price_minor"), listing.get("currency"))
    return f"{label}: {title}" + (f", {price}" if price else "")


def _details(item: Item) -> list[str]:
    listing = item.payload.get("listing", {})
    lines = [f"- {headline(item)}"]
    if listing.get("provider"):
        lines.append(
            f"  at {listing['provider']}"
            + (" (sold out)" if not listing.get("in_stock", True) else "")
        )
    if listing.get("url"):
        lines.append(f"  {listing['url']}")
    why = item.payload.get("match", {}).get("summary")
    if why:
        lines.append(f"  matched: {why}")
    return lines


def compose(items: Sequence[Item], display_name: str | None) -> tuple[str, str]:
    """(subject, body) of one message: a single event, or a digest grouped by rule."""
    if not items:
        raise ValueError("nothing to compose")
    greeting = f"Hello {display_name}," if display_name else "Hello,"
    by_rule: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_rule[str(item.payload.get("rule", {}).get("name") or "Your watch rule")].append(item)
    if len(items) == 1:
        (item,) = items
        rule = next(iter(by_rule))
        subject = f"[{rule}] {headline(item)}"
        intro = f'Your watch rule "{rule}" has news:'
    else:
        subject = f"{len(items)} watch alerts from {len(by_rule)} rule(s)"
        intro = f"Your watch rules have {len(items)} alerts:"
    body = [greeting, "", intro, ""]
    for rule, grouped in by_rule.items():
        if len(items) > 1:
            body.append(f"{rule}:")
        for item in sorted(grouped, key=lambda i: i.created_at):
            body += _details(item)
        body.append("")
    body.append("You get these because of your watch rules; change them or your notification")
    body.append("preferences (quiet hours, hourly or daily digests) in your profile.")
    return subject[:250], "\n".join(body)
