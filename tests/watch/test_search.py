"""Seed 003's POST /search against the fake providers: shape, sorting, paging, filters,
per-provider errors and its own rate-limit group."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dispatch.config import Settings
from dispatch.demo.providers import FakeProviders, Fault, provider_settings
from dispatch.watch.matching import grade
from tests.support import make_settings, running_app
from tests.watch.conftest import V1, WatchUser, new_user


@pytest.fixture
def watch_settings(fake_watch_settings: Settings) -> Settings:
    return fake_watch_settings


async def test_items_in_seed_003s_shape_cheapest_first(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    body = {"keywords": ["jordan"], "providers": ["goat"], "page_size": 3}
    response = await http.post(f"{V1}/search", json=body, headers=alice.headers)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["providers_searched"] == ["goat"]
    assert result["provider_errors"] == {}
    assert result["pagination"] == {
        "page": 1,
        "page_size": 3,
        "total": 4,
        "returned": 3,
        "total_pages": 2,
        "has_next": True,
    }
    prices = [item["price"] for item in result["items"]]
    priced = [price for price in prices if price is not None]
    assert priced == sorted(priced)
    assert prices[: len(priced)] == priced  # unpriced items come last
    first = result["items"][0]
    assert first["id"] == f"goat:{first['external_id']}"
    assert set(first) == {
        "id", "listing_id", "provider", "external_id", "title", "url", "price", "currency",
        "condition", "seller", "location", "discogs_release_id", "public_url",
    }  # fmt: skip
    second = await http.post(f"{V1}/search", json={**body, "page": 2}, headers=alice.headers)
    assert second.json()["pagination"]["returned"] == 1
    last = second.json()["items"][0]
    assert last["id"] not in {item["id"] for item in result["items"]}


async def test_price_bounds_filter_the_items(http: httpx.AsyncClient, alice: WatchUser) -> None:
    everything = await http.post(
        f"{V1}/search", json={"keywords": ["jordan"], "providers": ["goat"]}, headers=alice.headers
    )
    prices = sorted(i["price"] for i in everything.json()["items"] if i["price"] is not None)
    assert len(prices) >= 2
    cap = prices[1]
    capped = await http.post(
        f"{V1}/search",
        json={"keywords": ["jordan"], "providers": ["goat"], "max_price": cap},
        headers=alice.headers,
    )
    assert [item["price"] for item in capped.json()["items"]] == prices[:2]


@pytest.mark.parametrize(
    "body",
    [
        {"providers": ["mars-market"]},
        {"min_price": 10, "max_price": 5},
        {"min_condition": "pristine"},
        {"page": 0},
        {"page_size": 101},
    ],
)
async def test_bad_searches_are_422(
    http: httpx.AsyncClient, alice: WatchUser, body: dict[str, Any]
) -> None:
    response = await http.post(f"{V1}/search", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text


async def test_a_failing_provider_is_named_and_the_others_answer(
    http: httpx.AsyncClient, alice: WatchUser, fake: FakeProviders
) -> None:
    fake.faults["/database/search"] = [Fault(status=403, body=b'{"message": "no"}')]
    response = await http.post(
        f"{V1}/search",
        json={"keywords": ["jordan"], "providers": ["goat", "discogs"]},
        headers=alice.headers,
    )
    result = response.json()
    assert "discogs" in result["provider_errors"]
    assert result["pagination"]["total"] >= 4


async def test_search_has_its_own_budget(db_settings: dict[str, Any], fake: FakeProviders) -> None:
    settings = make_settings(**db_settings, **provider_settings(fake), search_rate_per_minute=2)
    async with running_app(settings) as http:
        user = await new_user(http, "carol@example.com")
        body = {"keywords": ["jordan"], "providers": ["goat"]}
        for _ in range(2):
            assert (await http.post(f"{V1}/search", json=body, headers=user.headers)).is_success
        refused = await http.post(f"{V1}/search", json=body, headers=user.headers)
        assert refused.status_code == 429
        details = refused.json()["error"]["details"]
        assert details["scope"] == "search"
        assert details["retry_after_seconds"] >= 1
        # Rules are another group: still allowed.
        assert (await http.get(f"{V1}/watch-rules", headers=user.headers)).status_code == 200


@pytest.mark.parametrize(
    ("text", "rank"),
    [
        ("vg+", 5),
        ("Very Good Plus (VG+)", 5),
        ("Near Mint (NM or M-)", None),
        ("mint", 7),
        ("", None),
    ],
)
def test_condition_ranks(text: str, rank: int | None) -> None:
    assert grade(text) == rank
