"""Catalogue search through the API: text, filters, sorts and cursors, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from dispatch.catalog import store
from dispatch.catalog.records import OfferRecord, ProductRecord
from dispatch.catalog.search import encode_cursor
from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from tests.support import admin_headers, running_app

ADMIN = admin_headers()

CATALOGUE = [
    # provider, id, title, brand, price (minor), currency, available, tags, style code
    (
        "goat",
        "g1",
        "Air Jordan 1 Retro High OG 'Chicago'",
        "Air Jordan",
        35000,
        "USD",
        True,
        ["basketball"],
        "DZ5485-612",
    ),
    (
        "goat",
        "g2",
        "Air Jordan 4 Retro 'Military Black'",
        "Air Jordan",
        28000,
        "USD",
        True,
        ["basketball"],
        "DH6927-111",
    ),
    (
        "goat",
        "g3",
        "Yeezy Boost 350 V2 'Zebra'",
        "adidas",
        30000,
        "USD",
        False,
        ["running"],
        "CP9654",
    ),
    (
        "complexshop",
        "c1",
        "Jordan Flight Essentials Hoodie",
        "Jordan",
        9000,
        "USD",
        True,
        ["apparel"],
        None,
    ),
    (
        "complexshop",
        "c2",
        "Nike Dunk Low 'Panda'",
        "Nike",
        11000,
        "USD",
        True,
        ["skate", "jordan-adjacent"],
        "DD1391-100",
    ),
    ("universalstore", "u1", "Chicago Bulls Cap", "New Era", 4500, "AUD", True, ["hats"], None),
    ("universalstore", "u2", "Crew Socks 3 Pack", "Nike", 2500, "AUD", False, ["socks"], None),
]


def _record(row: tuple[Any, ...]) -> ProductRecord:
    provider, eid, title, brand, price, currency, available, tags, style = row
    offer = OfferRecord(f"{eid}-1", price, currency, label="M", available=available)
    return ProductRecord(
        provider=provider,
        external_id=eid,
        title=title,
        brand=brand,
        tags=tuple(tags),
        style_code=style,
        sku=style,
        offers=(offer,),
    )


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    database = Database(settings)
    try:
        for provider in ("goat", "complexshop", "universalstore"):
            records = [_record(row) for row in CATALOGUE if row[0] == provider]
            async with database.session() as session:
                await store.upsert_products(session, records, utcnow())
    finally:
        await database.dispose()
    async with running_app(settings) as client:
        yield client


async def find(http: httpx.AsyncClient, **params: Any) -> list[str]:
    response = await http.get("/api/v1/products", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return [item["external_id"] for item in response.json()["items"]]


async def test_every_word_must_match_and_the_last_is_a_prefix(http: httpx.AsyncClient) -> None:
    assert set(await find(http, query="jordan retro")) == {"g1", "g2"}
    assert set(await find(http, query="jord")) == {"g1", "g2", "c1", "c2"}  # tags count
    assert await find(http, query="chicago cap") == ["u1"]
    assert await find(http, query="zzzz") == []
    assert set(await find(http, q="panda")) == {"c2"}  # seed 003 spells it q


async def test_codes_match_with_or_without_punctuation(http: httpx.AsyncClient) -> None:
    assert await find(http, query="DD1391-100") == ["c2"]
    assert await find(http, query="dd1391100") == ["c2"]
    assert await find(http, query="cp9654") == ["g3"]


async def test_relevance_puts_title_matches_before_tag_matches(http: httpx.AsyncClient) -> None:
    ranked = await find(http, query="jordan", sort="relevance")
    assert set(ranked[:3]) == {"g1", "g2", "c1"}
    assert ranked[-1] == "c2"  # only its tag mentions jordan


async def test_filters(http: httpx.AsyncClient) -> None:
    assert set(await find(http, providers="universalstore")) == {"u1", "u2"}
    assert set(await find(http, providers=["goat", "universalstore"], in_stock="false")) == {
        "g3",
        "u2",
    }
    assert set(await find(http, brand="nike")) == {"c2", "u2"}
    assert set(await find(http, min_price="100", max_price="300", currency="USD")) == {
        "c2",
        "g2",
        "g3",
    }
    assert set(await find(http, currency="AUD")) == {"u1", "u2"}
    assert set(
        await find(http, query="jordan", in_stock="true", max_price="100", currency="USD")
    ) == {"c1"}


async def test_sorts_and_cursor_pages_cover_everything_once(http: httpx.AsyncClient) -> None:
    by_price = await find(http, sort="price", currency="USD")
    assert by_price == ["c1", "c2", "g2", "g3", "g1"]
    assert await find(http, sort="-price", currency="USD") == list(reversed(by_price))
    assert (await find(http, sort="newest"))[0] == "u2"
    for sort in ("price", "-price", "newest", "relevance"):
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {
                "sort": sort,
                "limit": 2,
                "query": "" if sort != "relevance" else "jordan",
            }
            if cursor:
                params["cursor"] = cursor
            page = (await http.get("/api/v1/products", params=params, headers=ADMIN)).json()
            seen += [item["external_id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        expected = 4 if sort == "relevance" else 7
        assert len(seen) == len(set(seen)) == expected, (sort, seen)


async def test_bad_input_is_a_4xx_envelope(http: httpx.AsyncClient) -> None:
    for params in (
        {"providers": "nope"},
        {"min_price": "-1"},
        {"sort": "cheapest"},
        {"limit": "0"},
        {"currency": "US"},
        {"currency": "u$d"},  # three characters, not three letters (was a 500)
        {"currency": "\u00aeO\u00fb"},
        {"min_price": "1.001", "currency": "USD"},
    ):
        response = await http.get("/api/v1/products", params=params, headers=ADMIN)
        assert response.status_code == 422, params
        assert response.json()["error"]["status"] == 422
    cases = [("garbage!", sort) for sort in ("newest", "relevance", "price")] + [
        (encode_cursor({"id": "x"}), "newest"),
        (encode_cursor({"offset": "x"}), "relevance"),
        (encode_cursor({"price": None, "id": 1}), "price"),
    ]
    for cursor, sort in cases:
        params = {"cursor": cursor, "sort": sort, "query": "jordan"}
        response = await http.get("/api/v1/products", params=params, headers=ADMIN)
        assert response.status_code == 400, (cursor, sort, response.text)
