"""Catalogue benchmark: ingest products/s and memory, and search latency at a million products.

Ingest parses recorded provider answers (Shopify's storefront page as recorded, GOAT's and
eBay's re-typed answers) multiplied into full pages, and writes them with Dispatch's page
writer, on SQLite and on PostgreSQL: new products, then the same pages again with every
price changed (a re-scrape where everything moved). Each run is a process of its own
(bench/catalog_ingest.py) so its RSS is its own. In the same run, seed 000's way of storing
products (a SELECT per product, then an ORM INSERT or UPDATE) is the baseline.

Search runs unranked (newest first), ranked (relevance) and filtered (brand, providers,
price range, in stock; by price) queries over a generated catalogue of a million products
on both databases; the baseline is the LIKE scan a catalogue without a text index does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from bench import common
from bench.catalog_data import query_texts
from bench.catalog_search import build, like_scan, percentile, queries, settings_for, time_queries

from dispatch.config import Settings, load_settings
from dispatch.db import migrations
from dispatch.db.engine import Database
from dispatch.telemetry.logging import configure_logging

BENCHMARK = "catalog"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
INGEST_SCHEMA = "bench_catalog_ingest"
INGEST_TARGET = 5_000.0
UNRANKED_P95_TARGET = 50.0
RANKED_P95_TARGET = 150.0
HERE = Path(__file__).resolve().parent
LONG_RUN_SAMPLES = 20  # ingest_runs sample RSS 20 times a run (fewer on the short baselines)


@dataclass(frozen=True)
class Plan:
    pages: dict[str, int]  # per source
    baseline_pages: int
    catalogue: int
    queries_per_kind: int
    warmup: int
    like_queries: int


FULL = Plan({"shopify": 80, "goat": 200, "ebay": 100}, 8, 1_000_000, 200, 30, 20)
QUICK = Plan({"shopify": 8, "goat": 20, "ebay": 10}, 2, 100_000, 30, 5, 5)


def ingest(url: str, schema: str | None, source: str, pages: int, **extra: Any) -> dict[str, Any]:
    argv = [
        sys.executable,
        str(HERE / "catalog_ingest.py"),
        "--database-url",
        url,
        "--source",
        source,
        "--pages",
        str(pages),
    ]
    if schema:
        argv += ["--schema", schema]
    for name, value in extra.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    done = subprocess.run(argv, capture_output=True, text=True, env=common.base_env(), check=False)
    if done.returncode != 0:
        raise SystemExit(f"{BENCHMARK}: ingest failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def _fresh(settings: Settings) -> None:
    database = Database(settings)
    try:
        await migrations.upgrade(database)
    finally:
        await database.dispose()


def measure_ingest(kind: str, plan: Plan, postgres_url: str, workdir: Path) -> dict[str, Any]:
    if kind == "sqlite":
        url, schema = f"sqlite:///{workdir / 'ingest.db'}", None
        asyncio.run(_fresh(load_settings(None, database_url=url)))
    else:
        url, schema = postgres_url, INGEST_SCHEMA
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            connection.execute(f"CREATE SCHEMA {schema}")
        asyncio.run(_fresh(load_settings(None, database_url=url, database_schema=schema)))
    runs: dict[str, Any] = {}
    for source, pages in plan.pages.items():
        common.report(f"{kind}: ingest {source}, {pages} pages")
        runs[f"{source}/new"] = ingest(url, schema, source, pages)
        runs[f"{source}/rescrape"] = ingest(url, schema, source, pages, price_shift=100)
        runs[f"{source}/parse"] = ingest(url, schema, source, pages, mode="parse")
    # Seed 000's way, on pages no run has written yet (new products, as its first cycle).
    runs["shopify/seed000"] = ingest(
        url, schema, "shopify", plan.baseline_pages, first_page=10_000, mode="seed000"
    )
    runs["shopify/dispatch-same-pages"] = ingest(
        url, schema, "shopify", plan.baseline_pages, first_page=20_000
    )
    return runs


async def measure_search(kind: str, plan: Plan, postgres_url: str) -> dict[str, Any]:
    settings = settings_for(kind, plan.catalogue, postgres_url)
    if kind == "postgresql":
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {settings.database_schema}")
    database = Database(settings)
    try:
        common.report(f"{kind}: catalogue of {plan.catalogue:,} products")
        built = await build(database, plan.catalogue, common.report)
        common.report(f"{kind}: {plan.queries_per_kind} queries of each kind")
        timings = await time_queries(database, queries(plan.queries_per_kind), plan.warmup)
        timings["like-scan"] = await like_scan(
            database, query_texts(plan.like_queries)[: plan.like_queries]
        )
    finally:
        await database.dispose()
    return {
        "build_seconds": built,
        "latency_ms": {
            name: {
                "p50": percentile(values, 50),
                "p95": percentile(values, 95),
                "max": max(values),
                "queries": len(values),
            }
            for name, values in timings.items()
        },
    }


def rows_for(
    kind: str, ingest_runs: dict[str, Any], search_runs: dict[str, Any]
) -> list[common.Row]:
    out: list[common.Row] = []
    same = ingest_runs["shopify/dispatch-same-pages"]["rate"]
    seed = ingest_runs["shopify/seed000"]["rate"]
    out.append(
        common.Row(
            "ingest shopify (new), products/s, vs seed 000's upsert",
            same,
            seed,
            0,
            f">= {INGEST_TARGET:,.0f}",
            same >= INGEST_TARGET,
        )
    )
    for source in ("shopify", "goat", "ebay"):
        for phase in ("new", "rescrape"):
            rate = ingest_runs[f"{source}/{phase}"]["rate"]
            parse_only = ingest_runs.get(f"{source}/parse", {}).get("rate")
            out.append(
                common.Row(
                    f"ingest {source} ({phase}), products/s, vs parsing alone",
                    rate,
                    parse_only,
                    0,
                    f">= {INGEST_TARGET:,.0f}",
                    rate >= INGEST_TARGET,
                )
            )
    peak = max(run["peak_rss_mb"] for run in ingest_runs.values())
    # Long runs only, from after the first page (its working set) to the last page written.
    growth = max(
        run["rss_samples_mb"][-2] - run["rss_samples_mb"][1]
        for run in ingest_runs.values()
        if len(run["rss_samples_mb"]) >= LONG_RUN_SAMPLES
    )
    out.append(common.Row("peak RSS while ingesting, MB", peak, None, 1))
    out.append(
        common.Row(
            "RSS growth from the first page to the last, MB",
            growth,
            None,
            1,
            "flat (<= 10)",
            growth <= 10,
        )
    )
    latency = search_runs["latency_ms"]
    like = latency["like-scan"]["p95"]
    # The issue sets targets for unranked and ranked queries; filtered ones are reported.
    targets: dict[str, float | None] = {
        "unranked": UNRANKED_P95_TARGET,
        "ranked": RANKED_P95_TARGET,
        "filtered": None,
    }
    for name, target in targets.items():
        p95 = latency[name]["p95"]
        out.append(common.Row(f"search {name} p50, ms", latency[name]["p50"], None, 1))
        out.append(
            common.Row(
                f"search {name} p95, ms, vs LIKE scan",
                p95,
                like,
                1,
                f"<= {target:.0f}" if target is not None else "",
                p95 <= target if target is not None else None,
            )
        )
    return out


NOTES = """\
Notes:

