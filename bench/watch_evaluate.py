"""The watch benchmark's evaluation workload, in the benchmark's process.

Users and rules are inserted in bulk; each batch of 1,000 changed listings is written
through the catalogue's own writer (``store.upsert_products``, one call per provider, not
timed), then ``Evaluator.run_once()`` is timed: it reads the batch from the change feed,
loads the listings, matches them through the rule index, decides the events and writes
matches, events and notifications in one transaction. The baseline is seed 003's way of
matching: every rule tested against every listing (``matching.match`` per pair), over the
same listings and the same compiled rules, matching alone (no reads, no writes).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.watch_data import (
    RULES,
    USERS,
    listing,
    listings_by_provider,
    probe_rule_row,
    rule_rows,
    user_rows,
)

from dispatch.catalog.records import ProductRecord
from dispatch.catalog.store import upsert_products
from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.db.bulk import insert_returning_ids
from dispatch.db.engine import Database
from dispatch.watch import evaluate, matching, ruleset

BATCH = evaluate.BATCH  # the evaluator reads at most this many changes per round
PRICE_DROP_PERCENT = 10  # the second round: every listing 10% cheaper


@dataclass(frozen=True)
class Workload:
    users: int
    rules: int
    new_batches: int
    price_batches: int
    baseline_listings: int  # listings the naive baseline tests (its time is scaled to BATCH)


async def seed_rules(database: Database, users: int, rules: int, *, probe: bool = False) -> float:
    """Insert ``users`` users and ``rules`` active rules (plus the stream's probe rule); seconds."""
    started = time.perf_counter()
    now = utcnow()
    async with database.session() as session:
        user_ids = await insert_returning_ids(session, USERS, user_rows(users, now))
        rows = rule_rows(rules, user_ids, now)
        if probe:
            rows.append(probe_rule_row(user_ids[0], now))
        await insert_returning_ids(session, RULES, rows)
    return time.perf_counter() - started


async def write_records(database: Database, grouped: dict[str, list[ProductRecord]]) -> list[int]:
    """One transaction, one ``upsert_products`` per provider; the products' ids."""
    ids: list[int] = []
    async with database.session() as session:
        now = utcnow()
        for records in grouped.values():
            summary = await upsert_products(session, records, now)
            ids += [ref.id for ref in summary.refs]
    return ids


async def write_one(database: Database, number: int) -> tuple[int, float]:
    """Write listing ``number`` (with the probe word); its product id and the moment just
    before the commit (``time.perf_counter``)."""
    async with database.session() as session:
        summary = await upsert_products(session, [listing(number, 10_000, probe=True)], utcnow())
        stamp = time.perf_counter()
    return summary.refs[0].id, stamp


async def _timed_batch(
    database: Database, evaluator: evaluate.Evaluator, kind: str, first: int, *, cold: bool
) -> tuple[dict[str, Any], list[int]]:
    drop = PRICE_DROP_PERCENT if kind == "price" else 0
    written = time.perf_counter()
    ids = await write_records(database, listings_by_provider(first, BATCH, price_drop_percent=drop))
    write_seconds = time.perf_counter() - written
    started = time.perf_counter()
    result = await evaluator.run_once()
    seconds = time.perf_counter() - started
    if result.changes != BATCH:
        raise RuntimeError(f"the evaluator read {result.changes} changes, expected {BATCH}")
    batch = {
        "kind": kind,
        "cold": cold,
        "seconds": seconds,
        "changes": result.changes,
        "matched": result.matched,
        "events": result.events,
        "notifications": len(result.notifications),
        "write_seconds": write_seconds,
    }
    return batch, ids


async def _compiled(database: Database, settings: Settings) -> tuple[ruleset.RuleSet, float]:
    """The active rules compiled and indexed from scratch, as a new evaluator does; seconds."""
    started = time.perf_counter()
    async with database.session(write=False) as session:
        rules = await ruleset.load_rules(session, settings, ruleset.RuleSet())
    return rules, time.perf_counter() - started


async def _listings(database: Database, ids: list[int]) -> list[matching.Listing]:
    """The listings exactly as the evaluator builds them (with its own loader)."""
    async with database.session(write=False) as session:
        found = await evaluate._listings(session, ids)
    return [found[i][1] for i in ids if i in found]


def match_with_index(rules: ruleset.RuleSet, listings: list[matching.Listing]) -> tuple[float, int]:
    started = time.perf_counter()
    found = sum(len(rules.index.matches(item)) for item in listings)
    return time.perf_counter() - started, found


def match_each_pair(rules: ruleset.RuleSet, listings: list[matching.Listing]) -> tuple[float, int]:
    """Seed 003's evaluation: every rule tested against every listing."""
    queries = [rule.query for rule in rules.rules.values()]
    started = time.perf_counter()
    found = sum(1 for item in listings for query in queries if matching.match(query, item))
    return time.perf_counter() - started, found


async def measure(
    database: Database, settings: Settings, work: Workload, report: Callable[[str], None]
) -> dict[str, Any]:
    """Seed, then the new-listing batches and the price-change batches, then the baseline."""
    seeded = await seed_rules(database, work.users, work.rules)
    evaluator = evaluate.Evaluator(database, settings)
    await evaluator.run_once()  # an empty feed: creates the cursor, compiles nothing
    batches: list[dict[str, Any]] = []
    ids: list[int] = []
    rounds = [("new", work.new_batches), ("price", work.price_batches)]
    for kind, count in rounds:
        for n in range(count):
            batch, ids = await _timed_batch(database, evaluator, kind, n * BATCH, cold=not batches)
            report(
                f" {kind} batch {n + 1}: {batch['seconds']:.3f} s, {batch['matched']:,} matches,"
                f" {batch['events']:,} events"
            )
            batches.append(batch)
    rules, compile_seconds = await _compiled(database, settings)
    listings = await _listings(database, ids)  # the last batch's listings, as they are now
    index_seconds, index_found = match_with_index(rules, listings)
    sample = listings[: work.baseline_listings]
    report(f" baseline: {len(rules.rules):,} rules x {len(sample):,} listings, each pair")
    naive_seconds, naive_found = match_each_pair(rules, sample)
    _, index_on_sample = match_with_index(rules, sample)
    if index_on_sample != naive_found:
        report(
            f" warning: the rule index found {index_on_sample} matches, every pair {naive_found}"
        )
    return {
        "users": work.users,
        "rules": len(rules.rules),
        "seed_seconds": seeded,
        "batches": batches,
        "compile_seconds": compile_seconds,
        "index_seconds_per_batch": index_seconds * BATCH / len(listings),
        "index_matches": index_found,
        "naive_listings": len(sample),
        "naive_seconds": naive_seconds,
        "naive_seconds_per_batch": naive_seconds * BATCH / len(sample),
        "naive_matches": naive_found,
        "index_matches_on_naive_sample": index_on_sample,
    }


def summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    """p50 and max seconds, matches and events of the warm batches of each kind."""
    out: dict[str, Any] = {
        "cold_seconds": evaluation["batches"][0]["seconds"],
        "cold_kind": evaluation["batches"][0]["kind"],
    }
    warm = [b for b in evaluation["batches"] if not b["cold"]]
    for kind in ("new", "price"):
        batches = [b for b in warm if b["kind"] == kind]
        if not batches:
            continue
        seconds = [b["seconds"] for b in batches]
        out[kind] = {
            "batches": len(batches),
            "p50_seconds": statistics.median(seconds),
            "max_seconds": max(seconds),
            "changes_per_second": sum(b["changes"] for b in batches) / sum(seconds),
            "matches_per_batch": statistics.mean(b["matched"] for b in batches),
            "events_per_batch": statistics.mean(b["events"] for b in batches),
        }
    return out
