"""Schedules: parsing (pure) and exactly one job per slot (real database)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import Job, Schedule
from dispatch.queue import scheduler, service
from dispatch.queue.registry import Registry
from dispatch.queue.schedules import InvalidSchedule, ScheduleSpec, next_slot, validate

T0 = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)


def test_six_fields_put_seconds_first_as_in_seed_001() -> None:
    first = next_slot("*/30 * * * * *", T0)
    assert first == datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    assert next_slot("*/30 * * * * *", first) == datetime(2026, 1, 1, 12, 1, 0, tzinfo=UTC)


def test_five_fields_and_intervals() -> None:
    assert next_slot("0 * * * *", T0) == datetime(2026, 1, 1, 13, 0, tzinfo=UTC)
    assert next_slot("@every 90s", T0) == T0 + timedelta(seconds=90)
    assert next_slot("@every 2h", T0) == T0 + timedelta(hours=2)


@pytest.mark.parametrize("expression", ["* * *", "61 * * * *", "@every 0s", "@every soon"])
def test_bad_expressions_are_refused(expression: str) -> None:
    with pytest.raises(InvalidSchedule):
        validate(expression)


def test_registry_validates_when_the_schedule_is_declared() -> None:
    registry = Registry()
    with pytest.raises(InvalidSchedule):
        registry.schedule(ScheduleSpec("bad", "every now and then", "queue.noop"))
    registry.schedule(ScheduleSpec("off", "", "queue.noop"))  # empty: allowed, disabled
    assert [spec.name for spec in registry.schedules] == ["off"]


async def _rows(database: Database) -> dict[str, Schedule]:
    async with database.session(write=False) as session:
        return {row.name: row for row in (await session.scalars(select(Schedule))).all()}


async def _make_due(database: Database, name: str) -> None:
    async with database.session() as session:
        await session.execute(
            update(Schedule)
            .where(Schedule.name == name)
            .values(next_run_at=utcnow() - timedelta(seconds=1))
        )


async def test_one_job_per_slot_however_many_tick(database: Database) -> None:
    spec = ScheduleSpec("offers.sync", "*/30 * * * * *", "queue.noop", {"source": "cron"})
    await asyncio.gather(*(scheduler.sync(database, [spec]) for _ in range(3)))
    await _make_due(database, "offers.sync")
    results = await asyncio.gather(*(scheduler.tick(database) for _ in range(6)))
    created = [job_id for batch in results for job_id in batch]
    assert len(created) == 1
    async with database.session(write=False) as session:
        jobs = (await session.scalars(select(Job))).all()
    assert [(job.kind, job.args) for job in jobs] == [("queue.noop", {"source": "cron"})]
    assert (jobs[0].dedupe_key or "").startswith("schedule:offers.sync:")
    assert (await _rows(database))["offers.sync"].next_run_at > utcnow()


async def test_a_slot_overlapping_a_live_run_is_skipped(database: Database) -> None:
    await scheduler.sync(database, [ScheduleSpec("slow", "@every 1s", "queue.noop")])
    await _make_due(database, "slow")
    (first,) = await scheduler.tick(database)
    await _make_due(database, "slow")
    assert await scheduler.tick(database) == []  # the first run is still waiting
    assert (await _rows(database))["slow"].skipped == 1
    (claimed,) = await service.claim(database, owner="w")
    assert await service.complete(database, claimed.id, claimed.lease_token)
    await _make_due(database, "slow")
    (second,) = await scheduler.tick(database)
    assert second != first


async def test_empty_expression_disables_and_changes_restart(database: Database) -> None:
    await scheduler.sync(database, [ScheduleSpec("nightly", "0 3 * * *", "queue.noop")])
    before = (await _rows(database))["nightly"].next_run_at
    await scheduler.sync(database, [ScheduleSpec("nightly", "@every 10s", "queue.noop")])
    after = (await _rows(database))["nightly"]
    assert after.expression == "@every 10s"
    assert after.next_run_at < before
    await scheduler.sync(database, [ScheduleSpec("nightly", "", "queue.noop")])
    assert "nightly" not in await _rows(database)
