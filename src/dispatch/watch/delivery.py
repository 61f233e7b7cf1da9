"""Sending what waits: email (one message per user and due moment: a digest) and webhooks.

Notifications of the ``email`` channel are written ``pending`` with the moment they may go
(``timing.due_at``: quiet hours, hourly or daily digests). Every worker runs ``deliver_due``
about once a second: it claims the due ones (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; the
claim pushes ``due_at`` one lease ahead, so a worker that dies mid-send leaves them to be
retried, not lost), groups them by user, and sends each user one mail through the SMTP
settings. A failed send is retried with backoff up to ``MAX_ATTEMPTS``, then ``failed``;
without an SMTP server the notifications are ``skipped`` with the reason, not marked sent.
A due webhook notification is handed to the gateway as a task (``watch.webhooks``) and
becomes ``queued`` with the task's id: the gateway retries, fails over and signs.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.gateway import settings_store
from dispatch.models import User, WatchEvent, WatchNotification
from dispatch.watch import webhooks
from dispatch.watch.messages import Item, compose

log = structlog.get_logger(__name__)

EMAIL = "email"
WEBHOOK = "webhook"
CLAIM_LIMIT = 500
LEASE = timedelta(minutes=2)
MAX_ATTEMPTS = 5
BACKOFF_SECONDS = 60.0
POLL_SECONDS = 1.0


async def _claim(session: AsyncSession, kind: str, now: datetime) -> list[WatchNotification]:
    query = (
        select(WatchNotification)
        .where(
            WatchNotification.status == "pending",
            WatchNotification.channel.in_((EMAIL, WEBHOOK)),
            WatchNotification.due_at <= now,
        )
        .order_by(WatchNotification.due_at, WatchNotification.id)
        .limit(CLAIM_LIMIT)
    )
    if kind == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = list((await session.scalars(query)).all())
    for row in claimed:
        row.due_at = now + LEASE
        row.attempts += 1
    return claimed


async def _mark(
    database: Database, ids: list[int], now: datetime, outcome: str, error: str | None
) -> None:
    values: dict[str, Any] = {"error": error[:2000] if error else None}
    if outcome == "sent":
        values.update(status="sent", delivered_at=now)
    elif outcome in ("failed", "skipped"):
        values.update(status=outcome, failed_at=now)
    async with database.session() as session:
        await session.execute(
            update(WatchNotification).where(WatchNotification.id.in_(ids)).values(**values)
        )


async def _retry_later(
    database: Database, rows: list[WatchNotification], now: datetime, error: str
) -> None:
    """Back off (60 s, 120 s, 240 s…) or give up after MAX_ATTEMPTS."""
    spent = [row.id for row in rows if row.attempts >= MAX_ATTEMPTS]
    if spent:
        await _mark(database, spent, now, "failed", error)
    async with database.session() as session:
        for row in rows:
            if row.attempts < MAX_ATTEMPTS:
                delay = BACKOFF_SECONDS * 2 ** (row.attempts - 1)
                await session.execute(
                    update(WatchNotification)
                    .where(WatchNotification.id == row.id)
                    .values(due_at=now + timedelta(seconds=delay), error=error[:2000])
                )


async def deliver_due(database: Database, settings: Settings, now: datetime | None = None) -> int:
    """Send every due email and hand every due webhook to the gateway; returns how many."""
    now = now or utcnow()
    async with database.session() as session:
        claimed = await _claim(session, database.kind, now)
        if not claimed:
            return 0
        smtp = await settings_store.load(session)
    async with database.session(write=False) as session:
        events = {
            e.id: e
            for e in await session.scalars(
                select(WatchEvent).where(WatchEvent.id.in_({r.event_id for r in claimed}))
            )
        }
        users = {
            u.id: u
            for u in await session.scalars(
                select(User).where(User.id.in_({r.user_id for r in claimed}))
            )
        }
    hooks = [row.id for row in claimed if row.channel == WEBHOOK]
    sent = await _hand_over(database, settings, hooks, events) if hooks else 0
    by_user: dict[int, list[WatchNotification]] = defaultdict(list)
    for row in claimed:
        if row.channel == EMAIL:
            by_user[row.user_id].append(row)
    for user_id, rows in by_user.items():
        sent += await _send_one(database, smtp, users.get(user_id), rows, events, now)
    return sent


async def _hand_over(
    database: Database, settings: Settings, ids: list[int], events: dict[int, WatchEvent]
) -> int:
    async with database.session() as session:
        rows = (
            await session.scalars(select(WatchNotification).where(WatchNotification.id.in_(ids)))
        ).all()
        return await webhooks.hand_over(session, settings, list(rows), events)


async def _send_one(
    database: Database,
    smtp: settings_store.GatewaySettings,
    user: User | None,
    rows: list[WatchNotification],
    events: dict[int, WatchEvent],
    now: datetime,
) -> int:
    ids = [row.id for row in rows]
    if user is None or not user.is_active:
        await _mark(database, ids, now, "skipped", "the user is inactive or gone")
        return 0
    items = [
        Item(e.type, e.payload, e.created_at)
        for e in (events.get(row.event_id) for row in rows)
        if e is not None
    ]
    subject, body = compose(items, user.display_name)
    try:
        await settings_store.send_email(smtp, [user.email], subject, body)
    except settings_store.SmtpNotConfigured as exc:
        await _mark(database, ids, now, "skipped", str(exc))
        return 0
    except (OSError, smtplib.SMTPException, TimeoutError) as exc:
        log.warning("watch.email_failed", user=user.id, error=str(exc), count=len(ids))
        await _retry_later(database, rows, now, f"{type(exc).__name__}: {exc}")
        return 0
    await _mark(database, ids, now, "sent", None)
    return len(ids)


async def run(database: Database, settings: Settings) -> None:
    """The delivery loop of one worker (several at once are safe)."""
    while True:
        await deliver_due(database, settings)
        await asyncio.sleep(POLL_SECONDS)
