"""Following the catalogue's change feed: matches, events and the in-app feed.

Each batch of changes (up to 1,000) is read after the cursor, the products they touch are
loaded once, the active rules are looked up through the rule index (not tested one by
one), and each (rule, product) pair's decision is written with the cursor's move in one
transaction: a batch is processed whole or not at all, and events are unique per (rule,
product, dedupe key), so a batch read twice writes nothing twice.

Several workers may follow the feed at once: on PostgreSQL the cursor row is locked with
SKIP LOCKED (one of them works, the others skip the round); on SQLite the write
transaction serialises them and the second reads the cursor the first moved.

On PostgreSQL a change's id is taken when it is inserted, not when it commits, so a
transaction that commits late can land below the cursor. Missing ids below the newest one
read are kept as gaps and read again for ``GAP_SECONDS`` before being given up as rolled
back.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.db.bulk import conflict_insert, insert_returning_ids, update_by_id
from dispatch.db.engine import Database
from dispatch.models import (
    CatalogChange,
    CatalogOffer,
    CatalogPricePoint,
    CatalogProduct,
    WatchCursor,
    WatchEvent,
    WatchMatch,
)
from dispatch.watch import decisions, fanout, matching, stream
from dispatch.watch.ruleset import CompiledRule, RuleSet, load_rules

log = structlog.get_logger(__name__)

CURSOR = "catalog.changes"
BATCH = 1_000
GAP_SECONDS = 60.0
MAX_GAPS = 10_000
POLL_SECONDS = 0.2
_IN_CHUNK = 500  # ids per IN (...) list
_EVENTS: Any = WatchEvent.__table__


# What matching and the events need of a product: not its raw payload or description.
_PRODUCT = tuple(
    getattr(CatalogProduct, name)
    for name in (
        "id", "uid", "provider", "external_id", "title", "brand", "url", "codes", "keywords",
        "price_minor", "currency", "in_stock", "status", "attributes",
    )
)  # fmt: skip


async def _listings(
    session: AsyncSession, product_ids: Sequence[int]
) -> dict[int, tuple[Any, matching.Listing]]:
    products = (
        await session.execute(select(*_PRODUCT).where(CatalogProduct.id.in_(product_ids)))
    ).all()
    sizes: dict[int, list[str]] = defaultdict(list)
    offers = await session.execute(
        select(CatalogOffer.product_id, CatalogOffer.label).where(
            CatalogOffer.product_id.in_(product_ids),
            CatalogOffer.available.is_(True),
            CatalogOffer.label.is_not(None),
        )
    )
    for product_id, label in offers:
        if label:
            sizes[product_id].append(label)
    found = {}
    for p in products:
        condition = (p.attributes or {}).get("condition")
        found[p.id] = (
            p,
            matching.Listing(
                product_id=p.id,
                provider=p.provider,
                title=p.title,
                brand=p.brand,
                codes=p.codes,
                keywords=p.keywords,
                price_minor=p.price_minor,
                currency=p.currency,
                in_stock=p.in_stock,
                status="ended" if p.status != "active" else "active",
                sizes=tuple(sizes.get(p.id, ())),
                condition=condition if isinstance(condition, str) else None,
                url=p.url,
                **_discogs_ids(p),
            ),
        )
    return found


def _discogs_ids(product: Any) -> dict[str, str | None]:
    """The Discogs release and master a product sells, for watch releases (seed 003)."""
    if product.provider != "discogs":
        return {}
    attributes = product.attributes or {}
    kind, _, number = str(product.external_id).partition(":")
    release = attributes.get("release_id") or (number if kind == "release" else None)
    master = attributes.get("master_id") or (number if kind == "master" else None)
    return {
        "release_id": str(release) if release else None,
        "master_id": str(master) if master else None,
    }


async def _lows(
    session: AsyncSession, product_ids: Iterable[int], days: int, now: datetime
) -> dict[int, tuple[int, str | None]]:
    """Each product's lowest offer price over ``days`` before its latest price point."""
    points = CatalogPricePoint
    ids = list(product_ids)
    latest = (
        select(points.product_id, func.max(points.observed_at).label("latest"))
        .where(points.product_id.in_(ids))
        .group_by(points.product_id)
        .subquery()
    )
    rows = await session.execute(
        select(points.product_id, points.currency, func.min(points.price_minor))
        .join(
            latest,
            and_(latest.c.product_id == points.product_id, points.observed_at < latest.c.latest),
        )
        .where(points.observed_at >= now - timedelta(days=days), points.price_minor.is_not(None))
        .group_by(points.product_id, points.currency)
    )
    return {pid: (low, currency) for pid, currency, low in rows if low is not None}


