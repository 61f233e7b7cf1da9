"""Catalogue operations that call providers: live search, scrapes, offers sync, registration.

No transaction stays open while a provider is on the network: each page of a scrape is
written in its own transaction once it has arrived, so a failure leaves earlier pages
written and the failing one not at all, and only a scrape that ran to the end marks the
products it did not see as ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select, text, update

from dispatch.catalog import configs, products, store
from dispatch.catalog.context import CatalogContext
from dispatch.catalog.provider import (
    ProviderConfig,
    ProviderError,
    ProviderMisconfigured,
    ProviderRejected,
    ProviderUnavailable,
    Unsupported,
)
from dispatch.catalog.providers.offers.client import OffersProvider
from dispatch.catalog.records import MalformedPayload, ProductRecord
from dispatch.catalog.registry import OFFERS, missing_credentials
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import CatalogProduct, CatalogProvider

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ProviderFailure:
    """Why one provider could not answer, as the API reports it."""

    code: str  # unavailable, rejected, misconfigured, disabled, unsupported, malformed, error
    message: str
    status: int | None = None
    retry_after: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def failure_of(error: BaseException) -> ProviderFailure:
    if isinstance(error, ProviderUnavailable):
        return ProviderFailure("unavailable", error.message, error.status, error.retry_after)
    if isinstance(error, ProviderRejected):
        return ProviderFailure("rejected", error.message, error.status)
    if isinstance(error, ProviderMisconfigured):
        return ProviderFailure("misconfigured", error.message)
    if isinstance(error, Unsupported):
        return ProviderFailure("unsupported", error.message)
    if isinstance(error, MalformedPayload):
        return ProviderFailure("malformed", str(error))
    return ProviderFailure("error", f"{type(error).__name__}: {error}")


def usable(config: ProviderConfig) -> ProviderFailure | None:
    """Why ``config`` cannot be called now (disabled, missing credentials), or None."""
    if not config.enabled:
        return ProviderFailure("disabled", f"{config.name} is disabled")
    missing = missing_credentials(config)
    if missing:
        return ProviderFailure("misconfigured", f"missing credentials: {', '.join(missing)}")
    if not config.base_url:
        return ProviderFailure("misconfigured", "no base URL is configured")
    return None


async def _record_run(
    ctx: CatalogContext,
    name: str,
    now: datetime,
    *,
    error: str | None = None,
    result: dict[str, Any] | None = None,
) -> None:
    values: dict[str, Any] = {"last_run_at": now, "updated_at": utcnow()}
    if error is None:
        values.update(last_success_at=utcnow(), last_result=result or {})
    else:
        values.update(last_error=error[:2000], last_error_at=utcnow())
    async with ctx.database.session() as session:
        await configs.ensure_rows(session, ctx.defaults, utcnow())
        await session.execute(
            update(CatalogProvider).where(CatalogProvider.name == name).values(**values)
        )


@dataclass
class LiveResult:
    products: dict[str, list[CatalogProduct]] = field(default_factory=dict)
    errors: dict[str, ProviderFailure] = field(default_factory=dict)


async def _live_one(
    ctx: CatalogContext, config: ProviderConfig, query: str | None, limit: int
) -> list[CatalogProduct]:
    records = await ctx.build(config).search(query, limit)
    ctx.emit("scraper.fetch", provider=config.name, count=len(records), query=query)
    if not records:
        return []
    async with ctx.database.session() as session:
        written = await store.upsert_products(session, records, utcnow())
    ctx.count_written(config.name, written)
    ids = [ref.id for ref in written.refs]
    async with ctx.database.session(write=False) as session:
        rows = {
            p.id: p
            for p in await session.scalars(select(CatalogProduct).where(CatalogProduct.id.in_(ids)))
        }
    return [rows[i] for i in ids if i in rows]


async def live_search(
    ctx: CatalogContext, names: Sequence[str], query: str | None, limit: int
) -> LiveResult:
    """Ask each provider now, store what came back, and report each one's failure."""
    configs = await ctx.configs()
    result = LiveResult()
    calls: dict[str, asyncio.Task[list[CatalogProduct]]] = {}
    for name in names:
        config = configs[name]
        problem = usable(config)
        if problem is None and not ctx.build(config).searchable:
            problem = ProviderFailure("unsupported", f"{name} cannot be searched")
        if problem is not None:
            result.errors[name] = problem
            continue
        calls[name] = asyncio.create_task(_live_one(ctx, config, query, limit))
    try:
        for name, call in calls.items():
            try:
                result.products[name] = await call
            except (ProviderError, MalformedPayload) as exc:
                log.warning("catalog.live_failed", provider=name, error=str(exc))
                ctx.emit("scraper.error", provider=name, error=str(exc))
                result.errors[name] = failure_of(exc)
    finally:
        await ctx.flush_requests()
    return result


