"""Remote nodes: machines outside the service that lease queue jobs over HTTP."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db.base import Base, utcnow

NODE_STATUSES = ("active", "offline")


class Node(Base):
    """A registered node; its token is stored as a SHA-256 hash, shown once at registration.

    ``capacity`` is what the node offers in total (for data rescue: free disk in MB);
    the jobs it holds never need more than that together, nor more than
    ``max_in_flight`` of them at once.
    """

    __tablename__ = "nodes"
    __table_args__ = (Index("ix_nodes_status_last_seen", "status", "last_seen_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, default=None)  # seed 004's
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(16))
    capacity: Mapped[int] = mapped_column(BigInteger, default=0)
    labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    queues: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_in_flight: Mapped[int] = mapped_column(default=4)
    enabled: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    version: Mapped[str | None] = mapped_column(String(64), default=None)
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def owner(self) -> str:
        """The lease owner recorded on the jobs it holds and on their attempts."""
        return lease_owner(self.id)


def lease_owner(node_id: str) -> str:
    return f"node:{node_id}"
