"""Active rules compiled for matching and kept in step with the database incrementally."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.catalog.money import MoneyError, major_to_minor
from dispatch.config import Settings
from dispatch.models import User, WatchRule
from dispatch.watch import decisions, matching

log = structlog.get_logger(__name__)

_IN_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: int
    user_id: int
    name: str
    kind: str
    query: matching.RuleQuery
    notify: decisions.NotifyOn


def _minor(value: Any, currency: str) -> int | None:
    if value is None:
        return None
    try:
        return major_to_minor(Decimal(str(value)), currency)
    except (MoneyError, ArithmeticError):
        return None


def compile_rule(rule: WatchRule, user_currency: str | None, default: str) -> CompiledRule:
    """A stored rule as the matcher and the decisions use it (prices in minor units)."""
    q = rule.query
    currency = (q.get("currency") or user_currency or default).upper()
    notify = rule.notify or {}
    query = matching.compile_query(
        sources=q.get("sources") or (),
        keywords=q.get("keywords") or (),
        q=q.get("q"),
        exclude=q.get("exclude_keywords") or (),
        brands=q.get("brands") or (),
        sizes=q.get("sizes") or (),
        min_price_minor=_minor(q.get("min_price"), currency),
        max_price_minor=_minor(q.get("max_price"), currency),
        currency=currency,
        conditions=q.get("conditions") or (),
        default_currency=currency,
        release_ids=[str(q["release_id"])]
        if q.get("match_mode") != "master_release" and q.get("release_id")
        else [],
        master_ids=[str(q["master_id"])]
        if q.get("match_mode") == "master_release" and q.get("master_id")
        else [],
        min_condition=q.get("min_condition"),
    )
    return CompiledRule(
        id=rule.id,
        user_id=rule.user_id,
        name=rule.name,
        kind=rule.kind,
        query=query,
        notify=decisions.NotifyOn(
            new_match=notify.get("new_match", True),
            price_drop=notify.get("price_drop", True),
            drop_amount_minor=_minor(notify.get("drop_amount"), currency),
            drop_percent=notify.get("drop_percent"),
            price_rise=notify.get("price_rise", False),
            back_in_stock=notify.get("back_in_stock", True),
            ended=notify.get("ended", False),
            lowest_in_days=notify.get("lowest_in_days"),
        ),
    )


@dataclass
class RuleSet:
    """Active rules compiled and indexed, kept in step with the database incrementally."""

    version: tuple[Any, ...] = ()
    rules: dict[int, CompiledRule] = field(default_factory=dict)
    index: matching.RuleIndex = field(default_factory=matching.RuleIndex)
    stamps: dict[int, tuple[datetime, datetime]] = field(default_factory=dict)


async def _rules_version(session: AsyncSession) -> tuple[Any, ...]:
    rules = (await session.execute(select(func.count(), func.max(WatchRule.updated_at)))).one()
    users = (await session.execute(select(func.count(), func.max(User.updated_at)))).one()
    return (*rules, *users)


_ACTIVE = (WatchRule.is_active.is_(True), User.is_active.is_(True))


async def load_rules(session: AsyncSession, settings: Settings, current: RuleSet) -> RuleSet:
    """The active rules; when anything changed, only the changed rules are compiled again.

    A rule's stamp is its own and its user's ``updated_at`` (the user's currency prices
    its bounds). Compiling 10,000 rules takes about a second: a change to one must not
    cost the next batch that much.
    """
    version = await _rules_version(session)
    if version == current.version:
        return current
    stamps = {
        rule_id: (rule_stamp, user_stamp)
        for rule_id, rule_stamp, user_stamp in await session.execute(
            select(WatchRule.id, WatchRule.updated_at, User.updated_at)
            .join(User, User.id == WatchRule.user_id)
            .where(*_ACTIVE)
        )
    }
    for gone in set(current.rules) - set(stamps):
        current.rules.pop(gone, None)
        current.index.remove(gone)
        current.stamps.pop(gone, None)
    changed = [rid for rid, stamp in stamps.items() if current.stamps.get(rid) != stamp]
    for start in range(0, len(changed), _IN_CHUNK):
        rows = await session.execute(
            select(WatchRule, User.preferences)
            .join(User, User.id == WatchRule.user_id)
            .where(WatchRule.id.in_(changed[start : start + _IN_CHUNK]))
        )
        for rule, preferences in rows:
            _compile_into(current, rule, preferences, settings, stamps[rule.id])
    current.version = version
    if len(changed) > 1_000:
        # Tens of thousands of long-lived objects: kept out of the collector's full passes,
        # which otherwise walked them all during each batch's allocations.
        gc.freeze()
    return current


def _compile_into(
    rules: RuleSet,
    rule: WatchRule,
    preferences: dict[str, Any] | None,
    settings: Settings,
    stamp: tuple[datetime, datetime],
) -> None:
    rules.stamps[rule.id] = stamp
    try:
        compiled = compile_rule(
            rule, (preferences or {}).get("currency"), settings.watch_default_currency
        )
    except (MoneyError, ValueError) as exc:  # one unreadable rule must not stop the rest
        log.warning("watch.rule_skipped", rule=rule.id, error=str(exc))
        rules.rules.pop(rule.id, None)
        rules.index.remove(rule.id)
        return
    rules.rules[rule.id] = compiled
    rules.index.add(rule.id, compiled.query)
