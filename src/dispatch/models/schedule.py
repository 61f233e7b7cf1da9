"""Recurring jobs: one row per schedule, holding the next slot to enqueue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db.base import Base, utcnow


class Schedule(Base):
    __tablename__ = "schedules"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    expression: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(100))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    queue: Mapped[str] = mapped_column(String(64), default="default")
    next_run_at: Mapped[datetime] = mapped_column(index=True)
    last_job_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), default=None
    )
    skipped: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
