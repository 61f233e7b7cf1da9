"""Data for the watch benchmark: users, their rules and changed listings, from one vocabulary.

Listings are titled like the catalogue benchmark's products (``bench/catalog_data``: brand,
model and colour drawn with a skew, so a few are very common), at one of three US-dollar
providers, with one offer (a size) each, so every listing written is exactly one catalogue
change. Rules are drawn from the same vocabulary, uniformly, in the shapes people write:
a model in a colour under a price; a brand's model at one provider; a quoted model minus a
colour between two prices; a brand's colour in two sizes; a style code; a category's model.
Every listing matches a few rules (see the benchmark's matches per batch), most rules match
nothing in a given batch, as with real watch lists.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime
from typing import Any

from bench.catalog_data import BRANDS, CATEGORIES, COLOURS, MODELS, product_title, style_prefix
from sqlalchemy import Table

from dispatch.catalog.records import OfferRecord, ProductRecord
from dispatch.models import User, WatchRule

PROVIDERS = ("goat", "complexshop", "ebay")
SIZES = tuple(
    f"US {size}" for size in ("7", "7.5", "8", "8.5", "9", "9.5", "10", "10.5", "11", "12")
)
PROBE_WORD = "benchprobe"  # in every listing the stream workload writes, and in one rule
USERS: Table = User.__table__  # type: ignore[assignment]
RULES: Table = WatchRule.__table__  # type: ignore[assignment]
NOTIFY_CHOICES: tuple[dict[str, Any], ...] = (
    {},
    {},
    {},
    {"drop_percent": 5},
    {"drop_amount": 10},
    {"price_rise": True},
    {"lowest_in_days": 30},
    {"new_match": False},
)


def base_price_minor(number: int) -> int:
    """Listing ``number``'s first price: 30.00 to 329.99 USD, spread evenly."""
    return 3_000 + (number * 7_919) % 30_000


def listing(number: int, price_minor: int, *, probe: bool = False) -> ProductRecord:
    """Listing ``number``: the same title, brand and size whatever its price."""
    rng = random.Random(number * 1_000_003 + 17)
    brand, title, category = product_title(rng)
    size = rng.choice(SIZES)
    provider = PROVIDERS[number % len(PROVIDERS)]
    style = f"{style_prefix(number)}-{number % 997:03d}"
    return ProductRecord(
        provider=provider,
        external_id=f"watch-{number}",
        title=f"{title} {PROBE_WORD}" if probe else title,
        url=f"https://{provider}.example.com/p/{number}",
        brand=brand,
        categories=(category,),
        style_code=style,
        offers=(
            OfferRecord(
                external_id=f"watch-{number}-1",
                price_minor=price_minor,
                currency="USD",
                label=size,
                available=True,
            ),
        ),
    )


def listings_by_provider(
    first: int, count: int, *, price_drop_percent: int = 0
) -> dict[str, list[ProductRecord]]:
    """Listings ``first`` to ``first + count - 1``, grouped as providers hand them over."""
    grouped: dict[str, list[ProductRecord]] = defaultdict(list)
    for number in range(first, first + count):
        price = base_price_minor(number) * (100 - price_drop_percent) // 100
        record = listing(number, price)
        grouped[record.provider].append(record)
    return dict(grouped)


def user_rows(count: int, now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "email": f"watcher-{n}@bench.example.com",
            "password_hash": None,
            "display_name": f"Watcher {n}",
            "is_active": True,
            "is_admin": False,
            "external_sub": None,
            "preferences": {},
            "tokens_valid_after": None,
            "created_at": now,
            "updated_at": now,
            "deactivated_at": None,
        }
        for n in range(count)
    ]


def _dollars(rng: random.Random, low: int, high: int) -> float:
    return float(rng.randrange(low, high, 5))


def rule_query(rng: random.Random, number: int) -> tuple[str, dict[str, Any]]:
    """A rule's name and query, in one of the shapes people write (see the module's doc)."""
    brand, model, colour = rng.choice(BRANDS), rng.choice(MODELS), rng.choice(COLOURS)
    shape = number % 20
    if shape < 4:
        return f"{model} {colour}", {
            "keywords": [f"{model} {colour}"],
            "max_price": _dollars(rng, 100, 400),
        }
    if shape < 8:
        return f"{brand} {model}", {
            "sources": [rng.choice(PROVIDERS)],
            "brands": [brand],
            "keywords": [model],
            "max_price": _dollars(rng, 80, 400),
        }
    if shape < 11:
        low = _dollars(rng, 30, 150)
        return f"{brand} {model} not {colour}", {
            "q": f'"{brand} {model}" -"{colour}"',
            "min_price": low,
            "max_price": low + _dollars(rng, 50, 200),
        }
    if shape < 14:
        return f"{brand} {colour} sizes", {
            "brands": [brand],
            "keywords": [colour],
            "sizes": rng.sample(SIZES, 2),
        }
    if shape < 16:
        code = rng.randrange(1_000_000)
        return f"code {style_prefix(code)}", {"keywords": [style_prefix(code)]}
    if shape < 18:
        category = rng.choice(CATEGORIES)
        return f"{category} {model} {colour}", {
            "keywords": [category, model, colour],
            "exclude_keywords": ["kids"],
        }
    return f"{brand} {model} {colour}", {"brands": [brand], "keywords": [model, colour]}


def rule_rows(
    count: int, user_ids: list[int], now: datetime, seed: int = 5
) -> list[dict[str, Any]]:
    """``count`` active rules spread evenly over ``user_ids``."""
    rng = random.Random(seed)
    rows = []
    for number in range(count):
        name, query = rule_query(rng, number)
        rows.append(
            _rule_row(
                user_ids[number % len(user_ids)], name, query, rng.choice(NOTIFY_CHOICES), now
            )
        )
    return rows


def probe_rule_row(user_id: int, now: datetime) -> dict[str, Any]:
    """The rule every stream-workload listing matches (besides whatever else it matches)."""
    return _rule_row(user_id, "stream probe", {"keywords": [PROBE_WORD]}, {}, now)


def _rule_row(
    user_id: int, name: str, query: dict[str, Any], notify: dict[str, Any], now: datetime
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "name": name[:120],
        "kind": "search",
        "query": query,
        "notify": notify,
        "is_active": True,
        "poll_interval_seconds": 600,
        "last_run_at": None,
        "next_run_at": None,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
    }
