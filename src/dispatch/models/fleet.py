"""Fleet (seed 004): assets to rescue, and each copy of an asset a node makes.

An asset is wanted in ``replication_target`` copies on distinct nodes; each copy is a
queue job (kind ``rescue.copy``) leased by a remote node, so leases, expiry, reassignment
and "never the same node twice" are the queue's (a shared spread key per asset). A
``RescueCopy`` row remembers each copy slot: who holds or made it, its magnet link,
checksum and size, and when.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db.base import Base, BigId, utcnow


class RescueAsset(Base):
    """Something to rescue: seed 004's dataset / resource ids, name, path, URL, size, priority."""

    __tablename__ = "rescue_assets"
    __table_args__ = (
        UniqueConstraint("ds_id", "res_id", name="uq_rescue_assets_ds_res"),
        CheckConstraint("status IN ('active', 'retired')", name="status"),
        Index("ix_rescue_assets_priority", "priority", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ds_id: Mapped[str] = mapped_column(String(100))
    res_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(500))
    path: Mapped[str] = mapped_column(String(1000), default="")
    url: Mapped[str] = mapped_column(Text)
    size_mb: Mapped[float | None] = mapped_column(Float, default=None)  # None: unknown
    priority: Mapped[int] = mapped_column(default=100)  # lower first, as seed 004 sorted
    checksum: Mapped[str | None] = mapped_column(String(200), default=None)  # "sha256:<hex>"
    replication_target: Mapped[int] = mapped_column(default=2)
    status: Mapped[str] = mapped_column(String(16), default="active")
    source: Mapped[str] = mapped_column(String(16), default="api")  # api | csv | priorizer
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RescueCopy(Base):
    """One of an asset's copies: its queue job, and what the node that made it reported."""

    __tablename__ = "rescue_copies"
    __table_args__ = (
        UniqueConstraint("asset_id", "replica", name="uq_rescue_copies_asset_replica"),
        CheckConstraint("state IN ('waiting', 'assigned', 'rescued', 'failed')", name="state"),
        Index("ix_rescue_copies_node", "node_id", "state"),
        Index("ix_rescue_copies_job", "job_id"),
        Index("ix_rescue_copies_rescued", "rescued_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("rescue_assets.id", ondelete="CASCADE"))
    replica: Mapped[int] = mapped_column()  # 1..replication_target
    job_id: Mapped[int | None] = mapped_column(BigId, default=None)  # the live queue job
    state: Mapped[str] = mapped_column(String(16), default="waiting")
    node_id: Mapped[str | None] = mapped_column(String(40), default=None)
    assigned_at: Mapped[datetime | None] = mapped_column(default=None)
    rescued_at: Mapped[datetime | None] = mapped_column(default=None)
    magnet_link: Mapped[str | None] = mapped_column(Text, default=None)
    checksum: Mapped[str | None] = mapped_column(String(200), default=None)
    bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    assignments: Mapped[int] = mapped_column(default=0)  # how many times it was handed out


class RescueRanking(Base):
    """The priorizer's last good ranking, used while it is down (seed 004's cache file)."""

    __tablename__ = "rescue_rankings"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)
