"""The embedded SQLite engine: pragmas, BEGIN IMMEDIATE writers, UTC timestamps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from dispatch.db import migrations
from dispatch.db.engine import Database
from dispatch.security import api_keys
from dispatch.security.scopes import Scope
from tests.support import make_settings


@pytest.fixture
async def database(tmp_path: Path) -> Database:
    db = Database(make_settings(database_url=f"sqlite:///{tmp_path}/x.db"))
    await migrations.upgrade(db)
    return db


async def test_pragmas_are_set_on_every_connection(database: Database) -> None:
    try:
        async with database.engine.connect() as connection:
            journal = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
            busy = (await connection.execute(text("PRAGMA busy_timeout"))).scalar()
            synchronous = (await connection.execute(text("PRAGMA synchronous"))).scalar()
            foreign_keys = (await connection.execute(text("PRAGMA foreign_keys"))).scalar()
    finally:
        await database.dispose()
    assert journal == "wal"
    assert busy == 5000
    assert synchronous == 1  # NORMAL
    assert foreign_keys == 1


async def test_concurrent_writers_queue_instead_of_failing(database: Database) -> None:
    """Read-then-write transactions from many tasks: BEGIN IMMEDIATE serialises them."""

    async def create_then_read(index: int) -> None:
        async with database.session() as session:
            await api_keys.list_keys(session)  # a read first: would upgrade a deferred lock
            await asyncio.sleep(0.001)
            await api_keys.create_key(session, f"k{index}", [Scope.READ])

    try:
        await asyncio.gather(*(create_then_read(index) for index in range(40)))
        async with database.session(write=False) as session:
            assert len(await api_keys.list_keys(session)) == 40
    finally:
        await database.dispose()


async def test_timestamps_come_back_aware_utc(database: Database) -> None:
    try:
        async with database.session() as session:
            record, _ = await api_keys.create_key(session, "t", [Scope.READ])
            key_id = record.id
        async with database.session(write=False) as session:
            loaded = await api_keys.get_key(session, key_id)
    finally:
        await database.dispose()
    assert loaded.created_at.tzinfo is not None
    assert loaded.created_at.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - loaded.created_at).total_seconds()) < 60


async def test_writers_of_one_process_wait_their_turn_not_the_busy_timeout(
    tmp_path: Path,
) -> None:
    """Slow write transactions from many tasks: with a 50 ms busy timeout, SQLite's own
    waiting would give up ("database is locked"); the process queues them instead."""
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path}/x.db", sqlite_busy_timeout_ms=50, db_pool_size=20
    )
    database = Database(settings)
    await migrations.upgrade(database)

    async def slow_write(index: int) -> None:
        async with database.session() as session:
            await api_keys.create_key(session, f"k{index}", [Scope.READ])
            await asyncio.sleep(0.02)  # the write lock is held meanwhile

    async def nested() -> None:
        async with database.session() as outer:
            await api_keys.list_keys(outer)
            await outer.commit()
            async with database.session() as inner:  # same task: must not wait for itself
                await api_keys.create_key(inner, "nested", [Scope.READ])

    try:
        await asyncio.gather(*(slow_write(index) for index in range(15)), nested())
        async with database.session(write=False) as session:
            assert len(await api_keys.list_keys(session)) == 16
    finally:
        await database.dispose()
