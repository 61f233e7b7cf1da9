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


class WatchAccountLink(Base):
    """A user's account at a provider (seed 003's ``external_account_links``): Discogs.

    Tokens are sealed (``enc:v1:<kid>:…``, see ``dispatch.security.sealing``). ``auth``
    says how calls for this user are made: ``oauth1`` (an access token and its secret),
    ``personal`` (a personal access token, ``Authorization: Discogs token=…``) or ``none``
    (public lists only, through the service's own token).
    """

    __tablename__ = "watch_account_links"
    __table_args__ = (
        UniqueConstraint("user_id", "provider", name="uq_watch_account_links_user_provider"),
        CheckConstraint("auth IN ('oauth1', 'personal', 'none')", name="auth"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    external_user_id: Mapped[str] = mapped_column(String(255))
    auth: Mapped[str] = mapped_column(String(16), default="none")
    access_token: Mapped[str | None] = mapped_column(Text, default=None)
    access_secret: Mapped[str | None] = mapped_column(Text, default=None)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    token_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    connected_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_import_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class WatchOAuthState(Base):
    """An OAuth 1.0a authorisation in progress: the temporary token, for ten minutes."""

    __tablename__ = "watch_oauth_states"
    __table_args__ = (Index("ix_watch_oauth_states_token", "request_token"),)

    state: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    request_token: Mapped[str] = mapped_column(String(255))
    request_secret: Mapped[str] = mapped_column(Text)  # sealed
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(default=utcnow)


class WatchImportJob(Base):
    """An import of a user's Discogs wantlist and/or collection into watch releases.

    It runs as a queue job and saves its place after every page (``stage``, ``page``), so
    a retried job goes on where the last attempt stopped. One is in flight per user.
    """

    __tablename__ = "watch_import_jobs"
    __table_args__ = (
        CheckConstraint("source IN ('wantlist', 'collection', 'both')", name="source"),
        CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name="status"),
        Index("ix_watch_import_jobs_user_created", "user_id", "created_at", "id"),
        Index(
            "uq_watch_import_jobs_in_flight",
            "user_id",
            "provider",
            unique=True,
            **partial("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    trigger: Mapped[str] = mapped_column(String(16), default="api")  # api | schedule
    job_id: Mapped[int | None] = mapped_column(BigId, default=None)  # the queue's job
    stage: Mapped[str | None] = mapped_column(String(16), default=None)  # list being read
    page: Mapped[int] = mapped_column(default=0)  # pages of ``stage`` done
    pages: Mapped[int | None] = mapped_column(default=None)
    processed_count: Mapped[int] = mapped_column(default=0)
    imported_count: Mapped[int] = mapped_column(default=0)
    created_count: Mapped[int] = mapped_column(default=0)
    updated_count: Mapped[int] = mapped_column(default=0)
    removed_count: Mapped[int] = mapped_column(default=0)
    error_count: Mapped[int] = mapped_column(default=0)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WatchImportedItem(Base):
    """A release on a user's Discogs wantlist or in their collection, and the watch release
    it became. ``rule_id`` is NULL once the user deleted that watch release: the next import
    then leaves it deleted instead of creating it again."""

    __tablename__ = "watch_imported_items"
    __table_args__ = (
        UniqueConstraint(
            "user_id", "provider", "source", "external_id", name="uq_watch_imported_items_once"
        ),
        Index("ix_watch_imported_items_rule", "rule_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))  # wantlist | collection
    external_id: Mapped[int] = mapped_column(BigId)  # the Discogs release id
    master_id: Mapped[int | None] = mapped_column(BigId, default=None)
    title: Mapped[str] = mapped_column(String(300))
    artist: Mapped[str | None] = mapped_column(String(300), default=None)
    year: Mapped[int | None] = mapped_column(default=None)
    rule_id: Mapped[int | None] = mapped_column(
        ForeignKey("watch_rules.id", ondelete="SET NULL"), default=None
    )
    created_rule: Mapped[bool] = mapped_column(Boolean, default=False)
    # The import disabled the watch release because the item left the list; it is
    # enabled again if the item comes back.
    paused_rule: Mapped[bool] = mapped_column(Boolean, default=False)
    import_job_id: Mapped[int | None] = mapped_column(default=None)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(default=None)
