"""Watch rules: create, read, change, disable, delete, each change an event of its own."""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import utcnow
from dispatch.errors import NotFound, ValidationFailed
from dispatch.models import User, WatchEvent, WatchRule
from dispatch.watch.deps import Caller
from dispatch.watch.pages import Page
from dispatch.watch.schemas import (
    NotifyOn,
    RuleQuery,
    WatchRuleCreate,
    WatchRuleOut,
    WatchRulePatch,
)

POLL_JITTER_SECONDS = 5  # seed 003 spread rule runs by randint(0, 5)


def rule_out(rule: WatchRule) -> WatchRuleOut:
    return WatchRuleOut(
        id=rule.id,
        user_id=rule.user_id,
        name=rule.name,
        query=rule.query,
        is_active=rule.is_active,
        poll_interval_seconds=rule.poll_interval_seconds,
        last_run_at=rule.last_run_at,
        next_run_at=rule.next_run_at,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
        notify_on=NotifyOn.model_validate(rule.notify or {}),
    )


def check_sources(query: RuleQuery, enabled: Collection[str]) -> None:
    unknown = [name for name in query.sources if name not in enabled]
    if unknown:
        raise ValidationFailed(
            f"Unknown or disabled source: {', '.join(unknown)}",
            details={"unknown": unknown, "enabled": sorted(enabled)},
        )


def next_run(interval: int, now: datetime) -> datetime:
    return now + timedelta(seconds=interval + random.randint(0, POLL_JITTER_SECONDS))  # noqa: S311


def lifecycle(rule: WatchRule, kind: str, now: datetime, **details: Any) -> WatchEvent:
    """A rule lifecycle event (RULE_CREATED, ...); never deduplicated away."""
    return WatchEvent(
        user_id=rule.user_id,
        type=kind,
        rule_id=rule.id,
        product_id=None,
        dedupe_key=f"{kind}:{now.isoformat()}",
        payload={"rule": {"id": rule.id, "name": rule.name, "kind": rule.kind}, **details},
        created_at=now,
    )


async def _owner(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise ValidationFailed(f"User {user_id} does not exist", details={"user_id": user_id})
    return user


async def create_rule(
    session: AsyncSession,
    user_id: int,
    body: WatchRuleCreate,
    enabled: Collection[str],
    *,
    kind: str = "search",
    query: dict[str, Any] | None = None,
    origin: dict[str, Any] | None = None,
) -> WatchRule:
    """A new rule (``kind`` "release" with its own ``query``: a watch release); ``origin``
    says where it came from in its RULE_CREATED event (a Discogs import)."""
    await _owner(session, user_id)
    check_sources(body.query, enabled)
    now = utcnow()
    rule = WatchRule(
        user_id=user_id,
        name=body.name.strip() or body.name,
        kind=kind,
        query=query if query is not None else body.query.stored(),
        notify=(body.notify_on or NotifyOn()).stored(),
        is_active=body.is_active,
        poll_interval_seconds=body.poll_interval_seconds,
        next_run_at=now if body.is_active else None,
        created_at=now,
        updated_at=now,
    )
    session.add(rule)
    await session.flush()
    session.add(lifecycle(rule, "RULE_CREATED", now, **({"origin": origin} if origin else {})))
    return rule


async def get_rule(
    session: AsyncSession, caller: Caller, rule_id: int, kind: str = "search"
) -> WatchRule:
    """The rule if the caller may see it; another user's rule is simply not found."""
    rule = await session.get(WatchRule, rule_id)
    if rule is None or rule.kind != kind or not caller.may_see(rule.user_id):
        what = "Watch release" if kind == "release" else "Watch rule"
        raise NotFound(f"{what} {rule_id} does not exist")
    return rule


async def list_rules(
    session: AsyncSession,
    owner: int | None,
    page: Page,
    active: bool | None,
    kind: str = "search",
) -> Sequence[WatchRule]:
    query = select(WatchRule).where(WatchRule.kind == kind)
    if owner is not None:
        query = query.where(WatchRule.user_id == owner)
    if active is not None:
        query = query.where(WatchRule.is_active.is_(active))
    query = page.apply(query, WatchRule.created_at, WatchRule.id)
    return (await session.scalars(query)).all()


def _merged(rule: WatchRule, patch: WatchRulePatch) -> tuple[RuleQuery | None, NotifyOn | None]:
    try:
        query = None
        if patch.query is not None:
            if "sources" in patch.query and not patch.query["sources"]:
                raise ValidationFailed("sources cannot be removed from a rule")
            query = RuleQuery.model_validate({**rule.query, **patch.query})
        notify = None
        if patch.notify_on is not None:
            notify = NotifyOn.model_validate({**(rule.notify or {}), **patch.notify_on})
    except ValidationError as exc:
        raise ValidationFailed(
            "Invalid rule", details={"errors": exc.errors(include_url=False, include_input=False)}
        ) from exc
    return query, notify


async def update_rule(
    session: AsyncSession, rule: WatchRule, patch: WatchRulePatch, enabled: Collection[str]
) -> WatchRule:
    query, notify = _merged(rule, patch)
    now = utcnow()
    if query is not None:
        check_sources(query, enabled)
        rule.query = query.stored()
    if notify is not None:
        rule.notify = notify.stored()
    if patch.name is not None:
        rule.name = patch.name
    if patch.poll_interval_seconds is not None:
        rule.poll_interval_seconds = patch.poll_interval_seconds
    was_active = rule.is_active
    if patch.is_active is not None:
        rule.is_active = patch.is_active
    rule.updated_at = now
    session.add(lifecycle(rule, "RULE_UPDATED", now, fields=sorted(patch.model_fields_set)))
    if rule.is_active != was_active:
        _switched(session, rule, now)
    return rule


def set_active(
    session: AsyncSession, rule: WatchRule, active: bool, now: datetime, **details: Any
) -> None:
    """Enable or disable a rule, with its RULE_ENABLED / RULE_DISABLED event."""
    if rule.is_active == active:
        return
    rule.is_active = active
    rule.updated_at = now
    _switched(session, rule, now, **details)


def _switched(session: AsyncSession, rule: WatchRule, now: datetime, **details: Any) -> None:
    rule.next_run_at = now if rule.is_active else None
    kind = "RULE_ENABLED" if rule.is_active else "RULE_DISABLED"
    session.add(lifecycle(rule, kind, now + timedelta(microseconds=1), **details))


def disable_rule(session: AsyncSession, rule: WatchRule, *, deleted: bool = False) -> WatchRule:
    """Seed 003's disable, and its soft DELETE (which disables and returns the rule)."""
    now = utcnow()
    if rule.is_active:
        set_active(session, rule, False, now)
    if deleted:
        session.add(lifecycle(rule, "RULE_DELETED", now + timedelta(microseconds=2), hard=False))
    return rule


async def hard_delete_rule(session: AsyncSession, rule: WatchRule) -> None:
    """Remove the rule and its matches; its events stay, with a RULE_DELETED at the end."""
    now = utcnow()
    session.add(lifecycle(rule, "RULE_DELETED", now, hard=True))
    await session.flush()
    await session.execute(delete(WatchRule).where(WatchRule.id == rule.id))