# A rule, why it matched, the product's row and the product as rules see it.
Pair = tuple[CompiledRule, matching.Match, Any, matching.Listing]


@dataclass
class BatchResult:
    changes: int = 0
    matched: int = 0
    events: int = 0
    notifications: list[dict[str, Any]] = field(default_factory=list)


def _event_payload(
    rule: CompiledRule, product: Any, explained: dict[str, object], draft: decisions.EventDraft
) -> dict[str, Any]:
    """What an event says about itself: the rule, the listing, why it matched, what moved."""
    return {
        "rule": {"id": rule.id, "name": rule.name, "kind": rule.kind},
        "listing": {
            "id": product.id,
            "uid": product.uid,
            "provider": product.provider,
            "title": product.title,
            "brand": product.brand,
            "url": product.url,
            "price_minor": product.price_minor,
            "currency": product.currency,
            "in_stock": product.in_stock,
            "status": product.status,
        },
        "match": explained,
        **draft.details,
    }


class Evaluator:
    """Follows the change feed; one instance per process, safe to run in several."""

    def __init__(
        self, database: Database, settings: Settings, publisher: stream.Publisher | None = None
    ) -> None:
        self.database = database
        self.settings = settings
        self.publisher = publisher or stream.publisher_for(settings)
        self.rules = RuleSet()
        self.cooldown = timedelta(seconds=settings.watch_event_cooldown_seconds)

    async def run(self) -> None:
        """Process batches while there are changes; otherwise look again shortly."""
        while True:
            result = await self.run_once()
            if result.changes < BATCH:
                await asyncio.sleep(POLL_SECONDS)

    async def run_once(self, now: datetime | None = None) -> BatchResult:
        async with self.database.session() as session:
            cursor = await self._cursor(session)
            if cursor is None:
                return BatchResult()
            changes = await self._changes(session, cursor)
            if not changes:
                return BatchResult()
            self.rules = await load_rules(session, self.settings, self.rules)
            result = await self._evaluate(session, changes, now or utcnow())
            _advance(cursor, changes)
            result.changes = len(changes)
            await stream.publish_in_transaction(session, result.notifications)
        await self.publisher.after_commit(result.notifications)
        if result.events:
            log.info(
                "watch.evaluated",
                changes=result.changes,
                matched=result.matched,
                events=result.events,
            )
        return result

    async def _cursor(self, session: AsyncSession) -> WatchCursor | None:
        query = select(WatchCursor).where(WatchCursor.name == CURSOR)
        if self.database.kind == "postgresql":
            query = query.with_for_update(skip_locked=True)
        cursor = await session.scalar(query)
        if cursor is not None:
            return cursor
        await session.execute(
            conflict_insert(session, WatchCursor)
            .values(name=CURSOR, last_change_id=0, gaps=[], updated_at=utcnow())
            .on_conflict_do_nothing(index_elements=["name"])
        )
        return await session.scalar(query)

    async def _changes(self, session: AsyncSession, cursor: WatchCursor) -> list[CatalogChange]:
        query = select(CatalogChange).order_by(CatalogChange.id).limit(BATCH)
        found = list(
            (await session.scalars(query.where(CatalogChange.id > cursor.last_change_id))).all()
        )
        gap_ids = [int(gap[0]) for gap in cursor.gaps or []]
        if gap_ids:
            filled = await session.scalars(
                select(CatalogChange).where(CatalogChange.id.in_(gap_ids))
            )
            found = sorted([*filled, *found], key=lambda change: change.id)
        return found

    async def backfill(
        self, rule: CompiledRule, product_ids: Sequence[int], now: datetime | None = None
    ) -> BatchResult:
        """One rule against products already in the catalogue (a new or changed rule
        matches what is listed now, not only what changes next)."""
        if not product_ids:
            return BatchResult()
        async with self.database.session() as session:
            listings = await _listings(session, product_ids)
            pairs: list[Pair] = [
                (rule, found, product, listing)
                for product, listing in listings.values()
                if (found := matching.match(rule.query, listing)) is not None
            ]
            result = await self._decide(session, pairs, {}, now or utcnow())
            await stream.publish_in_transaction(session, result.notifications)
        await self.publisher.after_commit(result.notifications)
        return result

    async def _evaluate(
        self, session: AsyncSession, changes: Sequence[CatalogChange], now: datetime
    ) -> BatchResult:
        last_change = {change.product_id: change.id for change in changes}
        listings = await _listings(session, list(last_change))
        pairs: list[Pair] = [
            (self.rules.rules[rule_id], found, product, listing)
            for product, listing in listings.values()
            for rule_id, found in self.rules.index.matches(listing)
        ]
        return await self._decide(session, pairs, last_change, now)

    async def _decide(
        self,
        session: AsyncSession,
        pairs: Sequence[Pair],
        last_change: dict[int, int],
        now: datetime,
    ) -> BatchResult:
        """Each matched pair's decision: its state, and its events with their notifications."""
        result = BatchResult(matched=len(pairs))
        if not pairs:
            return result
        existing = {
            (m.rule_id, m.product_id): m
            for m in await session.scalars(
                select(WatchMatch).where(WatchMatch.product_id.in_({p[2].id for p in pairs}))
            )
        }
        lows = await self._lows_for(session, pairs, now)
        new_matches: list[dict[str, Any]] = []
        moved: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for rule, found, product, listing in pairs:
            row = existing.get((rule.id, product.id))
            previous = decisions.PairState.from_json(row.state) if row and row.state else None
            low = lows.get((rule.id, product.id))
            observation = decisions.Observation(
                price_minor=listing.price_minor,
                currency=listing.currency,
                in_stock=listing.in_stock,
                status=listing.status,
                low_in_days_minor=low,
            )
            decision = decisions.decide(rule.notify, previous, observation, now, self.cooldown)
            explained = found.as_json()
            values = {
                "state": decision.state.to_json(),
                "match_context": explained,
                "last_matched_at": now,
            }
            if row is None:
                new_matches.append(
                    {
                        "rule_id": rule.id,
                        "product_id": product.id,
                        "first_matched_at": now,
                        **values,
                    }
                )
            else:
                moved.append({"id": row.id, **values})
            events += [
                {
                    "user_id": rule.user_id,
                    "type": str(draft.type),
                    "rule_id": rule.id,
                    "product_id": product.id,
                    "change_id": last_change.get(product.id),
                    "dedupe_key": draft.dedupe_key[:200],
                    "payload": _event_payload(rule, product, explained, draft),
                    "created_at": now,
                }
                for draft in decision.events
            ]
        if new_matches:
            await insert_returning_ids(session, WatchMatch.__table__, new_matches)  # type: ignore[arg-type]
        if moved:
            await update_by_id(session, WatchMatch.__table__, moved)  # type: ignore[arg-type]
        await self._write_events(session, events, result, now)
        return result

    async def _lows_for(
        self,
        session: AsyncSession,
        pairs: Sequence[Pair],
        now: datetime,
    ) -> dict[tuple[int, int], int]:
        """The N-day low of each pair whose rule asks for LOWEST_IN_DAYS, same currency only."""
        by_days: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for rule, _, product, _ in pairs:
            if rule.notify.lowest_in_days:
                by_days[rule.notify.lowest_in_days].append((rule.id, product.id))
        lows: dict[tuple[int, int], int] = {}
        currencies = {p.id: p.currency for _, _, p, _ in pairs}
        for days, keys in by_days.items():
            found = await _lows(session, {pid for _, pid in keys}, days, now)
            for rule_id, pid in keys:
                low = found.get(pid)
                if low is not None and low[1] == currencies.get(pid):
                    lows[(rule_id, pid)] = low[0]
        return lows

    async def _write_events(
        self,
        session: AsyncSession,
        events: list[dict[str, Any]],
        result: BatchResult,
        now: datetime,
    ) -> None:
        if not events:
            return
        fresh = await _unwritten(session, events)
        ids = await insert_returning_ids(session, _EVENTS, fresh)
        written = [
            WrittenEvent(i, e["user_id"], e["type"], e["rule_id"], e["product_id"], e["created_at"])
            for i, e in zip(ids, fresh, strict=True)
        ]
        result.events = len(written)
        if not written:
            return
        ids = await fanout.fan_out(session, written, now)
        result.notifications = [
            stream_message(nid, event) for event, nid in zip(written, ids, strict=True)
        ]