- **What a product costs.** The recorded Shopify storefront page (bjjfanatics, MIT) carries
  descriptions of about 8 KB of HTML, so a product is ~10 KB of JSON kept as `raw` plus ~6 KB of
  description text: parsing, stripping the markup and writing that much per product caps the
  Shopify rows well below the GOAT and eBay ones (about 1 KB per item). Products/s counts
  parse (from bytes), normalise and write; making the pages is not timed.
- **Ingest target.** 5,000 products/s is not met by this run. The recorded Shopify page
  cannot reach it in one process on this machine: parsing it alone, with no database at all
  (the "vs parsing alone" baseline), runs at 3,500 to 5,000 products/s on one core; the page
  writer then reaches 30 to 40% of that. The light GOAT and eBay shapes parse at 17,000 to
  44,000/s and are bound by the writes; on SQLite they reached 5,200 to 5,900 products/s in
  the run of 2026-12-02 04:43 and 3,500 to 3,800 in this one, with the same write path (the
  code of 04:43, run again beside this one, measured the same 3,300 to 3,800: the machine,
  not the code, moved). On PostgreSQL the server shares the two cores with the ingest. A
  re-scrape where every price moved writes a price point and a change row per offer and
  rewrites every product (summary and raw payload), batched into one UPDATE ... FROM
  unnest(...) per table and page on PostgreSQL. Against seed 000's per-product SELECT then
  INSERT or UPDATE on the same kind of pages, the page writer is 2.5 to 3 times faster.
