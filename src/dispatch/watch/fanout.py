"""Each new event becomes notifications: the in-app feed at once, and the user's outbound
channels (email; webhook) pending until their quiet hours and digest frequency allow."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.bulk import insert_returning_ids
from dispatch.models import User, WatchNotification
from dispatch.watch.schemas import Preferences
from dispatch.watch.timing import Delivery, due_at

_NOTIFICATIONS: Any = WatchNotification.__table__


def _row(event: Any, channel: str, status: str, due: datetime | None) -> dict[str, Any]:
    return {
        "user_id": event.user_id,
        "event_id": event.id,
        "event_type": event.type,
        "channel": channel,
        "status": status,
        "due_at": due,
        "is_read": False,
        "attempts": 0,
        "delivered_at": event.created_at if status == "sent" else None,
        "created_at": event.created_at,
    }


def outbound(preferences: Preferences, now: datetime) -> list[tuple[str, datetime]]:
    """The outbound channels a user wants, each with the moment it may be sent."""
    delivery = Delivery(
        frequency=preferences.delivery_frequency,
        timezone=preferences.notification_timezone or preferences.timezone,
        quiet_start=preferences.quiet_hours_start,
        quiet_end=preferences.quiet_hours_end,
    )
    due = due_at(delivery, now)
    channels = []
    if preferences.notifications_email:
        channels.append(("email", due))
    if preferences.notifications_webhook and preferences.webhook_urls:
        channels.append(("webhook", due))
    return channels


async def fan_out(session: AsyncSession, events: Sequence[Any], now: datetime) -> list[int]:
    """Write the notifications of ``events``; returns the feed rows' ids, in event order."""
    stored = await session.execute(
        select(User.id, User.preferences).where(User.id.in_({e.user_id for e in events}))
    )
    preferences = {
        user_id: Preferences.model_validate({**Preferences().model_dump(), **(values or {})})
        for user_id, values in stored
    }
    feed = [_row(event, "realtime", "sent", None) for event in events]
    ids = await insert_returning_ids(session, _NOTIFICATIONS, feed)
    pending = [
        _row(event, channel, "pending", due)
        for event in events
        if event.user_id in preferences
        for channel, due in outbound(preferences[event.user_id], now)
    ]
    if pending:
        await insert_returning_ids(session, _NOTIFICATIONS, pending)
    return ids
