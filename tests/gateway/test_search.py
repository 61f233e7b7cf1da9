"""Task search goes through its index (pg_trgm on PostgreSQL, FTS5 on SQLite) and stays right
as tasks change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.engine import Database
from dispatch.gateway.search import matches
from dispatch.models import GatewayTask
from tests.gateway.conftest import ADMIN, V1, Gateway
from tests.gateway.sink import Sink
from tests.support import make_settings


async def _ids(gateway: Gateway, term: str) -> list[int]:
    page = await gateway.http.get(f"{V1}/tasks", params={"search": term}, headers=ADMIN)
    assert page.status_code == 200, page.text
    return sorted(t["id"] for t in page.json()["items"])


async def test_search_finds_substrings_old_and_new(gateway: Gateway, sink: Sink) -> None:
    _, _, token = await gateway.setup(sink, ["a"])
    first = await gateway.send("notify", token, {"ref": "A1", "scope": "s", "city": "Zürich"})
    second = await gateway.send("notify", token, {"ref": "QZ", "scope": "s", "city": "Oslo"})
    one, two = first.json()["task_id"], second.json()["task_id"]
    await gateway.settled(one)
    await gateway.settled(two)
    assert await _ids(gateway, "zür") == [one]  # through the index, case-insensitive
    assert await _ids(gateway, "ZÜRICH") == [one]
    # Too short for trigrams: a scan, same answer (letters that no hex id can contain).
    assert await _ids(gateway, "qz") == [two]
    assert await _ids(gateway, "r-a") == [one, two]  # the resource name, set at delivery
    assert await _ids(gateway, '"city":"oslo"') == [two]
    assert await _ids(gateway, "100%") == []
    deleted = await gateway.http.delete(f"{V1}/tasks/{one}", headers=ADMIN)
    assert deleted.status_code == 204
    assert await _ids(gateway, "zürich") == []


async def _plan(session: AsyncSession, dialect: str) -> str:
    query = select(GatewayTask.id).where(matches("needle", dialect))
    compiled = query.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
    if dialect == "postgresql":
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        rows = await session.execute(text(f"EXPLAIN {compiled}"))
    else:
        rows = await session.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
    return "\n".join(" ".join(str(part) for part in row) for row in rows)


async def test_search_uses_the_index(db_settings: dict[str, Any]) -> None:
    database = Database(make_settings(**db_settings))
    try:
        async with database.session() as session:
            plan = await _plan(session, database.kind)
    finally:
        await database.dispose()
    expected = "ix_gateway_tasks_search" if database.kind == "postgresql" else "gateway_tasks_fts"
    assert expected in plan, plan
