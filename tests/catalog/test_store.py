"""Writing the catalogue: upserts, offer diffs, price history, the change feed, ends."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text

from dispatch.catalog import store
from dispatch.catalog.records import OfferRecord, ProductRecord
from dispatch.catalog.service import ANALYZE_AFTER_CREATED, write_pages
from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import CatalogChange, CatalogOffer, CatalogPricePoint, CatalogProduct


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings)
    yield database
    await database.dispose()


def shoe(external_id: str = "1", price: int = 12000, **fields: object) -> ProductRecord:
    offers = (
        OfferRecord("1-9", price, "USD", label="9", available=True),
        OfferRecord("1-10", price + 500, "USD", label="10", available=False),
    )
    values: dict[str, object] = {
        "provider": "shop",
        "external_id": external_id,
        "title": f"Runner {external_id}",
        "brand": "Acme",
        "style_code": "AC1234-100",
        "offers": offers,
        "raw": {"id": external_id},
    }
    values.update(fields)
    return ProductRecord(**values)  # type: ignore[arg-type]


async def upsert(db: Database, *records: ProductRecord) -> store.UpsertSummary:
    async with db.session() as session:
        return await store.upsert_products(session, records, utcnow())


async def changes(db: Database) -> list[tuple[str, str | None]]:
    async with db.session(write=False) as session:
        rows = await session.execute(
            select(CatalogChange.kind, CatalogChange.offer_external_id).order_by(CatalogChange.id)
        )
        return [(row.kind, row.offer_external_id) for row in rows]


async def count(db: Database, model: type) -> int:
    async with db.session(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_new_products_are_written_with_offers_summary_and_history(db: Database) -> None:
    summary = await upsert(db, shoe("1"), shoe("2", price=9900))
    assert (summary.created, summary.updated, summary.unchanged) == (2, 0, 0)
    async with db.session(write=False) as session:
        first = await session.scalar(
            select(CatalogProduct).where(CatalogProduct.external_id == "1")
        )
    assert first is not None
    # The lowest available offer sets the price; the unavailable size does not.
    assert (first.price_minor, first.currency, first.in_stock, first.offer_count) == (
        12000,
        "USD",
        True,
        2,
    )
    assert first.group_key == "code:AC1234100"
    assert first.brand_key == "acme"
    assert await count(db, CatalogOffer) == 4
    assert await count(db, CatalogPricePoint) == 4  # a first observation of every offer
    assert await changes(db) == [("new_listing", None), ("new_listing", None)]


async def test_an_unchanged_page_writes_no_history_and_no_changes(db: Database) -> None:
    await upsert(db, shoe("1"))
    before = await count(db, CatalogPricePoint), await changes(db)
    summary = await upsert(db, shoe("1"))
    assert (summary.created, summary.updated, summary.unchanged) == (0, 0, 1)
    assert (await count(db, CatalogPricePoint), await changes(db)) == before


async def test_a_price_change_appends_one_point_and_one_change(db: Database) -> None:
    await upsert(db, shoe("1"))
    await upsert(db, shoe("1", price=10000, raw={"id": "1", "price": "100.00"}))
    assert await changes(db) == [
        ("new_listing", None),
        ("price_change", "1-9"),
        ("price_change", "1-10"),
    ]
    async with db.session(write=False) as session:
        product = await session.scalar(select(CatalogProduct))
        points = (
            await session.scalars(
                select(CatalogPricePoint.price_minor)
                .where(CatalogPricePoint.offer_external_id == "1-9")
                .order_by(CatalogPricePoint.id)
            )
        ).all()
        change = await session.scalar(
            select(CatalogChange).where(CatalogChange.kind == "price_change").limit(1)
        )
    assert product is not None
    assert product.price_minor == 10000
    assert product.raw == {"id": "1", "price": "100.00"}  # the payload of the latest fetch
    assert list(points) == [12000, 10000]
    assert change is not None
    assert change.details["before"]["price_minor"] == 12000
    assert change.details["after"]["price_minor"] == 10000


async def test_stock_changes_removed_offers_and_new_sizes_are_recorded(db: Database) -> None:
    await upsert(db, shoe("1"))
    base = shoe("1")
    restocked = dataclasses.replace(
        base,
        offers=(
            dataclasses.replace(base.offers[1], available=True),  # size 10 back in stock
            OfferRecord("1-11", 13000, "USD", label="11"),  # a new size
        ),  # size 9 is gone
    )
    await upsert(db, restocked)
    assert sorted(await changes(db)) == sorted(
        [
            ("new_listing", None),
            ("stock_change", "1-10"),
            ("stock_change", "1-11"),
            ("stock_change", "1-9"),
        ]
    )
    async with db.session(write=False) as session:
        offers = (await session.scalars(select(CatalogOffer.external_id))).all()
        product = await session.scalar(select(CatalogProduct))
    assert sorted(offers) == ["1-10", "1-11"]
    assert product is not None
    assert product.price_minor == 12500  # size 10 is now the cheapest


async def test_products_not_seen_by_a_complete_scrape_end_and_come_back(db: Database) -> None:
    await upsert(db, shoe("1"), shoe("2"))
    await asyncio.sleep(0.01)
    cutoff = utcnow()
    await upsert(db, dataclasses.replace(shoe("1"), title="Runner 1"))
    async with db.session() as session:
        ended = await store.end_unseen(session, "shop", cutoff, utcnow())
    assert ended == 1
    async with db.session(write=False) as session:
        statuses = dict(
            (await session.execute(select(CatalogProduct.external_id, CatalogProduct.status))).all()
        )
    assert statuses == {"1": "active", "2": "ended"}
    summary = await upsert(db, shoe("2"))
    assert summary.relisted == 1
    assert [kind for kind, _ in await changes(db)][-2:] == ["ended", "relisted"]


async def test_a_batch_holds_one_provider(db: Database) -> None:
    with pytest.raises(ValueError, match="one provider"):
        await upsert(db, shoe("1"), shoe("2", provider="other"))


async def test_listings_of_one_item_share_a_group_across_providers(db: Database) -> None:
    await upsert(db, shoe("1", style_code="AC1234-100"))
    await upsert(db, shoe("x", provider="other", style_code="ac1234 100", sku=None))
    async with db.session(write=False) as session:
        keys = (await session.scalars(select(CatalogProduct.group_key))).all()
    assert set(keys) == {"code:AC1234100"}


async def test_a_full_page_writes_every_product_offer_and_point(db: Database) -> None:
    # 150 products: on PostgreSQL the inserts take the COPY path (from 100 rows on).
    records = [shoe(str(n), price=10_000 + n) for n in range(150)]
    summary = await upsert(db, *records)
    assert summary.created == 150
    assert len({ref.id for ref in summary.refs}) == len({ref.uid for ref in summary.refs}) == 150
    async with db.session(write=False) as session:
        prices = dict(
            (
                await session.execute(
                    select(CatalogProduct.external_id, CatalogProduct.price_minor)
                )
            ).all()
        )
        offers = await session.scalar(select(func.count()).select_from(CatalogOffer))
        raw = await session.scalar(
            select(CatalogProduct.raw).where(CatalogProduct.external_id == "7")
        )
    assert prices == {str(n): 10_000 + n for n in range(150)}
    assert offers == 300
    assert raw == {"id": "7"}
    assert await count(db, CatalogPricePoint) == 300
    assert len(await changes(db)) == 150


async def test_a_big_first_scrape_refreshes_postgresql_statistics(db: Database) -> None:
    async def pages() -> AsyncIterator[list[ProductRecord]]:
        for page in range(ANALYZE_AFTER_CREATED // 250 + 1):
            yield [shoe(f"{page}-{n}") for n in range(250)]

    total, count = await write_pages(db, pages())
    assert (total.created, count) == (ANALYZE_AFTER_CREATED + 250, ANALYZE_AFTER_CREATED // 250 + 1)
    if db.kind == "postgresql":  # stale statistics made each page read all the provider's rows
        async with db.session(write=False) as session:
            analyzed = await session.scalar(
                text(
                    "SELECT last_analyze FROM pg_stat_user_tables "
                    "WHERE relname = 'catalog_products' AND schemaname = current_schema()"
                )
            )
        assert analyzed is not None


def test_new_uids_are_distinct_version_4_uuids() -> None:
    uids = store.new_uids(500)
    assert len(set(uids)) == 500
    for uid in uids:
        parsed = uuid.UUID(uid)
        assert str(parsed) == uid
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
