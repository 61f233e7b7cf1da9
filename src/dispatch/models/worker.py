"""Queue workers that are alive: each heart-beats its row; silent ones are pruned."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db.base import Base, utcnow


class WorkerRecord(Base):
    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int]
    version: Mapped[str] = mapped_column(String(40))
    queues: Mapped[list[str]] = mapped_column(JSON)
    concurrency: Mapped[int]
    running_job_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
