"""Watch: users' watch rules, what each rule matched, events and notifications.

Seed 003's tables, kept by meaning. A rule's matches are remembered per (rule, product)
with the state its next decision is measured from (price reference, stock, cooldowns), so
a flapping price or stock flag does not become a stream of events. Events are unique per
(rule, product, dedupe key): processing the same catalogue change twice writes nothing
new. Notifications are one row per (event, channel); the in-app feed is the ``realtime``
channel, as in the seed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db.base import Base, BigId, partial, utcnow


class WatchRule(Base):
    """What a user watches: seed 003's ``query`` (sources, keywords, q, prices) and more."""

    __tablename__ = "watch_rules"
    __table_args__ = (
        Index("ix_watch_rules_user_created", "user_id", "created_at", "id"),
        Index("ix_watch_rules_due", "next_run_at", **partial("is_active")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    # "search" (seed 003's watch rules) or "release" (its watch releases: one Discogs
    # release or master, a target price, a minimum condition).
    kind: Mapped[str] = mapped_column(String(16), default="search")
    query: Mapped[dict[str, Any]] = mapped_column(JSON)
    notify: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    poll_interval_seconds: Mapped[int] = mapped_column(default=600)
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)
    next_run_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WatchMatch(Base):
    """One product a rule matched, with the state its next event is decided from."""

    __tablename__ = "watch_matches"
    __table_args__ = (
        UniqueConstraint("rule_id", "product_id", name="uq_watch_matches_rule_product"),
        Index("ix_watch_matches_product", "product_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("watch_rules.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("catalog_products.id", ondelete="CASCADE")
    )
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    match_context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    first_matched_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_matched_at: Mapped[datetime] = mapped_column(default=utcnow)


class WatchEvent(Base):
    """Something a user is told about: a match, a price or stock move, a rule's lifecycle."""

    __tablename__ = "watch_events"
    __table_args__ = (
        # Rule lifecycle events have no product: NULLs are distinct, so they never collide.
        UniqueConstraint("rule_id", "product_id", "dedupe_key", name="uq_watch_events_once"),
        Index("ix_watch_events_user_created", "user_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    # No foreign keys: an event outlives a hard-deleted rule or a removed product.
    rule_id: Mapped[int | None] = mapped_column(default=None)
    product_id: Mapped[int | None] = mapped_column(BigId, default=None)
    change_id: Mapped[int | None] = mapped_column(BigId, default=None)  # the catalogue change
    dedupe_key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WatchNotification(Base):
    """One event on one channel; pending ones wait for quiet hours or a digest."""

    __tablename__ = "watch_notifications"
    __table_args__ = (
        UniqueConstraint("event_id", "channel", name="uq_watch_notifications_event_channel"),
        CheckConstraint("channel IN ('realtime', 'email', 'webhook')", name="channel"),
        CheckConstraint(
            "status IN ('pending', 'queued', 'sent', 'failed', 'skipped')", name="status"
        ),
        Index("ix_watch_notifications_user_created", "user_id", "created_at", "id"),
        Index(
            "ix_watch_notifications_unread",
            "user_id",
            **partial("is_read = false AND channel = 'realtime'"),
        ),
        Index("ix_watch_notifications_due", "due_at", **partial("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(BigId, ForeignKey("watch_events.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(12), default="pending")
    due_at: Mapped[datetime | None] = mapped_column(default=None)  # quiet hours, digests
    # A webhook is handed to the gateway (failover, retries, signatures): its task says how
    # the delivery went. No foreign key: tasks are pruned on their own schedule.
    gateway_task_id: Mapped[int | None] = mapped_column(BigId, default=None)
    is_read: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    failed_at: Mapped[datetime | None] = mapped_column(default=None)
    read_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WatchCursor(Base):
    """How far a consumer has read the catalogue's change feed."""

    __tablename__ = "watch_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_change_id: Mapped[int] = mapped_column(BigId, default=0)
    # [id, first missed (epoch seconds)] of ids below the cursor not seen yet: a
    # transaction that committed late may still fill them.
    gaps: Mapped[list[list[float]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboundClick(Base):
    """A user followed a listing's outbound (affiliate) link (seed 003's ``outbound_clicks``)."""

    __tablename__ = "watch_outbound_clicks"
    __table_args__ = (Index("ix_watch_outbound_clicks_product", "product_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign keys: the click log outlives users and listings.
    user_id: Mapped[int | None] = mapped_column(default=None)
    product_id: Mapped[int] = mapped_column(BigId)
    provider: Mapped[str] = mapped_column(String(64))
    target_url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
