"""When providers run: each provider's schedule, swept every few seconds by one job.

Schedules live with the provider's configuration (editable through the admin API), so
one sweep job (a queue schedule, so one per slot however many processes run) enqueues a
scrape or an offers sync for every enabled provider whose next run is due. The job's
dedupe key keeps one live job per provider: processes never scrape the same provider twice.
A provider's first run comes one interval after it is first seen, not at boot.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import update

from dispatch.catalog import configs
from dispatch.catalog.context import CatalogContext
from dispatch.catalog.registry import OFFERS
from dispatch.catalog.service import usable
from dispatch.config import Settings
from dispatch.models import CatalogProvider
from dispatch.queue import service as queue
from dispatch.queue.schedules import InvalidSchedule, next_slot
from dispatch.queue.service import JobSpec

log = structlog.get_logger(__name__)

SWEEP_KIND = "catalog.sweep"
SWEEP_EVERY = "@every 5s"
SCRAPE_KIND = "catalog.scrape"
SYNC_KIND = "catalog.sync_offers"


def run_spec(settings: Settings, name: str) -> JobSpec:
    """The job that runs provider ``name`` now (scrape, or the offers sync)."""
    kind = SYNC_KIND if name == OFFERS else SCRAPE_KIND
    return JobSpec(
        kind=kind,
        args={} if name == OFFERS else {"provider": name},
        queue=settings.catalog_queue,
        max_attempts=3,
        dedupe_key=f"{kind}:{name}",
    )


async def sweep(ctx: CatalogContext, now: datetime) -> list[str]:
    """Enqueue the run of every provider that is due; the names enqueued."""
    enqueued: list[str] = []
    async with ctx.database.session() as session:
        loaded = await configs.load(session, ctx.defaults)
        if any(row is None for _, row in loaded.values()):  # first sweep: no write otherwise
            await configs.ensure_rows(session, ctx.defaults, now)
            loaded = await configs.load(session, ctx.defaults)
        for name, (config, row) in loaded.items():
            if row is None or not config.schedule.strip() or usable(config) is not None:
                continue
            try:
                following = next_slot(config.schedule, now)
            except InvalidSchedule as exc:
                log.warning("catalog.bad_schedule", provider=name, error=str(exc))
                continue
            if row.next_run_at is None or row.next_run_at > following:
                row.next_run_at = following  # first sighting, or a schedule made shorter
                continue
            if row.next_run_at > now:
                continue
            taken = await session.execute(
                update(CatalogProvider)
                .where(CatalogProvider.name == name, CatalogProvider.next_run_at == row.next_run_at)
                .values(next_run_at=following)
                .returning(CatalogProvider.name)
            )
            if taken.first() is not None:
                await queue.enqueue(session, run_spec(ctx.settings, name))
                enqueued.append(name)
    return enqueued
