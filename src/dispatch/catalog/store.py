"""Writing the catalogue: batched upserts of products and offers, history and the change feed.

``upsert_products`` takes one page of records from a provider and writes it with a fixed
number of statements however long the page is: a product whose normalised content is
unchanged only has its ``last_seen_at`` moved; an offer whose price or stock changed gets
a price point and a change row. Callers own the transaction (one page, one commit), so a
page is written whole or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.catalog import normalise
from dispatch.catalog.records import OfferRecord, ProductRecord
from dispatch.db.bulk import insert_returning_ids, update_by_id
from dispatch.models import (
    CatalogChange,
    CatalogOffer,
    CatalogPricePoint,
    CatalogProduct,
)

_PRODUCTS: Table = CatalogProduct.__table__  # type: ignore[assignment]
_OFFERS: Table = CatalogOffer.__table__  # type: ignore[assignment]
_POINTS: Table = CatalogPricePoint.__table__  # type: ignore[assignment]
_CHANGES: Table = CatalogChange.__table__  # type: ignore[assignment]
_IN_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True, slots=True)
class ProductRef:
    """Who a product is, for offer writes and change rows."""

    id: int
    uid: str
    provider: str


@dataclass
class UpsertSummary:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    relisted: int = 0
    offers_changed: int = 0
    changes: int = 0
    refs: list[ProductRef] = field(default_factory=list)  # in the order of the records

    def add(self, other: UpsertSummary) -> None:
        for name in ("created", "updated", "unchanged", "relisted", "offers_changed", "changes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _Writes:
    """Everything one batch will write, gathered before any statement runs."""

    offers_new: list[dict[str, Any]] = field(default_factory=list)
    offers_updated: list[dict[str, Any]] = field(default_factory=list)
    offers_gone: list[int] = field(default_factory=list)
    points: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    summaries: dict[int, dict[str, Any]] = field(default_factory=dict)


def _state(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "price_minor": row["price_minor"],
        "currency": row["currency"],
        "available": row["available"],
        "stock": row["stock"],
    }


def _offer_row(product_id: int, offer: OfferRecord, now: datetime) -> dict[str, Any]:
    return {
        "product_id": product_id,
        "external_id": offer.external_id[:255],
        "label": offer.label[:255] if offer.label else None,
        "sku": offer.sku[:128] if offer.sku else None,
        "price_minor": offer.price_minor,
        "currency": offer.currency,
        "compare_at_minor": offer.compare_at_minor,
        "available": offer.available,
        "stock": offer.stock,
        "attributes": dict(offer.attributes),
        "first_seen_at": now,
        "last_seen_at": now,
        "updated_at": now,
    }


def _point(ref: ProductRef, offer: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "product_id": ref.id,
        "offer_external_id": offer["external_id"],
        "label": offer["label"],
        "price_minor": offer["price_minor"],
        "currency": offer["currency"],
        "available": offer["available"],
        "stock": offer["stock"],
        "observed_at": now,
    }


def _change(
    ref: ProductRef, kind: str, now: datetime, details: dict[str, Any], offer: str | None = None
) -> dict[str, Any]:
    return {
        "product_id": ref.id,
        "product_uid": ref.uid,
        "provider": ref.provider,
        "offer_external_id": offer,
        "kind": kind,
        "details": details,
        "created_at": now,
    }


def _diff_offers(
    writes: _Writes,
    ref: ProductRef,
    existing: Sequence[Mapping[str, Any]],
    incoming: Sequence[OfferRecord],
    now: datetime,
    *,
    announce: bool,
) -> bool:
    """Queue the writes that bring one product's offers in line; True if any state changed.

    ``announce`` is False for a brand-new product, whose one ``new_listing`` change says it all.
    """
    by_id = {row["external_id"]: row for row in existing}
    seen: set[str] = set()
    changed = False
    kept: list[OfferRecord] = []
    for offer in incoming:
        key = offer.external_id[:255]
        if key in seen:
            continue
        seen.add(key)
        row = _offer_row(ref.id, offer, now)
        kept.append(offer)
        old = by_id.get(key)
        if old is None:
            writes.offers_new.append(row)
            writes.points.append(_point(ref, row, now))
            if announce:
                writes.changes.append(
                    _change(
                        ref,
                        "stock_change",
                        now,
                        {"before": None, "after": _state(row), "label": row["label"]},
                        key,
                    )
                )
            changed = True
            continue
        before, after = _state(old), _state(row)
        described = ("label", "sku", "compare_at_minor", "attributes")
        if before == after and all(old[name] == row[name] for name in described):
            continue
        update_row = {k: v for k, v in row.items() if k not in ("first_seen_at", "product_id")}
        writes.offers_updated.append({"id": old["id"], **update_row})
        if before != after:
            changed = True
            writes.points.append(_point(ref, row, now))
            kind = (
                "price_change"
                if (before["price_minor"], before["currency"])
                != (after["price_minor"], after["currency"])
                else "stock_change"
            )
            writes.changes.append(
                _change(
                    ref, kind, now, {"before": before, "after": after, "label": row["label"]}, key
                )
            )
    for key, old in by_id.items():
        if key in seen:
            continue
        changed = True
        writes.offers_gone.append(old["id"])
        gone = {**old, "available": False, "stock": 0 if old["stock"] is not None else None}
        writes.points.append(_point(ref, gone, now))
        writes.changes.append(
            _change(
                ref,
                "stock_change",
                now,
                {"before": _state(old), "after": None, "label": old["label"], "removed": True},
                key,
            )
        )
    if changed:
        writes.summaries[ref.id] = normalise.summary(kept)
    return changed


async def _existing_offers(
    session: AsyncSession, product_ids: Sequence[int]
) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {pid: [] for pid in product_ids}
    columns = [
        _OFFERS.c[name]
        for name in (
            "id",
            "product_id",
            "external_id",
            "label",
            "sku",
            "price_minor",
            "currency",
            "compare_at_minor",
            "available",
            "stock",
            "attributes",
        )
    ]
    for start in range(0, len(product_ids), _IN_CHUNK):
        chunk = product_ids[start : start + _IN_CHUNK]
        rows = await session.execute(select(*columns).where(_OFFERS.c.product_id.in_(chunk)))
        for row in rows.mappings():
            found[row["product_id"]].append(dict(row))
    return found


async def _apply(session: AsyncSession, writes: _Writes, now: datetime) -> None:
    if writes.offers_gone:
        for start in range(0, len(writes.offers_gone), _IN_CHUNK):
            chunk = writes.offers_gone[start : start + _IN_CHUNK]
            await session.execute(delete(CatalogOffer).where(CatalogOffer.id.in_(chunk)))
    if writes.offers_new:
        await insert_returning_ids(session, _OFFERS, writes.offers_new)
    if writes.offers_updated:
        await update_by_id(session, _OFFERS, writes.offers_updated)
    if writes.summaries:
        await session.execute(
            update(CatalogProduct),
            [{"id": pid, **values, "updated_at": now} for pid, values in writes.summaries.items()],
        )
    if writes.points:
        await insert_returning_ids(session, _POINTS, writes.points)
    if writes.changes:
        await insert_returning_ids(session, _CHANGES, writes.changes)


async def sync_offers(
    session: AsyncSession,
    ref: ProductRef,
    offers: Sequence[OfferRecord],
    now: datetime,
) -> int:
    """Reconcile one product's offers (seed 001): insert new, update changed, remove stale.

    Returns the number of changes written to the feed.
    """
    writes = _Writes()
    existing = (await _existing_offers(session, [ref.id]))[ref.id]
    _diff_offers(writes, ref, existing, offers, now, announce=True)
    await _apply(session, writes, now)
    await session.execute(
        update(CatalogOffer).where(CatalogOffer.product_id == ref.id).values(last_seen_at=now)
    )
    return len(writes.changes)


def new_uids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs as text, from one read of the OS's random source.

    uuid.uuid4() reads os.urandom and builds a UUID object per call; a page of new products
    spent more time there than in its JSON.
    """
    pool = bytearray(os.urandom(16 * count))
    pool[6::16] = bytes((b & 0x0F) | 0x40 for b in pool[6::16])  # version 4
    pool[8::16] = bytes((b & 0x3F) | 0x80 for b in pool[8::16])  # RFC 4122 variant
    text = pool.hex()
    return [
        f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        for h in (text[i : i + 32] for i in range(0, 32 * count, 32))
    ]


