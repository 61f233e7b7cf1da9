"""The fleet baseline: plain FastAPI handing out copies with one SKIP LOCKED claim per request.

What a minimal correct dispatcher must do, and nothing more: one table of asset copies; a
``POST /dispatch`` that moves up to ``limit`` available copies no bigger than the node's free
space to the node in one ``UPDATE … WHERE id IN (SELECT … ORDER BY priority, id LIMIT n FOR
UPDATE SKIP LOCKED) RETURNING …`` (on SQLite, whose single writer serialises claims, the same
statement without the lock clause), so no copy is handed out twice; a
``POST /assets-downloaded`` that marks the node's copies rescued. No authentication, node
registry, lease, heartbeat, in-flight or cumulative free-space limit, spread rule (one copy of
an asset per node), attempt history, rate limit or middleware. Run as
``python bench/bare_fleet.py --port P --database-url U [--schema S]``; ``prepare`` creates
and fills the table beforehand.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

# Run as a script, Python puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's queue module (which uvicorn imports); the repository root takes its place.
if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvicorn
from bench.bare_ingest import create_engine
from fastapi import FastAPI, Response
from pydantic import BaseModel, Field
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    insert,
    select,
    update,
)

from dispatch.db.base import utcnow

INSERT_BATCH = 10_000

metadata = MetaData()
copies = Table(
    "bare_copies",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("asset_id", Integer, nullable=False),
    Column("replica", Integer, nullable=False),
    Column("ds_id", String(100), nullable=False),
    Column("res_id", String(100), nullable=False),
    Column("name", String(500), nullable=False),
    Column("path", String(1000), nullable=False),
    Column("url", Text, nullable=False),
    Column("size_mb", Float, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("state", String(16), nullable=False, default="available"),
    Column("node_id", String(64)),
    Column("assigned_at", DateTime(timezone=True)),
    Column("magnet_link", Text),
)
_available = copies.c.state == "available"
Index(
    "ix_bare_copies_available",
    copies.c.priority,
    copies.c.id,
    postgresql_where=_available,
    sqlite_where=_available,
)
_HANDED = (
    copies.c.id,
    copies.c.asset_id,
    copies.c.ds_id,
    copies.c.res_id,
    copies.c.name,
    copies.c.path,
    copies.c.url,
    copies.c.size_mb,
    copies.c.priority,
)


class DispatchIn(BaseModel):
    """Seed 004's request plus ``limit``."""

    node_id: str = Field(min_length=1, max_length=64)
    free_space_gb: float = Field(ge=0)
    limit: int = Field(default=1, ge=1, le=100)


class ReportedCopy(BaseModel):
    job_id: int
    magnet_link: str = Field(max_length=8000)
    status: str


class ReportIn(BaseModel):
    rescuer_id: str = Field(min_length=1, max_length=64)
    assets: list[ReportedCopy] = Field(min_length=1, max_length=1000)


async def prepare(
    database_url: str, schema: str | None, rows: Sequence[dict[str, Any]], replicas: int
) -> None:
    """Create the table and insert ``replicas`` copies of each asset row."""
    engine = create_engine(database_url, schema)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.drop_all)
            await connection.run_sync(metadata.create_all)
        values = [
            {**row, "asset_id": n, "replica": replica, "state": "available"}
            for n, row in enumerate(rows, start=1)
            for replica in range(1, replicas + 1)
        ]
        for start in range(0, len(values), INSERT_BATCH):
            async with engine.begin() as connection:
                await connection.execute(insert(copies), values[start : start + INSERT_BATCH])
    finally:
        await engine.dispose()


def create_app(database_url: str, schema: str | None) -> FastAPI:
    engine = create_engine(database_url, schema)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/dispatch", response_model=None)
    async def dispatch(body: DispatchIn) -> dict[str, Any] | Response:
        free_mb = body.free_space_gb * 1024
        # SQLite's compiler drops FOR UPDATE: its one writer already serialises the claims.
        candidates = (
            select(copies.c.id)
            .where(_available, copies.c.size_mb <= free_mb)
            .order_by(copies.c.priority, copies.c.id)
            .limit(body.limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(copies)
            .where(copies.c.id.in_(candidates.scalar_subquery()))
            .values(state="assigned", node_id=body.node_id, assigned_at=utcnow())
            .returning(*_HANDED)
        )
        async with engine.begin() as connection:
            rows = (await connection.execute(claim)).all()
        if not rows:
            return Response(status_code=204)
        handed = [{**row._asdict(), "job_id": row.id} for row in rows]
        return {"status": "success", "node_id": body.node_id, "asset": handed}

    @app.post("/assets-downloaded")
    async def assets_downloaded(body: ReportIn) -> dict[str, Any]:
        recorded = 0
        async with engine.begin() as connection:
            for item in body.assets:
                done = await connection.execute(
                    update(copies)
                    .where(
                        and_(
                            copies.c.id == item.job_id,
                            copies.c.node_id == body.rescuer_id,
                            copies.c.state == "assigned",
                        )
                    )
                    .values(state=item.status.lower(), magnet_link=item.magnet_link)
                )
                recorded += done.rowcount
        return {"status": "success", "recorded": recorded}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", help="PostgreSQL schema holding the table (must exist)")
    args = parser.parse_args()
    # The options `dispatch serve` passes to uvicorn, so the server layer is identical.
    uvicorn.run(
        create_app(args.database_url, args.schema),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