# A first scrape fills the tables faster than autovacuum refreshes their statistics; with
# stale ones PostgreSQL looked products up through the (provider, id) index, reading every
# product of the provider for each page (a scrape's pages got slower as it went). So the
# scrape analyzes the tables itself after 1,000, 10,000, 100,000… new products.
ANALYZE_AFTER_CREATED = 1_000


async def _analyze(database: Database) -> None:
    async with database.session() as session:
        await session.execute(text("ANALYZE catalog_products, catalog_offers"))


async def write_pages(
    database: Database, pages: AsyncIterator[list[ProductRecord]]
) -> tuple[store.UpsertSummary, int]:
    """Write each page in its own transaction while the next one is fetched and parsed.

    The provider's next page (network, then parsing on the event loop) overlaps the
    database's work on this one: SQLite runs in its own thread, PostgreSQL in its server.
    """
    total = store.UpsertSummary()
    count = 0
    upcoming: asyncio.Future[list[ProductRecord] | None] = asyncio.ensure_future(anext(pages, None))
    analyzed_at = ANALYZE_AFTER_CREATED
    try:
        while (records := await upcoming) is not None:
            upcoming = asyncio.ensure_future(anext(pages, None))
            async with database.session() as session:
                total.add(await store.upsert_products(session, records, utcnow()))
            count += 1
            if database.kind == "postgresql" and total.created >= analyzed_at:
                analyzed_at *= 10
                await _analyze(database)
    finally:
        # Stop fetching ahead, and take the fetch's own error (if any) so it is not left
        # unretrieved: the error that ended the loop is the one that propagates.
        if not upcoming.done():
            upcoming.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await upcoming
        await pages.aclose()  # type: ignore[attr-defined]
    return total, count


async def scrape(ctx: CatalogContext, name: str) -> dict[str, Any]:
    """Page through everything a provider lists, one transaction per page."""
    config = await ctx.config(name)
    problem = usable(config)
    if problem is not None:
        raise ProviderMisconfigured(name, problem.message)
    started = utcnow()
    try:
        total, pages = await write_pages(ctx.database, ctx.build(config).scrape())
        async with ctx.database.session() as session:
            ended = await store.end_unseen(session, name, started, utcnow())
    except BaseException as exc:
        await ctx.flush_requests()
        await _record_run(ctx, name, started, error=str(exc) or type(exc).__name__)
        log.warning("catalog.scrape_failed", provider=name, error=str(exc))
        ctx.emit("scraper.error", provider=name, error=str(exc) or type(exc).__name__)
        raise
    result = {
        "pages": pages,
        "created": total.created,
        "updated": total.updated,
        "unchanged": total.unchanged,
        "relisted": total.relisted,
        "ended": ended,
        "changes": total.changes + ended,
    }
    await ctx.flush_requests()
    await _record_run(ctx, name, started, result=result)
    ctx.count_written(name, total)
    log.info("catalog.scraped", provider=name, **result)
    ctx.emit("scraper.cycle", providers=[name], stored=total.created + total.updated, **result)
    return result