def new_product_row(record: ProductRecord, now: datetime, uid: str | None = None) -> dict[str, Any]:
    """Every column of a product first seen ``now`` (a new public id unless ``uid`` is given)."""
    return {
        "uid": uid or new_uids(1)[0],
        "provider": record.provider,
        "external_id": record.external_id[:255],
        **normalise.product_values(record),
        **normalise.summary(record.offers),
        "status": "active",
        "registration_status": None,
        "registration_error": None,
        "first_seen_at": now,
        "last_seen_at": now,
        "ended_at": None,
        "created_at": now,
        "updated_at": now,
    }


async def _existing_products(
    session: AsyncSession, provider: str, external_ids: Sequence[str]
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    columns = (
        CatalogProduct.id,
        CatalogProduct.uid,
        CatalogProduct.external_id,
        CatalogProduct.content_hash,
        CatalogProduct.status,
    )
    for start in range(0, len(external_ids), _IN_CHUNK):
        chunk = external_ids[start : start + _IN_CHUNK]
        rows = await session.execute(
            select(*columns).where(
                CatalogProduct.provider == provider, CatalogProduct.external_id.in_(chunk)
            )
        )
        found.update({row.external_id: row for row in rows})
    return found


async def upsert_products(
    session: AsyncSession, records: Sequence[ProductRecord], now: datetime
) -> UpsertSummary:
    """Write one page of one provider's products and their complete offer lists."""
    summary = UpsertSummary()
    unique = {r.external_id[:255]: r for r in records}  # a repeated product: the last wins
    if not unique:
        return summary
    provider = next(iter(unique.values())).provider
    if any(r.provider != provider for r in unique.values()):
        raise ValueError("one batch holds one provider's products")
    existing = await _existing_products(session, provider, list(unique))
    fresh = [r for key, r in unique.items() if key not in existing]
    uids = new_uids(len(fresh))
    new_rows = [new_product_row(r, now, uid) for r, uid in zip(fresh, uids, strict=True)]
    new_ids = await insert_returning_ids(session, _PRODUCTS, new_rows)
    refs: dict[str, ProductRef] = {}
    writes = _Writes()
    for record, row, new_id in zip(fresh, new_rows, new_ids, strict=True):
        ref = refs[row["external_id"]] = ProductRef(new_id, row["uid"], provider)
        _diff_offers(writes, ref, [], record.offers, now, announce=False)
        writes.summaries.pop(new_id, None)  # the inserted row already has its summary
        details = {key: row[key] for key in ("title", "url", "price_minor", "currency", "in_stock")}
        writes.changes.append(_change(ref, "new_listing", now, details))
    summary.created = len(fresh)
    offers = await _existing_offers(session, [row.id for row in existing.values()])
    rewritten: list[dict[str, Any]] = []
    seen_only: list[int] = []
    for key, row in existing.items():
        record = unique[key]
        ref = refs[key] = ProductRef(row.id, row.uid, provider)
        offers_changed = _diff_offers(
            writes, ref, offers[row.id], record.offers, now, announce=True
        )
        summary.offers_changed += int(offers_changed)
        if row.status != "active":
            summary.relisted += 1
            writes.changes.append(_change(ref, "relisted", now, {"title": record.title}))
        values = normalise.product_values(record)
        # One UPDATE per changed product, whatever changed: on PostgreSQL each rewrite of a
        # row is a new tuple with its index entries, so a product is never written twice.
        offer_summary = writes.summaries.pop(row.id, {})
        if values["content_hash"] != row.content_hash or row.status != "active":
            values.update(status="active", ended_at=None)
        elif offer_summary:
            # Only prices or stock moved: the payload kept for re-parsing moves with them.
            values = {"raw": values["raw"]}
        else:
            summary.unchanged += 1
            seen_only.append(row.id)
            continue
        summary.updated += 1
        rewritten.append(
            {"id": row.id, **values, **offer_summary, "last_seen_at": now, "updated_at": now}
        )
    await _apply(session, writes, now)
    if rewritten:
        await update_by_id(session, _PRODUCTS, rewritten)
    for start in range(0, len(seen_only), _IN_CHUNK):
        chunk = seen_only[start : start + _IN_CHUNK]
        await session.execute(
            update(CatalogProduct).where(CatalogProduct.id.in_(chunk)).values(last_seen_at=now)
        )
    summary.changes = len(writes.changes)
    summary.refs = [refs[key] for key in unique]
    return summary


async def insert_changes(
    session: AsyncSession,
    refs: Sequence[ProductRef],
    kind: str,
    now: datetime,
    details: dict[str, Any],
) -> None:
    """Product-level changes of one kind (created or removed through the API)."""
    if refs:
        await insert_returning_ids(
            session, _CHANGES, [_change(ref, kind, now, dict(details)) for ref in refs]
        )


async def end_unseen(
    session: AsyncSession, provider: str, seen_before: datetime, now: datetime
) -> int:
    """Mark the provider's active products not seen since ``seen_before`` as ended."""
    ended = (
        await session.execute(
            update(CatalogProduct)
            .where(
                CatalogProduct.provider == provider,
                CatalogProduct.status == "active",
                CatalogProduct.last_seen_at < seen_before,
            )
            .values(status="ended", ended_at=now, in_stock=False, updated_at=now)
            .returning(CatalogProduct.id, CatalogProduct.uid, CatalogProduct.title)
        )
    ).all()
    changes = [
        _change(ProductRef(row.id, row.uid, provider), "ended", now, {"title": row.title})
        for row in ended
    ]
    if changes:
        await insert_returning_ids(session, _CHANGES, changes)
    return len(changes)
