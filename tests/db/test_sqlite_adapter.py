"""The one-trip aiosqlite adapter: same results as the stock adapter, fewer thread hand-offs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import insert, select, text, update

from dispatch.db import migrations
from dispatch.db.engine import Database
from dispatch.models import ApiKey
from tests.support import make_settings


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the functions sent to aiosqlite's thread, in order."""
    seen: list[str] = []
    original = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    return seen


@pytest.fixture
async def database(tmp_path: Path) -> Database:
    db = Database(make_settings(database_url=f"sqlite:///{tmp_path}/adapter.db"))
    await migrations.upgrade(db)
    return db


def _row(name: str) -> dict[str, Any]:
    return {"name": name, "prefix": f"dsp_{name:0>8}", "key_hash": "0" * 64, "scopes": ["read"]}


async def test_a_read_is_one_trip(database: Database, trips: list[str]) -> None:
    try:
        async with database.session() as session:
            await session.execute(insert(ApiKey), [_row("a"), _row("b")])
        async with database.session(write=False) as session:
            await session.scalar(select(ApiKey.id).limit(1))  # warm the pooled connection
        trips.clear()
        async with database.session(write=False) as session:
            names = (await session.scalars(select(ApiKey.name).order_by(ApiKey.id))).all()
        read_trips = list(trips)
    finally:
        await database.dispose()
    assert names == ["a", "b"]
    assert read_trips == [
        "_run_one"
    ]  # no cursor/fetch/close trips, no COMMIT outside a transaction


async def test_writes_report_rowcount_and_lastrowid(database: Database, trips: list[str]) -> None:
    try:
        async with database.session() as session:
            connection = await session.connection()
            inserted = await connection.execute(insert(ApiKey).values(**_row("c")))
            assert inserted.lastrowid == 1
            changed = await connection.execute(
                update(ApiKey).where(ApiKey.id >= 1).values(name="renamed")
            )
            assert changed.rowcount == 1
        # BEGIN IMMEDIATE rides with the first statement; a real transaction is committed.
        assert trips == ["_begin_then", "_run_one", "commit"]
        async with database.session(write=False) as session:
            assert await session.scalar(text("SELECT name FROM api_keys")) == "renamed"
    finally:
        await database.dispose()


async def test_errors_surface_as_sqlalchemy_errors(database: Database) -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    try:
        async with database.session() as session:
            await session.execute(insert(ApiKey), [_row("dup")])
        with pytest.raises(IntegrityError):
            async with database.session() as session:
                await session.execute(insert(ApiKey), [_row("dup")])
        with pytest.raises(OperationalError):
            async with database.session(write=False) as session:
                await session.execute(text("SELECT * FROM no_such_table"))
        async with database.session(write=False) as session:  # the pool is still healthy
            assert await session.scalar(text("SELECT count(*) FROM api_keys")) == 1
    finally:
        await database.dispose()


async def test_a_write_session_begins_immediate_with_its_first_statement(
    database: Database, trips: list[str]
) -> None:
    try:
        async with database.session() as session:
            pass  # nothing ran: no BEGIN was sent, so there is nothing to commit
        assert trips == []
        async with database.session() as session:
            connection = await session.connection()
            await connection.execute(select(ApiKey.id).limit(1))
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            # The write lock is held from the first statement on, even one that only reads.
            assert driver.in_transaction
            async with aiosqlite.connect(database.engine.url.database or "") as other:
                await other.execute("PRAGMA busy_timeout=0")
                with pytest.raises(aiosqlite.OperationalError, match="locked"):
                    await other.execute("BEGIN IMMEDIATE")
        assert trips[:1] == ["_begin_then"]
    finally:
        await database.dispose()
