"""GroupCommit: callers share transactions, each gets its own result after the commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.engine import Database
from dispatch.db.group_commit import POSTGRES_IN_FLIGHT, GroupCommit
from dispatch.models import ApiKey
from tests.support import make_settings


@pytest.fixture
async def database(db_settings: dict[str, Any]) -> AsyncIterator[Database]:
    db = Database(make_settings(**db_settings))
    yield db
    await db.dispose()


class Recorder:
    """Work that inserts one api_keys row per item (prefix = item) and notes each batch."""

    def __init__(self, database: Database, pause: float = 0.0) -> None:
        self.database = database
        self.pause = pause
        self.batches: list[list[str]] = []
        self.running = 0
        self.most_running = 0

    async def work(self, session: AsyncSession, items: list[str]) -> list[int]:
        self.batches.append(list(items))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            rows = [{"name": i, "prefix": i, "key_hash": "0" * 64, "scopes": []} for i in items]
            await session.execute(insert(ApiKey), rows)
            await asyncio.sleep(self.pause)  # a slow commit: callers pile up meanwhile
            stored = await session.scalars(select(ApiKey.prefix).where(ApiKey.prefix.in_(items)))
            assert sorted(stored) == sorted(items)  # visible inside the batch's transaction
            return [len(item) for item in items]
        finally:
            self.running -= 1

    async def alone(self, item: str) -> int:
        async with self.database.session() as session:
            (result,) = await self.work(session, [item])
        return result


async def _prefixes(database: Database) -> list[str]:
    async with database.session(write=False) as session:
        return sorted((await session.scalars(select(ApiKey.prefix))).all())


async def test_concurrent_callers_share_commits(database: Database) -> None:
    recorder = Recorder(database, pause=0.05)
    group = GroupCommit(database, recorder.work, name="test.group")
    items = [f"k{n:03d}" for n in range(40)]
    try:
        calls = []
        for item in items:  # callers keep arriving while commits are in flight
            calls.append(asyncio.create_task(group.submit(item)))
            await asyncio.sleep(0.005)
        results = await asyncio.gather(*calls)
    finally:
        await group.close()
    assert results == [len(item) for item in items]
    assert await _prefixes(database) == items
    assert sorted(i for batch in recorder.batches for i in batch) == items
    assert len(recorder.batches) < len(items) // 2  # most callers rode along with others
    expected = 1 if database.kind == "sqlite" else POSTGRES_IN_FLIGHT
    assert recorder.most_running == expected


async def test_a_failing_batch_is_retried_one_by_one(database: Database) -> None:
    async with database.session() as session:
        await session.execute(
            insert(ApiKey), [{"name": "x", "prefix": "taken", "key_hash": "0" * 64, "scopes": []}]
        )
    recorder = Recorder(database, pause=0.02)
    group = GroupCommit(
        database,
        recorder.work,
        name="test.group",
        alone=recorder.alone,
        alone_on=(IntegrityError,),
        max_in_flight=1,
    )
    try:
        first = asyncio.create_task(group.submit("first"))
        await asyncio.sleep(0)  # "first" is in flight alone; the rest make one batch
        outcomes = await asyncio.gather(
            *(group.submit(item) for item in ("a1", "taken", "b2")), return_exceptions=True
        )
        assert await first == len("first")
    finally:
        await group.close()
    assert outcomes[0] == 2
    assert outcomes[2] == 2
    assert isinstance(outcomes[1], IntegrityError)
    assert await _prefixes(database) == ["a1", "b2", "first", "taken"]


async def test_close_fails_callers_still_waiting(database: Database) -> None:
    recorder = Recorder(database, pause=5.0)
    group = GroupCommit(database, recorder.work, name="test.group", max_in_flight=1)
    waiting = [asyncio.create_task(group.submit(f"w{n}")) for n in range(3)]
    await asyncio.sleep(0.1)  # w0.. in flight (sleeping inside its transaction)
    await group.close()
    for task in waiting:
        with pytest.raises(RuntimeError, match="shutting down"):
            await task
    assert await _prefixes(database) == []  # the cancelled transaction rolled back
