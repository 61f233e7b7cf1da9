"""The search half of the catalogue benchmark: a generated catalogue, and timed queries.

The catalogue is built once per size and database and kept for later runs (a SQLite file
under bench/.cache, a PostgreSQL schema), since writing a million products takes minutes.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.catalog_data import BRANDS, catalogue_rows, query_texts
from sqlalchemy import Table, func, select, text

from dispatch.catalog.search import Filters, Sort, search
from dispatch.config import Settings
from dispatch.db import migrations
from dispatch.db.bulk import insert_returning_ids
from dispatch.db.engine import Database
from dispatch.models import CatalogProduct

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
LAYOUT = "v1"  # bump when catalogue_rows or the schema changes: the cached catalogues go stale
BATCH = 5_000
_PRODUCTS: Table = CatalogProduct.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Query:
    kind: str  # unranked, ranked, filtered, like-scan
    filters: Filters
    sort: Sort


def percentile(samples: Sequence[float], p: int) -> float:
    if len(samples) < 2:
        return samples[0] if samples else float("nan")
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


def sqlite_path(size: int) -> Path:
    return CACHE_DIR / f"catalog-{size}-{LAYOUT}.db"


def postgres_schema(size: int) -> str:
    return f"bench_catalog_{size}_{LAYOUT}"


async def count(database: Database) -> int:
    async with database.session(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(CatalogProduct)) or 0)


async def build(database: Database, size: int, report: Any) -> float:
    """Migrate and fill the catalogue; seconds taken (0 when the cached one was complete)."""
    await migrations.upgrade(database)
    if await count(database) == size:
        return 0.0
    started = time.perf_counter()
    async with database.session() as session:
        await session.execute(text("DELETE FROM catalog_products"))
    for start in range(0, size, BATCH):
        rows = list(catalogue_rows(min(BATCH, size - start), start))
        async with database.session() as session:
            await insert_returning_ids(session, _PRODUCTS, rows)
        if start % 100_000 == 0:
            report(f"  {start:,} of {size:,} products written")
    async with database.session() as session:
        if database.kind == "sqlite":
            await session.execute(
                text("INSERT INTO catalog_products_fts(catalog_products_fts) VALUES ('optimize')")
            )
            await session.execute(text("ANALYZE"))
        else:
            await session.execute(text("ANALYZE catalog_products"))
    return time.perf_counter() - started


def queries(per_kind: int) -> list[Query]:
    rng = random.Random(5)
    texts = query_texts(per_kind)
    out: list[Query] = []
    for index, words in enumerate(texts):
        out.append(Query("unranked", Filters(text=words), "newest"))
        out.append(Query("ranked", Filters(text=words), "relevance"))
        low = rng.randrange(20, 300) * 100
        filtered = Filters(
            text=words if index % 2 else None,
            brand=rng.choice(BRANDS[:10]) if index % 3 else None,
            providers=("goat", "ebay") if index % 4 == 0 else (),
            min_price_minor=low,
            max_price_minor=low + 10_000,
            currency="USD",
            in_stock=True,
        )
        out.append(Query("filtered", filtered, "price"))
    rng.shuffle(out)  # interleave the kinds so drift hits them alike
    return out


async def time_queries(
    database: Database, plan: Sequence[Query], warmup: int
) -> dict[str, list[float]]:
    """Milliseconds per query, by kind; each query in its own read session, as an API call."""
    timings: dict[str, list[float]] = {}
    for index, query in enumerate(plan):
        started = time.perf_counter()
        async with database.session(write=False) as session:
            page = await search(session, query.filters, sort=query.sort, limit=20)
        elapsed = (time.perf_counter() - started) * 1000
        if index >= warmup:
            timings.setdefault(query.kind, []).append(elapsed)
        del page
    return timings


async def like_scan(database: Database, words: Sequence[str]) -> list[float]:
    """The naive search a catalogue without an index does: LIKE over the title, newest first."""
    timings = []
    for word in words:
        started = time.perf_counter()
        async with database.session(write=False) as session:
            await session.scalars(
                select(CatalogProduct)
                .where(CatalogProduct.title.ilike(f"%{word}%"), CatalogProduct.status == "active")
                .order_by(CatalogProduct.id.desc())
                .limit(20)
            )
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def settings_for(kind: str, size: int, postgres_url: str) -> Settings:
    from dispatch.config import load_settings

    if kind == "sqlite":
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        return load_settings(None, database_url=f"sqlite:///{sqlite_path(size)}", db_pool_size=2)
    return load_settings(None, database_url=postgres_url, database_schema=postgres_schema(size))
