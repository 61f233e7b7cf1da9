"""Catalogue changes become matches, events and feed items: a scripted sequence per event type.

The catalogue is written through its own page writer (``store.upsert_products``) and the
change feed is followed by the real ``Evaluator``, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from dispatch.catalog import store
from dispatch.catalog.records import OfferRecord, ProductRecord
from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import WatchCursor, WatchEvent, WatchMatch
from dispatch.watch.evaluate import CURSOR, Evaluator
from tests.watch.conftest import V1, WatchUser


@pytest.fixture
async def database(watch_settings: Settings) -> AsyncIterator[Database]:
    db = Database(watch_settings)
    yield db
    await db.dispose()


@pytest.fixture
def evaluator(database: Database, watch_settings: Settings) -> Evaluator:
    return Evaluator(database, watch_settings)


def product(
    external_id: str,
    title: str,
    price: int | None = 12_000,
    *,
    available: bool = True,
    brand: str = "Nike",
    sizes: tuple[str, ...] = ("10",),
    provider: str = "goat",
    currency: str = "USD",
) -> ProductRecord:
    offers = tuple(
        OfferRecord(
            external_id=f"{external_id}-{size}",
            price_minor=price,
            currency=currency,
            label=size,
            available=available,
        )
        for size in sizes
    )
    return ProductRecord(
        provider=provider,
        external_id=external_id,
        title=title,
        brand=brand,
        url=f"https://example.com/{external_id}",
        offers=offers,
    )


async def write(database: Database, *records: ProductRecord, at: datetime | None = None) -> None:
    async with database.session() as session:
        await store.upsert_products(session, list(records), at or utcnow())


async def rule(
    http: httpx.AsyncClient, user: WatchUser, notify_on: dict[str, Any] | None = None, **query: Any
) -> int:
    body: dict[str, Any] = {"name": "r", "query": {"sources": ["goat"], **query}}
    if notify_on is not None:
        body["notify_on"] = notify_on
    response = await http.post(f"{V1}/watch-rules", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    rule_id: int = response.json()["id"]
    return rule_id


async def events(http: httpx.AsyncClient, user: WatchUser) -> list[dict[str, Any]]:
    response = await http.get(f"{V1}/events", params={"limit": 200}, headers=user.headers)
    assert response.status_code == 200, response.text
    return [e for e in reversed(response.json()) if not e["type"].startswith("RULE_")]


async def test_a_new_listing_that_matches_is_a_new_match_with_its_explanation(
    http: httpx.AsyncClient, alice: WatchUser, database: Database, evaluator: Evaluator
) -> None:
    rule_id = await rule(http, alice, keywords=["dunk"], max_price=150)
    await write(
        database,
        product("a", "Nike Dunk Low Panda"),
        product("b", "Nike Air Max 90"),  # no "dunk"
        product("c", "Nike Dunk High", price=20_000),  # over the price
    )
    await write(database, product("d", "Dunk Low", provider="complexshop"))  # another source
    result = await evaluator.run_once()
    assert result.changes == 4
    assert result.events == 1
    (event,) = await events(http, alice)
    assert event["type"] == "NEW_MATCH"
    assert event["rule_id"] == rule_id
    assert event["payload"]["listing"]["title"] == "Nike Dunk Low Panda"
    assert event["payload"]["listing"]["url"] == "https://example.com/a"
    clauses = {c["clause"] for c in event["payload"]["match"]["clauses"]}
    assert {"keyword", "price"} <= clauses
    assert event["listing_id"] == event["payload"]["listing"]["id"]


async def test_price_drop_rise_stock_and_end_in_sequence(
    http: httpx.AsyncClient, alice: WatchUser, database: Database, evaluator: Evaluator
) -> None:
    await rule(
        http,
        alice,
        keywords=["dunk"],
        notify_on={"price_rise": True, "ended": True, "drop_percent": 5},
    )
    await write(database, product("a", "Nike Dunk Low", 10_000))
    await evaluator.run_once()
    await write(database, product("a", "Nike Dunk Low", 9_800))  # 2%: under the threshold
    await evaluator.run_once()
    await write(database, product("a", "Nike Dunk Low", 9_000))  # 10% below the reference
    await evaluator.run_once()
    await write(database, product("a", "Nike Dunk Low", 9_000, available=False))
    await evaluator.run_once()
    await write(database, product("a", "Nike Dunk Low", 9_000, available=True))
    await evaluator.run_once()
    await write(database, product("a", "Nike Dunk Low", 12_000))
    await evaluator.run_once()
    async with database.session() as session:
        await store.end_unseen(session, "goat", utcnow() + timedelta(seconds=1), utcnow())
    await evaluator.run_once()
    found = await events(http, alice)
    assert [e["type"] for e in found] == [
        "NEW_MATCH",
        "PRICE_DROP",
        "BACK_IN_STOCK",
        "PRICE_RISE",
        "ENDED",
    ]
    drop = found[1]["payload"]
    assert drop["previous_price_minor"] == 10_000
    assert drop["price_minor"] == 9_000
    assert drop["change_percent"] == -10.0


async def test_a_flapping_price_alerts_once_within_the_cooldown(
    http: httpx.AsyncClient, alice: WatchUser, database: Database, evaluator: Evaluator
) -> None:
    await rule(http, alice, keywords=["dunk"])
    for price in (10_000, 8_000, 10_000, 8_000, 10_000, 8_000):
        await write(database, product("a", "Nike Dunk Low", price))
        await evaluator.run_once()
    assert [e["type"] for e in await events(http, alice)] == ["NEW_MATCH", "PRICE_DROP"]


async def test_reading_the_same_changes_twice_writes_nothing_twice(
    http: httpx.AsyncClient, alice: WatchUser, database: Database, evaluator: Evaluator
) -> None:
    await rule(http, alice, keywords=["dunk"])
    await write(database, product("a", "Nike Dunk Low", 10_000), product("b", "Dunk SB", 9_000))
    first = await evaluator.run_once()
    assert first.events == 2
    async with database.session() as session:  # as if the batch's commit had been lost
        await session.execute(
            update(WatchCursor).where(WatchCursor.name == CURSOR).values(last_change_id=0)
        )
    again = await Evaluator(database, evaluator.settings).run_once()
    assert again.changes == 2
    assert again.events == 0
    async with database.session(write=False) as session:
        assert await session.scalar(select(func.count()).select_from(WatchEvent).where(
            WatchEvent.type == "NEW_MATCH"
        )) == 2  # fmt: skip


async def test_only_matching_rules_of_many_fire_and_each_user_gets_their_own(
    http: httpx.AsyncClient,
    alice: WatchUser,
    bob: WatchUser,
    database: Database,
    evaluator: Evaluator,
) -> None:
    words = ["dunk", "jordan", "samba", "gel", "990", "boost", "foam", "clog", "mule", "slide"]
    for word in words:
        await rule(http, alice, keywords=[word])
    await rule(http, bob, keywords=["samba"], brands=["adidas"])
    await rule(http, bob, keywords=["samba"], brands=["puma"])
    await write(database, product("s", "adidas Samba OG", brand="adidas"))
    result = await evaluator.run_once()
    assert result.matched == 2
    assert result.events == 2
    assert [e["payload"]["rule"]["id"] for e in await events(http, alice)] != []
    assert len(await events(http, alice)) == 1
    (his,) = await events(http, bob)
    assert {"clause": "brand", "value": "adidas"} in his["payload"]["match"]["clauses"]


async def test_the_feed_counts_unread_and_marks_read(
    http: httpx.AsyncClient,
    alice: WatchUser,
    bob: WatchUser,
    database: Database,
    evaluator: Evaluator,
) -> None:
    await rule(http, alice, keywords=["dunk"])
    await write(database, product("a", "Dunk Low"), product("b", "Dunk High"))
    await evaluator.run_once()
    count = await http.get(f"{V1}/notifications/unread-count", headers=alice.headers)
    assert count.json() == {"unread_count": 2}
    every = (await http.get(f"{V1}/notifications", headers=alice.headers)).json()
    assert sorted(n["channel"] for n in every) == ["email", "email", "realtime", "realtime"]
    feed = (
        await http.get(f"{V1}/notifications", params={"channel": "realtime"}, headers=alice.headers)
    ).json()
    assert {n["event_type"] for n in feed} == {"NEW_MATCH"}
    assert all(n["status"] == "sent" for n in feed)
    other = await http.post(f"{V1}/notifications/{feed[0]['id']}/read", headers=bob.headers)
    assert other.status_code == 404
    one = await http.post(f"{V1}/notifications/{feed[0]['id']}/read", headers=alice.headers)
    assert one.json()["is_read"] is True
    assert one.json()["read_at"] is not None
    count = await http.get(f"{V1}/notifications/unread-count", headers=alice.headers)
    assert count.json() == {"unread_count": 1}
    marked = await http.post(f"{V1}/notifications/read-all", headers=alice.headers)
    assert marked.json() == {"marked": 3}  # the other feed item and the two emails
    unread = await http.get(f"{V1}/notifications", params={"unread": True}, headers=alice.headers)
    assert unread.json() == []
    assert (await http.get(f"{V1}/notifications", headers=bob.headers)).json() == []


async def test_a_disabled_rule_stops_matching(
    http: httpx.AsyncClient, alice: WatchUser, database: Database, evaluator: Evaluator
) -> None:
    rule_id = await rule(http, alice, keywords=["dunk"])
    await http.post(f"{V1}/watch-rules/{rule_id}/disable", headers=alice.headers)
    await write(database, product("a", "Dunk Low"))
    assert (await evaluator.run_once()).events == 0
    async with database.session(write=False) as session:
        assert await session.scalar(select(func.count()).select_from(WatchMatch)) == 0


async def test_lowest_price_in_n_days(
    http: httpx.AsyncClient, alice: WatchUser, database: Database, evaluator: Evaluator
) -> None:
    await rule(
        http, alice, keywords=["dunk"], notify_on={"price_drop": False, "lowest_in_days": 30}
    )
    await write(database, product("a", "Dunk Low", 10_000), at=utcnow() - timedelta(days=3))
    await evaluator.run_once()
    await write(database, product("a", "Dunk Low", 11_000), at=utcnow() - timedelta(days=2))
    await evaluator.run_once()
    await write(database, product("a", "Dunk Low", 10_500))  # not below the 30-day low
    await evaluator.run_once()
    await write(database, product("a", "Dunk Low", 9_900))
    await evaluator.run_once()
    found = await events(http, alice)
    assert [e["type"] for e in found] == ["NEW_MATCH", "LOWEST_IN_DAYS"]


async def test_a_batch_of_thousands_of_events_is_written_whole(
    http: httpx.AsyncClient, alice: WatchUser, database: Database, evaluator: Evaluator
) -> None:
    """5,000 events in one batch: more than one INSERT's parameters allow on PostgreSQL."""
    for _ in range(5):
        await rule(http, alice, keywords=["nike"])
    for page in range(4):
        await write(database, *(product(f"p{page}-{i}", f"Nike Model {i}") for i in range(250)))
    result = await evaluator.run_once()
    assert result.changes == 1_000
    assert result.events == 5_000
    async with database.session(write=False) as session:
        count = select(func.count()).select_from(WatchEvent).where(WatchEvent.type == "NEW_MATCH")
        assert await session.scalar(count) == 5_000


async def test_rule_changes_between_batches_are_followed(
    http: httpx.AsyncClient, alice: WatchUser, database: Database, evaluator: Evaluator
) -> None:
    first = await rule(http, alice, keywords=["dunk"])
    doomed = await rule(http, alice, keywords=["samba"])
    await write(database, product("a", "Dunk Low"), product("b", "Samba OG"))
    assert (await evaluator.run_once()).events == 2
    # Edit one rule, delete another, add a third: the same evaluator follows.
    await http.patch(
        f"{V1}/watch-rules/{first}", json={"query": {"keywords": ["jordan"]}}, headers=alice.headers
    )
    await http.delete(f"{V1}/watch-rules/{doomed}/hard", headers=alice.headers)
    added = await rule(http, alice, keywords=["gel"])
    await write(
        database,
        product("c", "Dunk High"),
        product("d", "Samba Classic"),
        product("e", "Air Jordan 1"),
        product("f", "Gel Kayano"),
    )
    await evaluator.run_once()
    found = await events(http, alice)
    latest = {(e["rule_id"], e["payload"]["listing"]["title"]) for e in found[2:]}
    assert latest == {(first, "Air Jordan 1"), (added, "Gel Kayano")}