def offers_provider(ctx: CatalogContext, config: ProviderConfig) -> OffersProvider:
    provider = ctx.build(config)
    if not isinstance(provider, OffersProvider):
        raise ProviderMisconfigured(config.name, "is not an offers service")
    return provider


async def _sync_one(
    ctx: CatalogContext, provider: OffersProvider, ref: store.ProductRef
) -> tuple[int, ProviderFailure | None]:
    try:
        offers = await provider.offers(ref.uid)
    except (ProviderError, MalformedPayload) as exc:
        if isinstance(exc, ProviderRejected) and exc.status == 404:
            await _forget_registration(ctx, ref.id, str(exc))
        log.warning("catalog.offers_sync_failed", product=ref.uid, error=str(exc))
        return 0, failure_of(exc)
    async with ctx.database.session() as session:
        changes = await store.sync_offers(session, ref, offers, utcnow())
    return changes, None


async def _forget_registration(ctx: CatalogContext, product_id: int, error: str) -> None:
    """The service no longer knows the product: register it again."""
    async with ctx.database.session() as session:
        row = await session.get(CatalogProduct, product_id)
        if row is not None:
            row.registration_status = "pending"
            row.registration_error = error[:2000]
            await products.enqueue_registration(session, ctx.settings, row.uid)


async def sync_offers(ctx: CatalogContext) -> dict[str, Any]:
    """Seed 001's sync: every registered product's offers, a bounded number at a time."""
    config = await ctx.config(OFFERS)
    problem = usable(config)
    if problem is not None:
        raise ProviderMisconfigured(OFFERS, problem.message)
    provider = offers_provider(ctx, config)
    started = utcnow()
    async with ctx.database.session(write=False) as session:
        rows = (
            await session.execute(
                select(CatalogProduct.id, CatalogProduct.uid).where(
                    CatalogProduct.provider == OFFERS,
                    CatalogProduct.registration_status == "registered",
                )
            )
        ).all()
    bound = asyncio.Semaphore(ctx.settings.catalog_sync_concurrency)

    async def one(row: Any) -> tuple[int, ProviderFailure | None]:
        async with bound:
            return await _sync_one(ctx, provider, store.ProductRef(row.id, row.uid, OFFERS))

    try:
        outcomes = await asyncio.gather(*(one(row) for row in rows))
    finally:
        await ctx.flush_requests()
    failed = [f for _, f in outcomes if f is not None]
    result = {
        "products": len(rows),
        "synced": len(rows) - len(failed),
        "failed": len(failed),
        "changes": sum(changes for changes, _ in outcomes),
    }
    error = f"{len(failed)} of {len(rows)} products failed: {failed[0].message}" if failed else None
    await _record_run(ctx, OFFERS, started, error=error, result=result)
    return result


async def register(ctx: CatalogContext, uid: str, *, last_attempt: bool) -> dict[str, Any]:
    """Register one product with the offers service; the last failed attempt marks it failed."""
    async with ctx.database.session(write=False) as session:
        row = await session.scalar(select(CatalogProduct).where(CatalogProduct.uid == uid))
        if row is None:
            return {"skipped": "deleted"}
        if row.registration_status == "registered":
            return {"skipped": "registered"}
        name, description = row.title, row.description
    try:
        config = await ctx.config(OFFERS)
        problem = usable(config)
        if problem is not None:
            raise ProviderMisconfigured(OFFERS, problem.message)
        await offers_provider(ctx, config).register(uid, name, description)
    except (ProviderError, MalformedPayload) as exc:
        await _registration_state(ctx, uid, "failed" if last_attempt else "pending", str(exc))
        raise
    finally:
        await ctx.flush_requests()
    await _registration_state(ctx, uid, "registered", None)
    return {"registered": uid}


async def _registration_state(
    ctx: CatalogContext, uid: str, status: str, error: str | None
) -> None:
    async with ctx.database.session() as session:
        await session.execute(
            update(CatalogProduct)
            .where(CatalogProduct.uid == uid)
            .values(
                registration_status=status,
                registration_error=error[:2000] if error else None,
                updated_at=utcnow(),
            )
        )
