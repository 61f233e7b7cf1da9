"""Development-only routes (seed 003's ``/api/dev/…``): mounted only when ENVIRONMENT is
``development`` or ``test``, never in production.

- ``POST /api/v1/dev/listings/ingest`` writes one listing into the catalogue and evaluates it
  against the rules at once (seed 003's ``IngestResult``).
- ``POST /api/v1/dev/rules/{rule_id}/run?limit=`` polls one rule's sources now.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from dispatch.catalog import store
from dispatch.catalog.money import requested_minor
from dispatch.catalog.records import OfferRecord, ProductRecord
from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep
from dispatch.errors import ERROR_RESPONSES
from dispatch.models import CatalogPricePoint, WatchMatch
from dispatch.watch import polling, rules
from dispatch.watch.deps import RulesCaller, UserCaller
from dispatch.watch.evaluate import Evaluator

router = APIRouter(prefix="/dev", tags=["development"], responses=ERROR_RESPONSES)
DEV_ENVIRONMENTS = ("development", "test")


class ListingIngest(BaseModel):
    """Seed 003's dev listing: enough to make a catalogue product with one offer."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1, max_length=64)
    external_id: str = Field(min_length=1, max_length=255)
    title: str = Field(min_length=1, max_length=2000)
    url: str | None = Field(default=None, max_length=2000)
    brand: str | None = Field(default=None, max_length=255)
    price: Decimal | None = Field(default=None, ge=0, max_digits=14)
    currency: str = Field(default="USD", pattern=r"^[A-Za-z]{3}$")
    condition: str | None = Field(default=None, max_length=100)
    size: str | None = Field(default=None, max_length=100)
    in_stock: bool = True


class IngestResult(BaseModel):
    listing: dict[str, Any]
    created_listing: bool
    created_snapshot: bool
    created_matches: int
    events: int


def _record(body: ListingIngest) -> ProductRecord:
    price = requested_minor(body.price, body.currency, "price")
    offer = OfferRecord(
        external_id=f"{body.external_id}-offer",
        price_minor=price,
        currency=body.currency.upper(),
        label=body.size,
        available=body.in_stock,
    )
    attributes = {"condition": body.condition} if body.condition else {}
    return ProductRecord(
        provider=body.provider,
        external_id=body.external_id,
        title=body.title,
        url=body.url,
        brand=body.brand,
        attributes=attributes,
        offers=(offer,),
    )


@router.post("/listings/ingest")
async def ingest_listing(
    body: ListingIngest, runtime: RuntimeDep, caller: UserCaller
) -> IngestResult:
    """Write a listing as a provider would, then evaluate the change feed at once."""
    async with runtime.database.session() as session:
        summary = await store.upsert_products(session, [_record(body)], utcnow())
        ref = summary.refs[0]
        points = await session.scalar(
            select(func.count()).where(CatalogPricePoint.product_id == ref.id)
        )
    result = await Evaluator(runtime.database, runtime.settings).run_once()
    async with runtime.database.session(write=False) as session:
        matches = await session.scalar(select(func.count()).where(WatchMatch.product_id == ref.id))
    return IngestResult(
        listing={"id": ref.id, "uid": ref.uid, "provider": ref.provider},
        created_listing=summary.created == 1,
        created_snapshot=bool(summary.created or summary.offers_changed) and bool(points),
        created_matches=int(matches or 0),
        events=result.events,
    )


@router.post("/rules/{rule_id}/run")
async def run_rule(
    rule_id: int,
    runtime: RuntimeDep,
    caller: RulesCaller,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> dict[str, Any]:
    """Poll the rule's sources now and record the run on the rule."""
    # No request-wide transaction: the poll writes in transactions of its own.
    async with runtime.database.session(write=False) as session:
        await rules.get_rule(session, caller, rule_id)
    return await polling.poll(runtime.catalog, rule_id, limit=limit)
