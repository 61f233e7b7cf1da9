"""The gateway's queue handlers, registered by name on the shared registry."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from dispatch.db.base import utcnow
from dispatch.gateway import alerts, health, upkeep
from dispatch.gateway.context import GatewayContext
from dispatch.gateway.delivery import DeliverArgs, deliver
from dispatch.gateway.ingest import DELIVER_KIND
from dispatch.models import GatewayResource
from dispatch.queue.policy import RetryPolicy
from dispatch.queue.registry import HandlerResult, JobContext, Registry
from dispatch.queue.schedules import ScheduleSpec

UPKEEP_EVERY = "@every 60s"


def register(registry: Registry, ctx: GatewayContext) -> None:
    # The handler decides retries itself (it records the task's state first), so the
    # queue's policy only has to honour the RetryAfter it raises.
    policy = RetryPolicy(
        max_attempts=ctx.settings.gateway_max_attempts,
        base_seconds=min(
            ctx.settings.gateway_retry_base_seconds, ctx.settings.gateway_retry_cap_seconds
        ),
        cap_seconds=ctx.settings.gateway_retry_cap_seconds,
        retry_after_cap_seconds=max(
            ctx.settings.gateway_retry_after_max_seconds, ctx.settings.gateway_retry_cap_seconds
        ),
    )

    @registry.register(DELIVER_KIND, args=DeliverArgs, policy=policy)
    async def deliver_task(context: JobContext, args: DeliverArgs) -> HandlerResult:
        """Deliver one gateway task down its endpoint's failover sequence."""
        return await deliver(ctx, context, args)

    @registry.register(upkeep.UPKEEP_KIND, policy=RetryPolicy(max_attempts=1))
    async def gateway_upkeep(context: JobContext, args: object) -> HandlerResult:
        """Settle tasks whose job ended under them; prune health history past retention."""
        retention = timedelta(days=ctx.settings.gateway_health_retention_days)
        async with ctx.database.session() as session:
            done = await upkeep.run(session, utcnow(), retention)
        return dict(done)

    registry.schedule(
        ScheduleSpec(
            name=upkeep.UPKEEP_KIND,
            expression=UPKEEP_EVERY,
            kind=upkeep.UPKEEP_KIND,
            queue=ctx.settings.gateway_queue,
        )
    )

    @registry.register(health.SWEEP_KIND, policy=RetryPolicy(max_attempts=1))
    async def health_sweep(context: JobContext, args: object) -> HandlerResult:
        """Enqueue a check of every resource whose next health check is due."""
        async with ctx.database.session() as session:
            enqueued = await health.sweep(session, ctx.settings.gateway_queue, utcnow())
        return {"enqueued": enqueued}

    @registry.register(health.CHECK_KIND, args=CheckArgs, policy=RetryPolicy(max_attempts=1))
    async def health_check(context: JobContext, args: CheckArgs) -> HandlerResult:
        """Probe one resource and feed the result to its breaker."""
        async with ctx.database.session(write=False) as session:
            resource = await session.get(GatewayResource, args.resource_id)
        if resource is None or not resource.health_check_enabled:
            return {"skipped": True}
        result = await health.probe(ctx, resource, utcnow())
        async with ctx.database.session() as session:
            fresh = await session.get(GatewayResource, args.resource_id)
            if fresh is None:
                return {"skipped": True}
            state = await health.record(session, ctx, fresh, result, utcnow(), manual=False)
        return {"success": result.success, "breaker": state}

    @registry.register(
        alerts.ALERT_KIND,
        args=alerts.AlertArgs,
        policy=RetryPolicy(max_attempts=5, base_seconds=10.0, cap_seconds=600.0),
    )
    async def send_alert(context: JobContext, args: alerts.AlertArgs) -> HandlerResult:
        """Send one failure (or recovery) alert by email or webhook."""
        return await alerts.send(ctx, args)

    registry.schedule(
        ScheduleSpec(
            name=health.SWEEP_KIND,
            expression=health.SWEEP_EVERY,
            kind=health.SWEEP_KIND,
            queue=ctx.settings.gateway_queue,
        )
    )


class CheckArgs(BaseModel):
    resource_id: int
