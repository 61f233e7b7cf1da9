"""The watch domain's background work, registered with the queue's workers."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field

from dispatch.catalog.context import CatalogContext
from dispatch.db.base import utcnow
from dispatch.queue.policy import RetryPolicy
from dispatch.queue.registry import HandlerResult, JobContext, Registry
from dispatch.queue.schedules import ScheduleSpec
from dispatch.watch import delivery, integrations, polling
from dispatch.watch.evaluate import Evaluator


class PollArgs(BaseModel):
    rule_id: int = Field(ge=1)


class ImportArgs(BaseModel):
    import_id: int = Field(ge=1)


DISCOGS_SYNC_EVERY = "@every 300s"


def register(registry: Registry, catalog: CatalogContext) -> None:
    """Every worker follows the catalogue's change feed and sends what is due (several at
    once is safe: the feed's cursor and the notifications are claimed, not shared); rules
    are polled on their own schedule through the catalogue's providers."""
    database, settings = catalog.database, catalog.settings
    registry.loop("watch.changes", Evaluator(database, settings).run)
    registry.loop("watch.deliveries", lambda: delivery.run(database, settings))
    once = RetryPolicy(max_attempts=1)
    queue_name = settings.catalog_queue

    @registry.register(polling.SWEEP_KIND, policy=once)
    async def sweep(context: JobContext, args: object) -> HandlerResult:
        """Enqueue a poll of every rule that is due."""
        return {"enqueued": await polling.sweep(database, queue_name, utcnow())}

    registry.schedule(
        ScheduleSpec(polling.SWEEP_KIND, polling.SWEEP_EVERY, polling.SWEEP_KIND, queue=queue_name)
    )

    @registry.register(polling.POLL_KIND, args=PollArgs, policy=once)
    async def poll(context: JobContext, args: PollArgs) -> HandlerResult:
        """Ask one rule's sources now (a failure is recorded on the rule, retried by time)."""
        return await polling.poll(catalog, args.rule_id)

    importer = integrations.Importer(catalog)

    @registry.register(
        integrations.IMPORT_KIND,
        args=ImportArgs,
        policy=RetryPolicy(max_attempts=5, base_seconds=30.0, cap_seconds=900.0),
    )
    async def discogs_import(context: JobContext, args: ImportArgs) -> HandlerResult:
        """Import a user's Discogs lists; a retry goes on from the last page written."""
        last = context.job.attempt >= context.job.max_attempts
        return await importer.run(args.import_id, last_attempt=last)

    if settings.discogs_sync_enabled:
        interval = timedelta(seconds=settings.discogs_sync_interval_seconds)

        @registry.register(integrations.SYNC_KIND, policy=once)
        async def discogs_sync(context: JobContext, args: object) -> HandlerResult:
            """Import connected accounts again once their last import is ``interval`` old."""
            return {"started": await integrations.sync_due(database, queue_name, interval)}

        registry.schedule(
            ScheduleSpec(
                integrations.SYNC_KIND,
                DISCOGS_SYNC_EVERY,
                integrations.SYNC_KIND,
                queue=queue_name,
            )
        )
