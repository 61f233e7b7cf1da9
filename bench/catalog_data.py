"""Data for the catalogue benchmark: recorded pages multiplied, and a generated catalogue.

``shopify_page`` turns the recorded storefront answer (src/dispatch/demo/recorded/shopify, MIT,
see its README) into a full 250-product page with new ids, titles and prices, so ingest runs
the real parser and upsert on realistic payloads. ``catalogue_rows`` generates products for
the search benchmark from a seeded vocabulary: brands, models, colours and categories drawn
with a skew, so some words match a large share of the catalogue and others almost nothing.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "src/dispatch/demo/recorded"
RECORDED_PAGE = FIXTURES / "shopify/products_storefront_bjjfanatics.json"
PAGE_SIZE = 250  # Shopify's page; GOAT's Algolia pages hold 100, eBay's 200
PAGE_SIZES = {"shopify": 250, "goat": 100, "ebay": 200}

BRANDS = [
    "Nike",
    "Air Jordan",
    "adidas",
    "New Balance",
    "Asics",
    "Puma",
    "Reebok",
    "Converse",
    "Vans",
    "Salomon",
    "Hoka",
    "On",
    "Saucony",
    "Brooks",
    "Under Armour",
    "Fila",
    "Diadora",
    "Mizuno",
    "Karhu",
    "Veja",
    "Stussy",
    "Supreme",
    "Palace",
    "Carhartt",
    "Patagonia",
    "The North Face",
    "Arc'teryx",
    "Stone Island",
    "CP Company",
    "Kith",
    "Aime Leon Dore",
    "Fear of God",
    "Essentials",
    "Yeezy",
    "Off-White",
    "Balenciaga",
    "Gucci",
    "Prada",
    "Moncler",
    "Canada Goose",
    "Champion",
    "Levi's",
    "Dickies",
    "Obey",
    "Huf",
    "Polo",
    "Lacoste",
    "Fred Perry",
    "Barbour",
    "Birkenstock",
]
MODELS = [
    "Air Max 90",
    "Air Max 1",
    "Air Force 1",
    "Dunk Low",
    "Dunk High",
    "Blazer Mid",
    "Cortez",
    "Retro High OG",
    "Retro Low",
    "4 Retro",
    "11 Retro",
    "Samba",
    "Gazelle",
    "Superstar",
    "Stan Smith",
    "Forum Low",
    "Ultraboost",
    "NMD R1",
    "550",
    "990v6",
    "2002R",
    "9060",
    "574",
    "Gel-Kayano 14",
    "Gel-1130",
    "GT-2160",
    "Suede Classic",
    "Club C 85",
    "Chuck 70",
    "Old Skool",
    "Sk8-Hi",
    "XT-6",
    "Speedcross",
    "Clifton 9",
    "Bondi 8",
    "Cloudmonster",
    "Hoodie",
    "Crewneck",
    "T-Shirt",
    "Cargo Pant",
    "Puffer Jacket",
    "Fleece",
    "Beanie",
    "Cap",
    "Tote Bag",
    "Socks 3 Pack",
    "Shorts",
    "Track Jacket",
    "Windbreaker",
    "Parka",
]
COLOURS = [
    "Black",
    "White",
    "Panda",
    "Triple White",
    "University Blue",
    "Chicago",
    "Bred",
    "Sail",
    "Cream",
    "Olive",
    "Navy",
    "Grey Fog",
    "Volt",
    "Infrared",
    "Mocha",
    "Sand",
    "Forest Green",
    "Burgundy",
    "Pink Foam",
    "Cement",
    "Royal",
    "Oreo",
    "Zebra",
    "Bone",
]
CATEGORIES = [
    "sneakers",
    "running",
    "basketball",
    "lifestyle",
    "apparel",
    "accessories",
    "outerwear",
    "skate",
    "trail",
    "tennis",
]
PROVIDERS = [
    ("goat", "USD"),
    ("complexshop", "USD"),
    ("universalstore", "AUD"),
    ("discogs", "EUR"),
    ("ebay", "USD"),
]


@cache
def _recorded() -> list[dict[str, Any]]:
    products: list[dict[str, Any]] = json.loads(RECORDED_PAGE.read_text(encoding="utf-8"))[
        "products"
    ]
    return products


def _skewed(rng: random.Random, items: list[str]) -> str:
    """Earlier items are much more common (roughly Zipf), as in a real catalogue."""
    index = min(int(rng.paretovariate(1.2)) - 1, len(items) - 1)
    return items[index]


def product_title(rng: random.Random) -> tuple[str, str, str]:
    brand, model, colour = _skewed(rng, BRANDS), _skewed(rng, MODELS), _skewed(rng, COLOURS)
    return brand, f"{brand} {model} '{colour}'", rng.choice(CATEGORIES)


def shopify_page(page: int, *, price_shift: int = 0, seed: int = 7) -> dict[str, Any]:
    """Page ``page`` of a storefront: 250 copies of the recorded products, made distinct."""
    rng = random.Random(seed * 1_000_003 + page)
    products = []
    recorded = _recorded()
    for index in range(PAGE_SIZE):
        item = copy.deepcopy(recorded[index % len(recorded)])
        number = page * PAGE_SIZE + index
        brand, title, category = product_title(rng)
        item["id"] = 10_000_000 + number
        item["title"] = title
        item["handle"] = f"product-{number}"
        item["vendor"] = brand
        item["product_type"] = category
        for position, variant in enumerate(item["variants"]):
            variant["id"] = 50_000_000 + number * 10 + position
            variant["product_id"] = item["id"]
            variant["sku"] = f"SKU-{number}-{position}"
            cents = 2_000 + (number * 7919) % 40_000 + price_shift
            variant["price"] = f"{cents // 100}.{cents % 100:02d}"
        products.append(item)
    return {"products": products}


def style_prefix(number: int) -> str:
    """The letters-and-digits part of a generated style code ("KB0421")."""
    return f"{chr(65 + number % 26)}{chr(65 + number // 26 % 26)}{number % 10_000:04d}"


@cache
def _fixture(path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / path).read_text(encoding="utf-8"))
    return loaded


def _multiplied(
    fixture: str,
    key: str,
    page: int,
    seed: int,
    make: Callable[[dict[str, Any], int, random.Random], None],
) -> dict[str, Any]:
    """The fixture's answer with its list under ``key`` filled to a page of distinct items."""
    rng = random.Random(seed * 1_000_003 + page)
    answer = copy.deepcopy(_fixture(fixture))
    recorded = answer[key]
    items = []
    size = PAGE_SIZES[fixture.partition("/")[0]]
    for index in range(size):
        item = copy.deepcopy(recorded[index % len(recorded)])
        make(item, page * size + index, rng)
        items.append(item)
    answer[key] = items
    return answer


