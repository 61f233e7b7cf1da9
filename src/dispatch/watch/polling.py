"""Rules on their own schedule: each active rule asks its sources every poll interval.

A sweep (a queue schedule, every 5 s, one job per slot however many processes run) picks
the due rules and enqueues one ``watch.poll`` job each (deduplicated per rule), pushing
their ``next_run_at`` a lease ahead so no other sweep takes them meanwhile. A poll runs
the catalogue's live search on each of the rule's sources with the rule's words: what it
finds is stored in the catalogue, so its changes reach the rule (and every other rule)
through the change feed like any scrape's. No transaction is open while a provider is
on the network (seed 003 held row locks during its requests). The next run follows
seed 003: ``poll_interval + randint(0, 5)`` after a success, ``30 + randint(0, 5)`` after
a failure. The requests are attributed to the rule's user (their "own" provider requests).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update

from dispatch.catalog import requests, search, service
from dispatch.catalog.context import CatalogContext
from dispatch.catalog.money import MoneyError
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import User, WatchRule
from dispatch.queue import service as queue
from dispatch.queue.service import JobSpec
from dispatch.watch.evaluate import Evaluator
from dispatch.watch.matching import parse_q
from dispatch.watch.ruleset import compile_rule

log = structlog.get_logger(__name__)

SWEEP_KIND = "watch.sweep"
SWEEP_EVERY = "@every 5s"
POLL_KIND = "watch.poll"
SWEEP_BATCH = 100
LEASE = timedelta(minutes=5)
RESULTS_PER_SOURCE = 20  # seed 003's rule_limit
BACKFILL_LIMIT = 500  # seed 003 backfilled up to 500 listings
RETRY_SECONDS = 30
JITTER_SECONDS = 5


def poll_spec(rule_id: int, queue_name: str) -> JobSpec:
    return JobSpec(
        kind=POLL_KIND,
        args={"rule_id": rule_id},
        queue=queue_name,
        dedupe_key=f"watch.poll:{rule_id}",
        max_attempts=1,
    )


async def sweep(database: Database, queue_name: str, now: datetime) -> int:
    """Enqueue a poll of every due rule (up to SWEEP_BATCH a slot); how many."""
    async with database.session() as session:
        query = (
            select(WatchRule.id)
            .join(User, User.id == WatchRule.user_id)
            .where(
                WatchRule.is_active.is_(True),
                User.is_active.is_(True),
                WatchRule.next_run_at <= now,
            )
            .order_by(WatchRule.next_run_at)
            .limit(SWEEP_BATCH)
        )
        if database.kind == "postgresql":
            query = query.with_for_update(of=WatchRule, skip_locked=True)
        due = list((await session.scalars(query)).all())
        if not due:
            return 0
        await session.execute(
            update(WatchRule).where(WatchRule.id.in_(due)).values(next_run_at=now + LEASE)
        )
        await queue.enqueue_many(session, [poll_spec(rule_id, queue_name) for rule_id in due])
    return len(due)


def search_text(query: dict[str, Any]) -> str:
    """The words a provider is asked for: the keywords and ``q``'s required terms; for a
    watch release, its artist and title."""
    terms, _ = parse_q(query.get("q"))
    words = [*(query.get("keywords") or []), *terms] or [query.get("artist"), query.get("title")]
    return " ".join(dict.fromkeys(word for word in words if word))


def _next(interval: int, now: datetime) -> datetime:
    return now + timedelta(seconds=interval + random.randint(0, JITTER_SECONDS))  # noqa: S311


async def poll(
    ctx: CatalogContext, rule_id: int, *, limit: int = RESULTS_PER_SOURCE
) -> dict[str, Any]:
    """Ask the rule's sources now (up to ``limit`` results each); record the run on the rule."""
    async with ctx.database.session(write=False) as session:
        found = (
            await session.execute(
                select(WatchRule, User.is_active)
                .join(User, User.id == WatchRule.user_id)
                .where(WatchRule.id == rule_id)
            )
        ).first()
    if found is None or not found[0].is_active or not found[1]:
        return {"skipped": "the rule is gone or inactive"}
    rule: WatchRule = found[0]
    names = [name for name in rule.query.get("sources") or [] if name in await ctx.configs()]
    started = utcnow()
    with requests.acting_for(rule.user_id):
        result = await service.live_search(ctx, names, search_text(rule.query) or None, limit)
    errors = {name: failure.message for name, failure in result.errors.items()}
    failed = bool(errors) and len(errors) == len(names)
    values: dict[str, Any] = {
        "last_run_at": started,
        "next_run_at": (
            _next(RETRY_SECONDS, utcnow())
            if failed
            else _next(rule.poll_interval_seconds, utcnow())
        ),
        "last_error": "; ".join(f"{k}: {v}" for k, v in errors.items())[:2000] or None,
    }
    async with ctx.database.session() as session:
        await session.execute(
            update(WatchRule)
            .where(WatchRule.id == rule_id, WatchRule.is_active.is_(True))
            .values(**values)
        )
    found_count = sum(len(items) for items in result.products.values())
    backfilled = 0
    if rule.last_run_at is None or rule.updated_at > rule.last_run_at:
        backfilled = await _backfill(ctx, rule, names)
    log.info("watch.polled", rule=rule_id, sources=names, found=found_count, backfilled=backfilled)
    return {"sources": names, "found": found_count, "errors": errors, "backfilled": backfilled}


async def _backfill(ctx: CatalogContext, rule: WatchRule, names: list[str]) -> int:
    """A new or changed rule against the catalogue's newest matching listings (seed 003's
    backfill); the events it wrote."""
    async with ctx.database.session(write=False) as session:
        preferences = await session.scalar(select(User.preferences).where(User.id == rule.user_id))
        filters = search.Filters(text=search_text(rule.query) or None, providers=tuple(names))
        page = await search.search(session, filters, sort="newest", limit=BACKFILL_LIMIT)
    try:
        compiled = compile_rule(
            rule, (preferences or {}).get("currency"), ctx.settings.watch_default_currency
        )
    except (MoneyError, ValueError):
        return 0
    result = await Evaluator(ctx.database, ctx.settings).backfill(
        compiled, [product.id for product in page.items]
    )
    return result.events
