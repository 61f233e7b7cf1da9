"""The ingest limit: plain FastAPI whose POST route does one INSERT and commits, then answers 202.

What a minimal durable ingest endpoint must do, and nothing more: compare the token header
with one string, parse the JSON body, insert it into a table with a JSON column in its own
transaction, answer ``{"status": "queued", "task_id": …}`` after the commit. No endpoint or
client lookup, no queue job, no rate limit, no middleware. SQLite runs with the durability
Dispatch uses (WAL, ``synchronous=NORMAL``) through the stock aiosqlite driver; PostgreSQL
through asyncpg, in ``--schema``. Run as
``python bench/bare_ingest.py --port P --database-url U --token T [--schema S]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

# Run as a script, Python puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's queue module (which uvicorn imports).
if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import JSON, BigInteger, Column, DateTime, Integer, MetaData, Table, event, insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from dispatch.config import normalise_database_url
from dispatch.db.base import utcnow

# Dispatch's defaults (DB_POOL_SIZE, DB_MAX_OVERFLOW), so pool waits do not differ.
POOL_SIZE = 10
MAX_OVERFLOW = 10
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",
)

metadata = MetaData()
tasks = Table(
    "bench_ingest_tasks",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("payload", JSON, nullable=False),
)


def create_engine(database_url: str, schema: str | None) -> AsyncEngine:
    options: dict[str, Any] = {"pool_size": POOL_SIZE, "max_overflow": MAX_OVERFLOW}
    if schema:
        options["connect_args"] = {"server_settings": {"search_path": schema}}
    engine = create_async_engine(normalise_database_url(database_url), **options)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: object) -> None:
            cursor = dbapi_connection.cursor()
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(pragma)
            cursor.close()

    return engine


def create_app(database_url: str, token: str, schema: str | None) -> FastAPI:
    engine = create_engine(database_url, schema)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/{path:path}", status_code=202)
    async def accept(path: str, request: Request) -> JSONResponse:
        if request.headers.get("x-api-token") != token:
            raise HTTPException(401, "A valid API token is required")
        try:
            payload = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPException(400, "The body is not valid JSON") from exc
        if not isinstance(payload, dict):
            raise HTTPException(400, "The body must be a JSON object")
        async with engine.begin() as connection:
            task_id = await connection.scalar(
                insert(tasks).values(created_at=utcnow(), payload=payload).returning(tasks.c.id)
            )
        return JSONResponse({"status": "queued", "task_id": task_id}, status_code=202)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--token", required=True, help="The one accepted X-API-Token")
    parser.add_argument("--schema", help="PostgreSQL schema for the table (must exist)")
    args = parser.parse_args()
    # The options `dispatch serve` passes to uvicorn, so the server layer is identical.
    uvicorn.run(
        create_app(args.database_url, args.token, args.schema),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