- **Memory.** RSS grows by the first page's working set, then stays flat (pages are streamed,
  one transaction each); the peak is the ingest process's whole RSS, Python included.
- **Ranked search** scores the newest 5,000 matches that pass the filters (a query with fewer
  matches is ranked exactly); scoring every match of a word found in a third of the catalogue
  took 300+ ms. Filtered queries (brand, providers, a price range, in stock; by price) have no
  target in the issue: on PostgreSQL their tail is a brand filter walking the price index and
  fetching a heap row per candidate (about 1,300 rows, 50 to 90 ms when they are not cached);
  an index on (brand, price) would serve them at the cost of one more index per write.
"""


def render(
    tables: dict[str, list[common.Row]],
    machine: dict[str, Any],
    plan: Plan,
    search_runs: dict[str, Any],
) -> str:
    header = ["metric", "Dispatch", "baseline", "ratio", "target", "met"]
    sources = ", ".join(f"{n} pages of {s}" for s, n in plan.pages.items())
    parts = [
        "## Catalogue (`bench/catalog.py`)",
        "",
        f"Run {machine['date']} on {machine['cpu_count']} cores ({machine['cpu_model']}), "
        f"Python {machine['python']}. Ingest: {sources}, new, then re-scraped with every price "
        f"changed; seed 000's baseline on {plan.baseline_pages} Shopify pages against Dispatch "
        f"on {plan.baseline_pages} other pages of the same kind. Search: {plan.catalogue:,} "
        f"generated products, {plan.queries_per_kind} queries of each kind (after {plan.warmup} "
        "warm-up queries), 20 results per page; baseline: a LIKE scan of the titles.",
    ]
    for kind, rows in tables.items():
        built = search_runs[kind]["build_seconds"]
        note = f" (catalogue built in {built:,.0f} s this run)" if built else " (cached catalogue)"
        parts += [
            "",
            f"### {kind}{note}",
            "",
            common.markdown_table(header, [r.cells() for r in rows]),
        ]
    return "\n".join([*parts, "", NOTES])


def render_saved() -> int:
    """Tables and notes again from the last run's figures (after a change to this script)."""
    saved = json.loads((common.RESULTS_DIR / f"{BENCHMARK}.json").read_text(encoding="utf-8"))
    plan = Plan(**{k: v for k, v in saved["settings"].items() if k != "quick"})
    tables = {
        kind: rows_for(kind, saved["ingest"][kind], saved["search"][kind])
        for kind in saved["ingest"]
    }
    saved["summary"] = {kind: [row.as_json() for row in rows] for kind, rows in tables.items()}
    saved["all_targets_met"] = all(
        row.met for rows in tables.values() for row in rows if row.met is not None
    )
    common.write_results(BENCHMARK, saved)
    common.update_docs_section(BENCHMARK, render(tables, saved["machine"], plan, saved["search"]))
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="Small pages and catalogue")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="Rewrite docs/benchmarks.md from bench/results/catalog.json without measuring",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        return render_saved()
    common.exit_on_sigterm()
    for name in Settings.model_fields:
        os.environ.pop(name.upper(), None)
    configure_logging("WARNING", "console")
    common.warn_if_busy()
    machine = common.machine_info()
    plan = QUICK if args.quick else FULL
    kinds = [args.only] if args.only else ["sqlite", "postgresql"]
    ingest_runs: dict[str, Any] = {}
    search_runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dispatch-bench-catalog-") as tmp:
        for kind in kinds:
            ingest_runs[kind] = measure_ingest(kind, plan, args.postgres_url, Path(tmp))
            search_runs[kind] = asyncio.run(measure_search(kind, plan, args.postgres_url))
    tables = {kind: rows_for(kind, ingest_runs[kind], search_runs[kind]) for kind in kinds}
    payload = {
        "benchmark": BENCHMARK,
        "machine": machine,
        "settings": asdict(plan) | {"quick": args.quick},
        "ingest": ingest_runs,
        "search": search_runs,
        "summary": {kind: [row.as_json() for row in rows] for kind, rows in tables.items()},
        "all_targets_met": all(
            row.met for rows in tables.values() for row in rows if row.met is not None
        ),
    }
    common.write_results(BENCHMARK, payload)
    common.update_docs_section(BENCHMARK, render(tables, machine, plan, search_runs))
    for kind, rows in tables.items():
        print(
            f"\n{kind}\n"
            + common.markdown_table(
                ["metric", "Dispatch", "baseline", "ratio", "target", "met"],
                [r.cells() for r in rows],
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
