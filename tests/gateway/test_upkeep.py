"""Gateway upkeep on a real database: orphaned tasks settled, history and old tasks pruned."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.gateway import settings_store, upkeep
from dispatch.gateway.search import search_text
from dispatch.models import (
    GatewayAttempt,
    GatewayHealthCheck,
    GatewayResource,
    GatewayTask,
    Job,
)
from dispatch.queue import service as queue
from dispatch.queue.service import JobSpec
from tests.support import make_settings

RETENTION = timedelta(days=30)


@pytest.fixture
async def database(db_settings: dict[str, Any]) -> AsyncIterator[Database]:
    db = Database(make_settings(**db_settings))
    yield db
    await db.dispose()


async def _task(database: Database, status: str, age: timedelta, *, job: bool = False) -> int:
    now = utcnow()
    async with database.session() as session:
        job_id = None
        if job:
            job_id = (await queue.enqueue(session, JobSpec("gateway.deliver", {}))).job_id
        task = GatewayTask(
            message_id=f"msg_{status}_{age.total_seconds():.0f}_{job}",
            endpoint_path="notify",
            client_name="acme",
            status=status,
            source_payload={"ref": "r"},
            job_id=job_id,
            created_at=now - age,
            updated_at=now - age,
            search_text=search_text(["r"]),
        )
        session.add(task)
        await session.flush()
        session.add(
            GatewayAttempt(
                task_id=task.id,
                resource_name="r",
                request_method="POST",
                request_url="http://example.test/",
                outcome="success",
            )
        )
        return task.id


async def test_tasks_whose_job_ended_are_failed(database: Database) -> None:
    orphan = await _task(database, "processing", timedelta(0), job=True)
    healthy = await _task(database, "pending", timedelta(0), job=True)
    async with database.session() as session:
        task = await session.get(GatewayTask, orphan)
        assert task is not None
        await session.execute(update(Job).where(Job.id == task.job_id).values(state="failed"))
    async with database.session() as session:
        done = await upkeep.run(session, utcnow(), RETENTION)
    assert done["settled"] == 1
    async with database.session(write=False) as session:
        statuses = {t.id: t.status for t in await session.scalars(select(GatewayTask))}
    assert statuses == {orphan: "failed", healthy: "pending"}


async def test_cleanup_follows_the_settings(database: Database) -> None:
    await _task(database, "success", timedelta(days=40))
    await _task(database, "failed", timedelta(days=40))
    old_held = await _task(database, "held", timedelta(days=40))
    recent = await _task(database, "success", timedelta(days=1))
    async with database.session() as session:
        assert (await upkeep.run(session, utcnow(), RETENTION))["pruned_tasks"] == 0
    async with database.session() as session:
        update_ = settings_store.SettingsUpdate(enable_task_cleanup=True, task_cleanup_days=30)
        await settings_store.update(session, update_, utcnow())
    async with database.session() as session:
        assert (await upkeep.run(session, utcnow(), RETENTION))["pruned_tasks"] == 2
    async with database.session(write=False) as session:
        left = set(await session.scalars(select(GatewayTask.id)))
        attempts = await session.scalar(select(func.count()).select_from(GatewayAttempt))
    assert left == {old_held, recent}
    assert attempts == 2  # the pruned tasks' attempts went with them


async def test_health_history_is_pruned_by_age(database: Database) -> None:
    now = utcnow()
    async with database.session() as session:
        resource = GatewayResource(name="r", url="http://example.test/", signing_secret="x")
        session.add(resource)
        await session.flush()
        for days in (1, 31, 45):
            session.add(
                GatewayHealthCheck(
                    resource_id=resource.id,
                    method="simple",
                    success=True,
                    checked_at=now - timedelta(days=days),
                )
            )
    async with database.session() as session:
        assert (await upkeep.run(session, now, RETENTION))["pruned_health_checks"] == 2
    async with database.session(write=False) as session:
        assert await session.scalar(select(func.count()).select_from(GatewayHealthCheck)) == 1
