"""insert_returning_ids: one statement per chunk, ids in the order of the rows given."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Table, event, select

from dispatch.db.base import utcnow
from dispatch.db.bulk import (
    POSTGRES_COPY_FROM,
    SQLITE_ROWS_PER_STATEMENT,
    insert_returning_ids,
    update_by_id,
)
from dispatch.db.engine import Database
from dispatch.models import Job
from tests.support import make_settings

JOBS: Table = Job.__table__  # type: ignore[assignment]


@pytest.fixture
async def database(db_settings: dict[str, Any]) -> AsyncIterator[Database]:
    db = Database(make_settings(**db_settings))
    yield db
    await db.dispose()


def _row(index: int) -> dict[str, Any]:
    now = utcnow()
    return {
        "kind": f"kind-{index}",
        "args": {"index": index, "nested": {"list": [index, "x"]}},
        "queue": "default",
        "priority": 100,
        "run_at": now + timedelta(seconds=index),
        "state": "available",
        "attempt": 0,
        "max_attempts": 3,
        "required_capacity": 0,
        "required_labels": [],
        "cancel_requested": False,
        "created_at": now,
    }


@pytest.mark.parametrize("count", [1, 5, SQLITE_ROWS_PER_STATEMENT + 7, POSTGRES_COPY_FROM + 3])
async def test_ids_come_back_in_row_order_with_values_intact(
    database: Database, count: int
) -> None:
    statements: list[str] = []

    def seen(*args: Any) -> None:
        statements.append(args[2])

    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    rows = [_row(index) for index in range(count)]
    async with database.session() as session:
        ids = await insert_returning_ids(session, JOBS, rows)
    event.remove(database.engine.sync_engine, "before_cursor_execute", seen)

    assert len(ids) == count == len(set(ids))
    assert ids == sorted(ids)
    inserts = [sql for sql in statements if sql.lstrip().upper().startswith("INSERT")]
    if database.kind == "sqlite":  # one statement per chunk, not one per row
        assert len(inserts) == -(-count // SQLITE_ROWS_PER_STATEMENT)
    elif count >= POSTGRES_COPY_FROM:  # ids from the sequence, rows by COPY: no INSERT
        assert inserts == []
    async with database.session(write=False) as session:
        stored = {job.id: job for job in (await session.scalars(select(Job))).all()}
    for index, job_id in enumerate(ids):
        job = stored[job_id]
        assert job.kind == f"kind-{index}"
        assert job.args == {"index": index, "nested": {"list": [index, "x"]}}
        assert job.run_at == rows[index]["run_at"]


@pytest.mark.parametrize("count", [2, POSTGRES_COPY_FROM])
async def test_a_rolled_back_insert_leaves_nothing(database: Database, count: int) -> None:
    async def insert_then_fail() -> None:
        async with database.session() as session:
            await insert_returning_ids(session, JOBS, [_row(i) for i in range(count)])
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await insert_then_fail()
    async with database.session(write=False) as session:
        assert (await session.scalars(select(Job.id))).all() == []


async def test_update_by_id_sets_each_rows_own_values(database: Database) -> None:
    rows = [_row(index) for index in range(6)]
    async with database.session() as session:
        ids = await insert_returning_ids(session, JOBS, rows)
    later = utcnow() + timedelta(hours=1)
    changes: list[dict[str, Any]] = [
        # Rows setting different columns, JSON and timestamps among them, and a null.
        *(
            {"id": job_id, "args": {"n": n}, "run_at": later, "dedupe_key": None}
            for n, job_id in enumerate(ids[:3])
        ),
        *(
            {"id": job_id, "priority": 7, "required_labels": ["gpu", str(n)]}
            for n, job_id in enumerate(ids[3:5])
        ),
    ]
    async with database.session() as session:
        await update_by_id(session, JOBS, changes)
    async with database.session(write=False) as session:
        stored = {job.id: job for job in (await session.scalars(select(Job))).all()}
    for n, job_id in enumerate(ids[:3]):
        assert (stored[job_id].args, stored[job_id].run_at) == ({"n": n}, later)
        assert stored[job_id].priority == 100
    for n, job_id in enumerate(ids[3:5]):
        assert (stored[job_id].priority, stored[job_id].required_labels) == (7, ["gpu", str(n)])
        assert stored[job_id].args == rows[3 + n]["args"]
    untouched = stored[ids[5]]
    assert (untouched.args, untouched.priority) == (rows[5]["args"], 100)
