"""Queue upkeep, safe to run from every process at once: no leader is needed.

Expired leases go back to the queue (or to ``failed`` when their attempts are
spent), due scheduled jobs become available, and finished jobs are pruned in
small batches so the hot table stays small. On PostgreSQL each step skips rows
another process is working on.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import case, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import Job, JobAttempt
from dispatch.models.job import FINISHED_STATES
from dispatch.queue import notify

LEASE_EXPIRED = "lease expired: the worker stopped heart-beating or ran past its deadline"


def _locked_batch(session: AsyncSession, query: Any) -> Any:
    """On PostgreSQL, skip rows another reaper holds, so any number can run at once."""
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


async def expire_leases(database: Database, batch: int = 500) -> int:
    """Requeue running jobs whose lease or deadline passed; exhausted ones fail.

    The lost attempt counts, so a job that kills its worker every time ends in
    ``failed`` after ``max_attempts`` instead of looping forever.
    """
    now = utcnow()
    async with database.session() as session:
        expired = _locked_batch(
            session,
            select(Job.id)
            .where(
                Job.state == "running",
                (Job.lease_expires_at < now) | (Job.deadline_at < now),
            )
            .order_by(Job.lease_expires_at)
            .limit(batch),
        )
        rows = (
            await session.execute(
                update(Job)
                .where(Job.id.in_(expired.scalar_subquery()))
                .values(
                    state=case((Job.attempt >= Job.max_attempts, "failed"), else_="available"),
                    finished_at=case((Job.attempt >= Job.max_attempts, now), else_=None),
                    run_at=now,
                    last_error=LEASE_EXPIRED,
                    lease_token=None,
                    lease_owner=None,
                    lease_expires_at=None,
                )
                .returning(Job.id, Job.queue, Job.state)
            )
        ).all()
        ids = [row.id for row in rows]
        requeued = {row.queue for row in rows if row.state == "available"}
        if requeued:  # wake workers here and, on PostgreSQL, in other processes
            await notify.note_enqueued(session, requeued)
        if ids:
            await session.execute(
                update(JobAttempt)
                .where(JobAttempt.job_id.in_(ids), JobAttempt.outcome == "running")
                .values(outcome="lease_expired", finished_at=now, error="lease expired")
            )
    return len(ids)


async def promote_scheduled(database: Database, batch: int = 1000) -> int:
    """Make scheduled jobs whose time has come available."""
    now = utcnow()
    async with database.session() as session:
        due = _locked_batch(
            session,
            select(Job.id)
            .where(Job.state == "scheduled", Job.run_at <= now)
            .order_by(Job.run_at)
            .limit(batch),
        )
        rows = (
            await session.execute(
                update(Job)
                .where(Job.id.in_(due.scalar_subquery()))
                .values(state="available")
                .returning(Job.id, Job.queue)
            )
        ).all()
        if rows:
            await notify.note_enqueued(session, {row.queue for row in rows})
        return len(rows)


async def prune_finished(database: Database, older_than: timedelta, batch: int = 500) -> int:
    """Delete up to ``batch`` jobs that finished before ``older_than`` ago."""
    cutoff = utcnow() - older_than
    async with database.session() as session:
        old = (
            select(Job.id)
            .where(Job.state.in_(FINISHED_STATES), Job.finished_at < cutoff)
            .limit(batch)
        )
        result = await session.execute(delete(Job).where(Job.id.in_(old.scalar_subquery())))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
