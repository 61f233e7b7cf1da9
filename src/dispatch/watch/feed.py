"""Reading the events and the in-app feed, and marking it read: shared by the API and the UI."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import utcnow
from dispatch.models import WatchEvent, WatchNotification
from dispatch.watch.pages import Page

FEED = "realtime"  # the in-app feed is seed 003's realtime channel


async def events(
    session: AsyncSession,
    owner: int | None,
    page: Page,
    *,
    rule_id: int | None = None,
    kind: str | None = None,
    alerts_only: bool = False,
) -> list[WatchEvent]:
    """Events newest first: one user's (``owner``) or everyone's; one rule's, one type's, or
    only alerts (no rule lifecycle events). One row more than the page (see ``Page.trim``)."""
    query = select(WatchEvent)
    if owner is not None:
        query = query.where(WatchEvent.user_id == owner)
    if rule_id is not None:
        query = query.where(WatchEvent.rule_id == rule_id)
    if kind is not None:
        query = query.where(WatchEvent.type == kind.upper())
    if alerts_only:
        query = query.where(~WatchEvent.type.startswith("RULE_", autoescape=True))
    return list(await session.scalars(page.apply(query, WatchEvent.created_at, WatchEvent.id)))


async def unread_count(session: AsyncSession, owner: int | None) -> int:
    """Unread items of the in-app feed."""
    query = select(func.count()).where(
        WatchNotification.is_read.is_(False), WatchNotification.channel == FEED
    )
    if owner is not None:
        query = query.where(WatchNotification.user_id == owner)
    return int(await session.scalar(query) or 0)


async def mark_all_read(session: AsyncSession, owner: int) -> int:
    """Mark every unread notification of the user read; how many."""
    result = await session.execute(
        update(WatchNotification)
        .where(WatchNotification.user_id == owner, WatchNotification.is_read.is_(False))
        .values(is_read=True, read_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)
