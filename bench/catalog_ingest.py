"""One ingest run in a process of its own, so its memory is measured alone.

Recorded provider answers (multiplied into full pages, see catalog_data) arrive as bytes
and go through the real parser and Dispatch's page writer (``write_pages``: each page in
its own transaction while the next is parsed), or, for comparison, through the way seed 000
stored products (one SELECT per product, then an INSERT or an UPDATE through the ORM), or
through the parser alone (``--mode parse``: bytes to ProductRecords, nothing written), the
ceiling any writer has on one core.
Prints one JSON line: products, seconds, rate and RSS samples.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from bench.catalog_data import ebay_page, goat_page, shopify_page
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.catalog import normalise, store
from dispatch.catalog.providers.ebay.parse import parse_search as parse_ebay
from dispatch.catalog.providers.goat.parse import parse_query as parse_goat
from dispatch.catalog.providers.shopify.parse import parse_products as parse_shopify
from dispatch.catalog.records import ProductRecord
from dispatch.catalog.service import write_pages
from dispatch.config import load_settings
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import CatalogProduct

SHOP = "https://shop.example.com"
SOURCES: dict[
    str, tuple[Callable[..., dict[str, Any]], Callable[[object], list[ProductRecord]]]
] = {
    "shopify": (
        shopify_page,
        lambda payload: parse_shopify(
            payload, provider="complexshop", shop_url=SHOP, currency="USD"
        ),
    ),
    "goat": (goat_page, lambda payload: parse_goat(payload, provider="goat")[0]),
    "ebay": (ebay_page, lambda payload: parse_ebay(payload, provider="ebay")[0]),
}


def rss_mb() -> float:
    """Resident memory now, from /proc (ru_maxrss only ever grows)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 1_048_576


async def seed_000_upsert(session: AsyncSession, records: list[ProductRecord]) -> None:
    """Seed 000's persistence: look each product up, then update it or add it."""
    now = utcnow()
    for record in records:
        row = await session.scalar(
            select(CatalogProduct).where(
                CatalogProduct.provider == record.provider,
                CatalogProduct.external_id == record.external_id,
            )
        )
        if row is None:
            session.add(CatalogProduct(**store.new_product_row(record, now)))
        else:
            for key, value in normalise.product_values(record).items():
                setattr(row, key, value)
            row.last_seen_at = now


class Run:
    """Pages made one at a time as bytes (their making is not timed), then parsed and written."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.make, self.parse = SOURCES[args.source]
        self.products = 0
        self.untimed = 0.0  # seconds spent making pages, taken off the run's time
        self.samples: list[float] = []

    async def pages(self) -> AsyncIterator[list[ProductRecord]]:
        first = self.args.first_page
        for index, page in enumerate(range(first, first + self.args.pages)):
            made = time.perf_counter()
            body = orjson.dumps(self.make(page, price_shift=self.args.price_shift))
            self.untimed += time.perf_counter() - made
            records = self.parse(orjson.loads(body))
            self.products += len(records)
            if index % max(1, self.args.pages // 20) == 0:
                self.samples.append(round(rss_mb(), 1))
            yield records

    async def seed_000(self, database: Database) -> None:
        async for records in self.pages():
            async with database.session() as session:
                await seed_000_upsert(session, records)


async def run(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {"database_url": args.database_url}
    if args.schema:
        overrides["database_schema"] = args.schema
    database = Database(load_settings(None, **overrides))
    job = Run(args)
    baseline = round(rss_mb(), 1)
    try:
        started = time.perf_counter()
        if args.mode == "dispatch":
            await write_pages(database, job.pages())
        elif args.mode == "parse":
            async for _ in job.pages():
                pass
        else:
            await job.seed_000(database)
        seconds = time.perf_counter() - started - job.untimed
    finally:
        await database.dispose()
    job.samples.append(round(rss_mb(), 1))
    return {
        "mode": args.mode,
        "source": args.source,
        "products": job.products,
        "seconds": seconds,
        "rate": job.products / seconds,
        "rss_before_mb": baseline,
        "rss_samples_mb": job.samples,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema")
    parser.add_argument("--source", choices=sorted(SOURCES), default="shopify")
    parser.add_argument("--pages", type=int, required=True)
    parser.add_argument("--first-page", type=int, default=0)
    parser.add_argument("--price-shift", type=int, default=0)
    parser.add_argument("--mode", choices=("dispatch", "seed000", "parse"), default="dispatch")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
