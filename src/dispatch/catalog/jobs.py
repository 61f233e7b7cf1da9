"""The catalogue's queue handlers, registered by name on the shared registry."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

from pydantic import BaseModel, Field
from sqlalchemy import delete

from dispatch.catalog import requests, schedule, service
from dispatch.catalog.context import CatalogContext
from dispatch.catalog.products import REGISTER_KIND
from dispatch.catalog.provider import ProviderMisconfigured, ProviderUnavailable
from dispatch.catalog.records import MalformedPayload
from dispatch.db.base import utcnow
from dispatch.models import CatalogChange
from dispatch.queue.errors import PermanentFailure, RetryAfter
from dispatch.queue.policy import RetryPolicy
from dispatch.queue.registry import HandlerResult, JobContext, Registry
from dispatch.queue.schedules import ScheduleSpec

UPKEEP_KIND = "catalog.upkeep"
UPKEEP_EVERY = "@every 1h"


class ScrapeArgs(BaseModel):
    provider: str = Field(min_length=1, max_length=64)


class RegisterArgs(BaseModel):
    product_id: str = Field(min_length=1, max_length=64)


@contextlib.contextmanager
def _steered(*permanent: type[Exception]) -> Iterator[None]:
    """Provider errors as queue outcomes: ``permanent`` ones fail the job at once; a
    provider that said when to come back is retried then, not on the queue's backoff."""
    try:
        yield
    except permanent as exc:
        raise PermanentFailure(str(exc)) from exc
    except ProviderUnavailable as exc:
        if exc.retry_after is not None:
            raise RetryAfter(exc.retry_after, str(exc)) from exc
        raise


def register(registry: Registry, ctx: CatalogContext) -> None:
    once = RetryPolicy(max_attempts=1)
    queue_name = ctx.settings.catalog_queue

    @registry.register(schedule.SWEEP_KIND, policy=once)
    async def sweep(context: JobContext, args: object) -> HandlerResult:
        """Enqueue the scrape or sync of every provider that is due."""
        return {"enqueued": await schedule.sweep(ctx, utcnow())}

    registry.schedule(
        ScheduleSpec(
            schedule.SWEEP_KIND, schedule.SWEEP_EVERY, schedule.SWEEP_KIND, queue=queue_name
        )
    )

    runs = RetryPolicy(max_attempts=3, base_seconds=30.0, cap_seconds=600.0)

    @registry.register(schedule.SCRAPE_KIND, args=ScrapeArgs, policy=runs)
    async def scrape(context: JobContext, args: ScrapeArgs) -> HandlerResult:
        """Scrape one provider, page by page."""
        # Retrying will not fix a bad setting or a shape we cannot read: the next
        # scheduled run tries again, and the provider shows the error meanwhile.
        with _steered(ProviderMisconfigured, MalformedPayload):
            return await service.scrape(ctx, args.provider)

    @registry.register(schedule.SYNC_KIND, policy=runs)
    async def sync_offers(context: JobContext, args: object) -> HandlerResult:
        """Synchronise every registered product's offers (seed 001)."""
        with _steered(ProviderMisconfigured):
            return await service.sync_offers(ctx)

    registration = RetryPolicy(max_attempts=12, base_seconds=10.0, cap_seconds=3600.0)

    @registry.register(REGISTER_KIND, args=RegisterArgs, policy=registration)
    async def register_product(context: JobContext, args: RegisterArgs) -> HandlerResult:
        """Register one product with the offers service (409 counts as done)."""
        last = context.job.attempt >= context.job.max_attempts
        with _steered():
            return await service.register(ctx, args.product_id, last_attempt=last)

    @registry.register(UPKEEP_KIND, policy=once)
    async def upkeep(context: JobContext, args: object) -> HandlerResult:
        """Prune provider requests and change-feed rows past their retention."""
        now = utcnow()
        settings = ctx.settings
        async with ctx.database.session() as session:
            pruned = await requests.prune(
                session, now - timedelta(days=settings.catalog_request_retention_days)
            )
            changes = await session.execute(
                delete(CatalogChange).where(
                    CatalogChange.created_at
                    < now - timedelta(days=settings.catalog_change_retention_days)
                )
            )
        return {"requests": pruned, "changes": int(getattr(changes, "rowcount", 0) or 0)}

    registry.schedule(ScheduleSpec(UPKEEP_KIND, UPKEEP_EVERY, UPKEEP_KIND, queue=queue_name))
