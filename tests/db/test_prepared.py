"""Statements compiled once for PostgreSQL (dispatch.db.prepared)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import BigInteger, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY

from dispatch.db.base import UTCDateTime
from dispatch.db.engine import Database
from dispatch.db.prepared import Prepared
from dispatch.models import Job
from dispatch.queue import service
from dispatch.queue.service import JobSpec
from tests.support import make_settings

IDS = bindparam("p_ids", type_=ARRAY(BigInteger))
SINCE = bindparam("p_since", type_=UTCDateTime())


def test_constants_are_written_in_and_named_values_are_bound_in_order() -> None:
    statement = Prepared(
        select(Job.id).where(
            Job.id == any_(IDS), Job.state == "available", Job.run_at > SINCE, Job.priority < 7
        )
    )
    assert "'available'" in statement.sql  # a partial index on it can serve a generic plan
    assert "< 7" in statement.sql
    assert "$1" in statement.sql
    assert "$2" in statement.sql
    assert "$3" not in statement.sql
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert statement.values({"p_since": when, "p_ids": [3, 1]}) == ([3, 1], when)


def test_a_named_value_used_twice_is_bound_once() -> None:
    statement = Prepared(select(Job.id).where(Job.run_at > SINCE, Job.created_at > SINCE))
    assert statement.sql.count("$1") == 2
    assert len(statement.values({"p_since": datetime.now(UTC)})) == 1


def test_an_expanding_in_cannot_be_prepared() -> None:
    with pytest.raises(ValueError, match="ANY"):
        Prepared(select(Job.id).where(Job.id.in_(bindparam("p_ids", expanding=True))))
    with pytest.raises(ValueError, match="ANY"):
        Prepared(select(Job.id).where(Job.state.in_(("available", "running"))))


async def test_it_runs_on_postgresql_with_its_types_applied(db_settings: dict[str, Any]) -> None:
    settings = make_settings(**db_settings)
    if settings.database_kind != "postgresql":
        pytest.skip("a prepared statement is PostgreSQL's (DISPATCH_TEST_DATABASE_URL is unset)")
    database = Database(settings)
    try:
        async with database.session() as session:
            made = await service.enqueue_many(
                session, [JobSpec(kind="test.prepared", args={"n": n}) for n in range(3)]
            )
        ids = [item.job_id for item in made]
        statement = Prepared(
            select(Job.id, Job.args, Job.run_at)
            .where(Job.id == any_(IDS), Job.state == "available", Job.run_at > SINCE)
            .order_by(Job.id)
        )
        since = datetime.now(UTC) - timedelta(hours=1)
        async with database.engine.connect() as connection:
            rows = (await statement.run(connection, p_ids=ids[1:], p_since=since)).all()
            later = (
                await statement.run(connection, p_ids=ids, p_since=since + timedelta(hours=2))
            ).all()
        assert [row.id for row in rows] == ids[1:]
        assert [row.args for row in rows] == [{"n": 1}, {"n": 2}]  # JSON decoded
        assert all(row.run_at.tzinfo is not None for row in rows)
        assert later == []
    finally:
        await database.dispose()
