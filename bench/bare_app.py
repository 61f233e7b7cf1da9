"""The baseline: plain FastAPI serving Dispatch's two benchmarked routes, without its middleware.

No request ids, metrics, access log, CORS, rate limits or hashed key comparison: only the
work a minimal app must do, so the gap to Dispatch is the cost of what Dispatch adds. It
answers with Dispatch's own response schemas, so serialisation costs the same on both sides.
Run as ``python bench/bare_app.py --port P --database-url sqlite:///... --key K``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

# Run as a script, Python puts bench/ first on sys.path, where bench/queue.py would shadow the
# standard library's queue module (which uvicorn imports).
if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))

import uvicorn
from fastapi import FastAPI, Header, HTTPException
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from dispatch.config import normalise_database_url
from dispatch.models import ApiKey
from dispatch.ops.schemas import HealthOut
from dispatch.security.schemas import KeyList, KeyOut

# Dispatch's defaults (DB_POOL_SIZE, DB_MAX_OVERFLOW), so pool waits do not differ.
POOL_SIZE = 10
MAX_OVERFLOW = 10


def create_app(database_url: str, key: str) -> FastAPI:
    """The two routes over the ``api_keys`` table at ``database_url``."""
    engine = create_async_engine(
        normalise_database_url(database_url), pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW
    )
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> HealthOut:
        return HealthOut()

    @app.get("/api/v1/keys")
    async def list_keys(
        x_dispatch_key: Annotated[str | None, Header()] = None,
    ) -> KeyList:
        if x_dispatch_key != key:
            raise HTTPException(401, "A valid API key is required")
        query = select(ApiKey).where(ApiKey.revoked_at.is_(None)).order_by(ApiKey.id)
        async with sessions() as session:
            records = (await session.scalars(query)).all()
        return KeyList(items=[KeyOut.model_validate(record) for record in records])

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--key", required=True, help="The one accepted X-Dispatch-Key")
    args = parser.parse_args()
    # The options `dispatch serve` passes to uvicorn, so the server layer is identical.
    uvicorn.run(
        create_app(args.database_url, args.key),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
