"""Products by id: seed 001's CRUD, offers and price history, and registration's outbox.

A product created through the API belongs to the ``offers`` provider under a new UUID;
its registration with the offers service is a queue job enqueued in the same
transaction, so an outage of the service delays registration but never loses a product.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.catalog.registry import OFFERS
from dispatch.catalog.store import ProductRef, insert_changes
from dispatch.config import Settings
from dispatch.errors import NotFound
from dispatch.models import CatalogOffer, CatalogPricePoint, CatalogProduct
from dispatch.queue import service as queue
from dispatch.queue.service import JobSpec

REGISTER_KIND = "catalog.register"
REGISTER_ATTEMPTS = 12  # with the queue's backoff: retried for about a day


def registration_spec(settings: Settings, uid: str) -> JobSpec:
    return JobSpec(
        kind=REGISTER_KIND,
        args={"product_id": uid},
        queue=settings.catalog_queue,
        max_attempts=REGISTER_ATTEMPTS,
        dedupe_key=f"{REGISTER_KIND}:{uid}",
    )


async def enqueue_registration(session: AsyncSession, settings: Settings, uid: str) -> None:
    await queue.enqueue(session, registration_spec(settings, uid))


def _search_fields(name: str, description: str | None) -> dict[str, Any]:
    return {"title": name, "description": description, "codes": "", "keywords": ""}


async def create(
    session: AsyncSession, settings: Settings, name: str, description: str | None, now: datetime
) -> CatalogProduct:
    """A new product of ours, pending registration with the offers service."""
    uid = str(uuid.uuid4())
    product = CatalogProduct(
        uid=uid,
        provider=OFFERS,
        external_id=uid,
        **_search_fields(name, description),
        images=[],
        categories=[],
        tags=[],
        attributes={},
        status="active",
        registration_status="pending",
        in_stock=False,
        offer_count=0,
        first_seen_at=now,
        last_seen_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(product)
    await session.flush()
    ref = ProductRef(product.id, uid, OFFERS)
    await insert_changes(session, [ref], "new_listing", now, {"title": name})
    await enqueue_registration(session, settings, uid)
    return product


def _uuid_or_none(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


async def get(
    session: AsyncSession, product_id: str, *, for_update: bool = False
) -> CatalogProduct:
    """By public id (a UUID); NotFound otherwise, with seed 001's message."""
    uid = _uuid_or_none(product_id)
    row = None
    if uid is not None:
        query = select(CatalogProduct).where(CatalogProduct.uid == uid)
        if for_update:
            query = query.with_for_update()
        row = await session.scalar(query)
    if row is None:
        raise NotFound("Product not found", details={"id": product_id})
    return row


async def update(
    session: AsyncSession,
    product_id: str,
    changes: dict[str, Any],
    now: datetime,
) -> CatalogProduct:
    """Apply name/description changes (PUT passes both; PATCH only what was sent)."""
    product = await get(session, product_id, for_update=True)
    name = changes.get("name", product.title)
    description = changes.get("description", product.description)
    if (name, description) != (product.title, product.description):
        product.title = name
        product.description = description
        product.updated_at = now
    return product


async def delete(session: AsyncSession, product_id: str, now: datetime) -> None:
    """Delete a product with its offers and history; the change feed records the removal."""
    product = await get(session, product_id, for_update=True)
    ref = ProductRef(product.id, product.uid, product.provider)
    await insert_changes(session, [ref], "removed", now, {"title": product.title})
    await session.delete(product)


async def offers_of(session: AsyncSession, product: CatalogProduct) -> Sequence[CatalogOffer]:
    return (
        await session.scalars(
            select(CatalogOffer)
            .where(CatalogOffer.product_id == product.id)
            .order_by(CatalogOffer.price_minor.is_(None), CatalogOffer.price_minor, CatalogOffer.id)
        )
    ).all()


async def history_of(
    session: AsyncSession,
    product: CatalogProduct,
    *,
    since: datetime | None = None,
    limit: int = 1000,
) -> Sequence[CatalogPricePoint]:
    query = (
        select(CatalogPricePoint)
        .where(CatalogPricePoint.product_id == product.id)
        .order_by(CatalogPricePoint.observed_at, CatalogPricePoint.id)
        .limit(limit)
    )
    if since is not None:
        query = query.where(CatalogPricePoint.observed_at >= since)
    return (await session.scalars(query)).all()


async def same_item(session: AsyncSession, product: CatalogProduct) -> Sequence[CatalogProduct]:
    """Listings of the same item at other providers (same GTIN, style code or SKU)."""
    if not product.group_key:
        return []
    return (
        await session.scalars(
            select(CatalogProduct)
            .where(CatalogProduct.group_key == product.group_key, CatalogProduct.id != product.id)
            .order_by(CatalogProduct.price_minor.is_(None), CatalogProduct.price_minor)
            .limit(50)
        )
    ).all()