@dataclass(frozen=True, slots=True)
class WrittenEvent:
    id: int
    user_id: int
    type: str
    rule_id: int | None
    product_id: int | None
    created_at: datetime


async def _unwritten(
    session: AsyncSession, events: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The events not written yet (a batch read twice, or a repeat within the batch).

    One reader works the feed at a time (the cursor's lock), so reading the keys first is
    enough; the unique constraint stays as the backstop. Plain inserts then go in chunks
    (or COPY): a single INSERT … ON CONFLICT of thousands of events would pass
    PostgreSQL's 32,767 parameters.
    """
    products = sorted({e["product_id"] for e in events})
    keys = sorted({e["dedupe_key"] for e in events})
    seen: set[tuple[int | None, int | None, str]] = set()
    for start in range(0, len(products), _IN_CHUNK):
        rows = await session.execute(
            select(WatchEvent.rule_id, WatchEvent.product_id, WatchEvent.dedupe_key).where(
                WatchEvent.product_id.in_(products[start : start + _IN_CHUNK]),
                WatchEvent.dedupe_key.in_(keys),
            )
        )
        seen.update((r, p, k) for r, p, k in rows)
    fresh = []
    for event in events:
        key = (event["rule_id"], event["product_id"], event["dedupe_key"])
        if key not in seen:
            seen.add(key)
            fresh.append(event)
    return fresh


def stream_message(notification_id: int, event: Any) -> dict[str, Any]:
    """Seed 003's stream message (notification and event ids, type, time) and whose it is."""
    return {
        "notification_id": notification_id,
        "event_id": event.id,
        "event_type": event.type,
        "created_at": event.created_at.isoformat(),
        "user_id": event.user_id,
        "rule_id": event.rule_id,
        "listing_id": event.product_id,
    }


def _advance(cursor: WatchCursor, changes: Sequence[CatalogChange]) -> None:
    """Move the cursor past the batch, remembering ids it skipped over as gaps.

    Only recent gaps are kept: ids missing before a change older than ``GAP_SECONDS`` were
    rolled back or pruned long ago (a first run over an old feed must not keep thousands).
    """
    now, wall = utcnow(), time.time()
    seen = {change.id for change in changes}
    kept = [gap for gap in cursor.gaps or [] if gap[0] not in seen and wall - gap[1] < GAP_SECONDS]
    previous = cursor.last_change_id
    for change in sorted(changes, key=lambda c: c.id):
        if change.id <= previous:
            continue
        if change.id > previous + 1 and now - change.created_at < timedelta(seconds=GAP_SECONDS):
            kept += [[i, wall] for i in range(previous + 1, change.id)][:MAX_GAPS]
        previous = change.id
    cursor.last_change_id = previous
    cursor.gaps = kept[-MAX_GAPS:]
    cursor.updated_at = now
