"""Rules poll their sources on their own schedule (against the fake providers), backfill
from the catalogue, and their provider requests are the user's own (seed 003)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dispatch.config import Settings
from dispatch.db.engine import Database
from dispatch.demo.providers import FakeProviders, provider_settings
from dispatch.models import WatchCursor
from dispatch.watch.polling import search_text
from tests.support import make_settings, running_app
from tests.watch.conftest import ADMIN, V1, WatchUser, new_user
from tests.watch.test_evaluate import product, write


@pytest.fixture
def polling_settings(db_settings: dict[str, Any], fake: FakeProviders) -> Settings:
    return make_settings(
        **db_settings,
        **provider_settings(fake),
        worker_enabled=True,
        worker_poll_interval_seconds=0.1,
        sync_schedule="",
    )


@pytest.fixture
async def app(polling_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(polling_settings) as client:
        yield client


async def until_events(
    http: httpx.AsyncClient, user: WatchUser, count: int, seconds: float = 25
) -> list[dict[str, Any]]:
    async with asyncio.timeout(seconds):
        while True:
            response = await http.get(f"{V1}/events", params={"limit": 200}, headers=user.headers)
            found = [e for e in response.json() if not e["type"].startswith("RULE_")]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ({"keywords": ["air jordan"], "q": "retro -kids"}, "air jordan retro"),
        ({"q": '"air max" 90'}, "air max 90"),
        ({"sources": ["goat"]}, ""),
    ],
)
def test_what_a_poll_asks_providers_for(query: dict[str, Any], text: str) -> None:
    assert search_text(query) == text


async def test_a_new_rule_polls_its_source_and_matches_what_comes_back(
    app: httpx.AsyncClient, fake: FakeProviders
) -> None:
    alice = await new_user(app, "alice@example.com")
    body = {"name": "jordans", "query": {"sources": ["goat"], "keywords": ["jordan"]}}
    rule = (await app.post(f"{V1}/watch-rules", json=body, headers=alice.headers)).json()
    found = await until_events(app, alice, 4)
    titles = {e["payload"]["listing"]["title"] for e in found}
    assert "Air Jordan 4 Retro 'Quarry Dust'" in titles
    assert {e["type"] for e in found} == {"NEW_MATCH"}
    polled = (await app.get(f"{V1}/watch-rules/{rule['id']}", headers=alice.headers)).json()
    assert polled["last_run_at"] is not None
    assert polled["next_run_at"] > polled["last_run_at"]
    goat_queries = [s for s in fake.seen if s.path.startswith("/1/indexes/")]
    assert goat_queries, "the rule asked GOAT"
    # The request the poll made is Alice's own; Bob has none; the admin key sees it.
    bob = await new_user(app, "bob@example.com")
    hers = (await app.get(f"{V1}/provider-requests", headers=alice.headers)).json()["items"]
    assert hers
    assert {r["provider"] for r in hers} == {"goat"}
    assert {r["user_id"] for r in hers} == {alice.id}
    assert all(r["status_code"] == r["status"] for r in hers)
    his = (await app.get(f"{V1}/provider-requests", headers=bob.headers)).json()["items"]
    assert his == []
    summary = (await app.get(f"{V1}/provider-requests/summary", headers=alice.headers)).json()
    assert summary[0]["provider"] == "goat"
    assert summary[0]["total_requests"] == len(hers)
    everyone = await app.get(
        f"{V1}/provider-requests/admin", params={"user_id": alice.id}, headers=ADMIN
    )
    assert [r["id"] for r in everyone.json()["items"]] == [r["id"] for r in hers]
    refused = await app.get(f"{V1}/provider-requests/admin", headers=alice.headers)
    assert refused.status_code == 403


async def test_seed_003s_request_filters(app: httpx.AsyncClient) -> None:
    alice = await new_user(app, "alice@example.com")
    body = {"name": "jordans", "query": {"sources": ["goat"], "keywords": ["jordan"]}}
    await app.post(f"{V1}/watch-rules", json=body, headers=alice.headers)
    await until_events(app, alice, 1)
    ok = await app.get(
        f"{V1}/provider-requests",
        params={"status_code_gte": 200, "status_code_lte": 299},
        headers=alice.headers,
    )
    assert ok.json()["items"]
    failed = await app.get(
        f"{V1}/provider-requests", params={"status_code_gte": 400}, headers=alice.headers
    )
    assert failed.json()["items"] == []
    later = await app.get(
        f"{V1}/provider-requests",
        params={"created_from": "2999-01-01T00:00:00Z"},
        headers=alice.headers,
    )
    assert later.json()["items"] == []
    bad = await app.get(
        f"{V1}/provider-requests", params={"status_code_gte": 99}, headers=alice.headers
    )
    assert bad.status_code == 422


async def test_a_new_rule_is_backfilled_from_the_catalogue(
    app: httpx.AsyncClient, polling_settings: Settings
) -> None:
    database = Database(polling_settings)
    try:
        await write(database, product("old-1", "Jordan Backfill Special"))
        async with asyncio.timeout(10):  # the feed has passed it while no rule existed
            while True:
                async with database.session(write=False) as session:
                    cursor = await session.scalar(select(WatchCursor.last_change_id))
                if cursor:
                    break
                await asyncio.sleep(0.05)
    finally:
        await database.dispose()
    alice = await new_user(app, "alice@example.com")
    body = {"name": "backfill", "query": {"sources": ["goat"], "keywords": ["backfill"]}}
    await app.post(f"{V1}/watch-rules", json=body, headers=alice.headers)
    (event,) = await until_events(app, alice, 1)
    assert event["type"] == "NEW_MATCH"
    assert event["payload"]["listing"]["title"] == "Jordan Backfill Special"