def goat_page(page: int, *, price_shift: int = 0, seed: int = 7) -> dict[str, Any]:
    """An Algolia answer of 100 hits made from the fixture's hits, made distinct."""

    def make(hit: dict[str, Any], number: int, rng: random.Random) -> None:
        brand, title, _ = product_title(rng)
        hit.update(
            name=title,
            brand_name=brand,
            slug=f"product-{number}",
            objectID=str(number),
            product_template_id=number,
            sku=f"{style_prefix(number)}-{number % 997:03d}",
            lowest_price_cents=2_000 + (number * 7919) % 40_000 + price_shift,
        )

    return _multiplied("goat/algolia_query_jordan.json", "hits", page, seed, make)


def ebay_page(page: int, *, price_shift: int = 0, seed: int = 7) -> dict[str, Any]:
    """A Browse search answer of 200 items made from the fixture's items, made distinct."""

    def make(item: dict[str, Any], number: int, rng: random.Random) -> None:
        item["itemId"] = f"v1|{100_000_000 + number}|0"
        item["title"] = product_title(rng)[1]
        cents = 2_000 + (number * 7919) % 40_000 + price_shift
        item["price"] = {"value": f"{cents // 100}.{cents % 100:02d}", "currency": "USD"}
        item.pop("currentBidPrice", None)

    return _multiplied("ebay/item_summary_search_sneakers.json", "itemSummaries", page, seed, make)


def catalogue_rows(count: int, start: int = 0, seed: int = 11) -> Iterator[dict[str, Any]]:
    """Generated products for the search benchmark, as catalog_products rows."""
    rng = random.Random(seed + start)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    for number in range(start, start + count):
        provider, currency = PROVIDERS[number % len(PROVIDERS)]
        brand, title, category = product_title(rng)
        style = f"{style_prefix(number)}-{number % 997:03d}"
        price = 1_000 + rng.randrange(60_000)
        seen = now - timedelta(minutes=count - number)
        yield {
            "uid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "provider": provider,
            "external_id": str(number),
            "title": title,
            "brand": brand,
            "brand_key": brand.lower(),
            "url": f"https://example.com/p/{number}",
            "description": None,
            "images": [],
            "categories": [category],
            "tags": [],
            "sku": style,
            "gtin": None,
            "style_code": style,
            "group_key": None,
            "release_date": None,
            "attributes": {},
            "raw": None,
            "content_hash": "",
            "status": "active" if number % 20 else "ended",
            "registration_status": None,
            "registration_error": None,
            "price_minor": price,
            "compare_at_minor": None,
            "currency": currency,
            "in_stock": number % 3 != 0,
            "offer_count": 1,
            "codes": f"{style} {style.replace('-', '')}",
            "keywords": category,
            "first_seen_at": seen,
            "last_seen_at": seen,
            "ended_at": None,
            "created_at": seen,
            "updated_at": seen,
        }


def query_texts(count: int, seed: int = 3) -> list[str]:
    """Search terms as users type them: brands, models, colours, pairs, and rare codes."""
    rng = random.Random(seed)
    texts = []
    for index in range(count):
        kind = index % 5
        if kind == 0:
            texts.append(rng.choice(BRANDS))
        elif kind == 1:
            texts.append(rng.choice(MODELS))
        elif kind == 2:
            texts.append(f"{rng.choice(BRANDS)} {rng.choice(COLOURS)}")
        elif kind == 3:
            texts.append(rng.choice(COLOURS).lower()[:4])  # a prefix, as typed
        else:
            number = rng.randrange(1_000_000)
            texts.append(
                f"{chr(65 + number % 26)}{chr(65 + number // 26 % 26)}{number % 10_000:04d}"
            )
    return texts
