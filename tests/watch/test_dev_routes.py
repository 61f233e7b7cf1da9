"""Seed 003's development routes: present in development and test, absent in production."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dispatch.config import Settings
from tests.support import make_settings, running_app
from tests.watch.conftest import V1, WatchUser


@pytest.fixture
def watch_settings(fake_watch_settings: Settings) -> Settings:
    return fake_watch_settings


async def test_ingest_a_listing_and_see_it_matched_at_once(
    http: httpx.AsyncClient, alice: WatchUser
) -> None:
    body = {"name": "dunks", "query": {"sources": ["goat"], "keywords": ["dunk"]}}
    await http.post(f"{V1}/watch-rules", json=body, headers=alice.headers)
    listing = {
        "provider": "goat",
        "external_id": "dev-1",
        "title": "Nike Dunk Low",
        "price": "99.90",
        "currency": "usd",
        "condition": "new",
    }
    first = await http.post(f"{V1}/dev/listings/ingest", json=listing, headers=alice.headers)
    assert first.status_code == 200, first.text
    result = first.json()
    assert result["created_listing"] is True
    assert result["created_snapshot"] is True
    assert result["created_matches"] == 1
    assert result["events"] == 1
    again = await http.post(f"{V1}/dev/listings/ingest", json=listing, headers=alice.headers)
    assert again.json()["created_listing"] is False
    assert again.json()["events"] == 0
    bad = await http.post(
        f"{V1}/dev/listings/ingest", json={**listing, "price": "1.234"}, headers=alice.headers
    )
    assert bad.status_code == 422


async def test_run_a_rule_now_is_the_owners_only(
    http: httpx.AsyncClient, alice: WatchUser, bob: WatchUser
) -> None:
    body = {"name": "dunks", "query": {"sources": ["goat"], "keywords": ["dunk"]}}
    rule = (await http.post(f"{V1}/watch-rules", json=body, headers=alice.headers)).json()
    theirs = await http.post(f"{V1}/dev/rules/{rule['id']}/run", headers=bob.headers)
    assert theirs.status_code == 404
    too_many = await http.post(
        f"{V1}/dev/rules/{rule['id']}/run", params={"limit": 51}, headers=alice.headers
    )
    assert too_many.status_code == 422
    ran = await http.post(f"{V1}/dev/rules/{rule['id']}/run", headers=alice.headers)
    assert ran.status_code == 200, ran.text
    assert ran.json()["sources"] == ["goat"]
    assert ran.json()["found"] == 4  # the fake GOAT's recorded answer
    assert ran.json()["errors"] == {}


async def test_not_in_production(db_settings: dict[str, Any]) -> None:
    settings = make_settings(
        **db_settings,
        environment="production",
        allowed_origins="https://app.example.com",
        secret_key="x" * 40,
        gateway_admin_password="a long production password",
    )
    async with running_app(settings) as http:
        response = await http.post(f"{V1}/dev/listings/ingest", json={})
    assert response.status_code == 404
