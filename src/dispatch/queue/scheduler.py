"""Turning schedules into jobs: exactly one job per slot, however many processes tick.

Each due slot is taken with a compare-and-set on ``next_run_at``; the process
that wins enqueues the job in the same transaction, with a dedupe key naming the
slot. A slot whose previous job is still live is skipped, not stacked. Slots
missed while nothing ran are not replayed: the schedule resumes at the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import Job, Schedule
from dispatch.models.job import LIVE_STATES
from dispatch.queue import service
from dispatch.queue.schedules import ScheduleSpec, next_slot

log = structlog.get_logger(__name__)


async def sync(database: Database, specs: Sequence[ScheduleSpec]) -> None:
    """Bring the table in line with the code's schedules (safe to run from every process)."""
    now = utcnow()
    insert = postgresql.insert if database.kind == "postgresql" else sqlite.insert
    async with database.session() as session:
        for spec in specs:
            if not spec.enabled:  # an empty expression disables the schedule
                await session.execute(delete(Schedule).where(Schedule.name == spec.name))
                continue
            values = {"kind": spec.kind, "args": spec.args, "queue": spec.queue}
            await session.execute(
                insert(Schedule)
                .values(
                    name=spec.name,
                    expression=spec.expression,
                    next_run_at=next_slot(spec.expression, now),
                    updated_at=now,
                    **values,
                )
                .on_conflict_do_nothing(index_elements=["name"])
            )
            row = await session.get(Schedule, spec.name)
            if row is not None and row.expression != spec.expression:
                row.expression = spec.expression
                row.next_run_at = next_slot(spec.expression, now)
            if row is not None:
                row.kind, row.args, row.queue = spec.kind, spec.args, spec.queue


async def tick(database: Database, now: datetime | None = None) -> list[int]:
    """Enqueue the jobs of every due slot this process wins; returns their ids."""
    now = now or utcnow()
    async with database.session(write=False) as session:
        due = (await session.scalars(select(Schedule).where(Schedule.next_run_at <= now))).all()
    enqueued: list[int] = []
    for schedule in due:
        job_id = await _take_slot(database, schedule, now)
        if job_id is not None:
            enqueued.append(job_id)
    return enqueued


async def _take_slot(database: Database, schedule: Schedule, now: datetime) -> int | None:
    slot = schedule.next_run_at
    following = next_slot(schedule.expression, max(slot, now))
    async with database.session() as session:
        won = (
            await session.execute(
                update(Schedule)
                .where(Schedule.name == schedule.name, Schedule.next_run_at == slot)
                .values(next_run_at=following, updated_at=now)
                .returning(Schedule.last_job_id)
            )
        ).first()
        if won is None:
            return None  # another process took this slot
        previous = won.last_job_id
        last = (
            await session.scalar(select(Job.state).where(Job.id == previous)) if previous else None
        )
        if last in LIVE_STATES:
            await session.execute(
                update(Schedule)
                .where(Schedule.name == schedule.name)
                .values(skipped=Schedule.skipped + 1)
            )
            log.info("queue.schedule_skipped", schedule=schedule.name, slot=slot.isoformat())
            return None
        spec = service.JobSpec(
            schedule.kind,
            schedule.args,
            queue=schedule.queue,
            dedupe_key=f"schedule:{schedule.name}:{slot.isoformat()}",
        )
        result = await service.enqueue(session, spec)
        await session.execute(
            update(Schedule).where(Schedule.name == schedule.name).values(last_job_id=result.job_id)
        )
    return result.job_id
