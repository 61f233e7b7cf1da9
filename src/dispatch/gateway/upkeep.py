"""Gateway upkeep, run by the scheduler: settle orphaned tasks, prune old health history."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.gateway import settings_store
from dispatch.models import GatewayHealthCheck, GatewayTask, Job

UPKEEP_KIND = "gateway.upkeep"
PRUNE_BATCH = 1000


async def settle_orphans(session: AsyncSession, now: datetime) -> int:
    """Fail tasks whose delivery job ended without settling them.

    A worker killed during the last allowed attempt leaves its task ``processing`` while
    the reaper fails the job; a job a human cancelled or that was pruned leaves nothing
    to finish the task either. Such tasks become ``failed`` and can be retried by hand.
    """
    t = GatewayTask
    ended = select(Job.id).where(Job.id == t.job_id, Job.state.in_(("failed", "cancelled")))
    vanished = ~exists(select(Job.id).where(Job.id == t.job_id))
    result = await session.execute(
        update(t)
        .where(t.status.in_(("pending", "processing")), t.job_id.is_not(None))
        .where(exists(ended) | vanished)
        .values(
            status="failed",
            updated_at=now,
            next_attempt_at=None,
            last_error="The delivery job ended without finishing the task (worker lost)",
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def prune_health_history(session: AsyncSession, before: datetime) -> int:
    """Delete one batch of health checks older than ``before`` (small, lock-friendly)."""
    ids = select(GatewayHealthCheck.id).where(GatewayHealthCheck.checked_at < before)
    result = await session.execute(
        delete(GatewayHealthCheck).where(GatewayHealthCheck.id.in_(ids.limit(PRUNE_BATCH)))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def prune_finished_tasks(session: AsyncSession, before: datetime) -> int:
    """Delete one batch of delivered or failed tasks last touched before ``before``."""
    ids = select(GatewayTask.id).where(
        GatewayTask.status.in_(("success", "failed")), GatewayTask.updated_at < before
    )
    result = await session.execute(
        delete(GatewayTask).where(GatewayTask.id.in_(ids.limit(PRUNE_BATCH)))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def run(session: AsyncSession, now: datetime, retention: timedelta) -> dict[str, int]:
    """One pass; task cleanup follows the gateway settings (seed 002: off, 30 days)."""
    settled = await settle_orphans(session, now)
    pruned = await prune_health_history(session, now - retention)
    settings = await settings_store.load(session)
    removed = 0
    if settings.enable_task_cleanup:
        removed = await prune_finished_tasks(
            session, now - timedelta(days=settings.task_cleanup_days)
        )
    return {"settled": settled, "pruned_health_checks": pruned, "pruned_tasks": removed}
