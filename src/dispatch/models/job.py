"""Jobs of the durable queue and the history of their attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db.base import Base, BigId, partial, utcnow

JOB_STATES = ("scheduled", "available", "running", "succeeded", "failed", "cancelled")
LIVE_STATES = ("scheduled", "available", "running")
FINISHED_STATES = ("succeeded", "failed", "cancelled")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            "state IN ('scheduled', 'available', 'running', 'succeeded', 'failed', 'cancelled')",
            name="state",
        ),
        # The claim reads only this small index: available jobs in run order.
        Index(
            "ix_jobs_fetch", "queue", "priority", "run_at", "id", **partial("state = 'available'")
        ),
        Index("ix_jobs_scheduled", "run_at", **partial("state = 'scheduled'")),
        Index("ix_jobs_lease", "lease_expires_at", **partial("state = 'running'")),
        Index("ix_jobs_concurrency", "concurrency_key", **partial("state = 'running'")),
        # What one remote node holds (its in-flight count and capacity in use).
        Index("ix_jobs_owner", "lease_owner", **partial("state = 'running'")),
        Index("ix_jobs_finished", "finished_at", **partial("finished_at IS NOT NULL")),
        Index("ix_jobs_kind_state", "kind", "state"),
        # Jobs a remote node may hold only one of (the copies of one asset).
        Index("ix_jobs_spread", "spread_key", **partial("spread_key IS NOT NULL")),
        # Enqueueing a dedupe key that is already live returns the live job instead.
        Index(
            "uq_jobs_dedupe",
            "queue",
            "dedupe_key",
            unique=True,
            **partial("dedupe_key IS NOT NULL AND state IN ('scheduled', 'available', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(100))
    queue: Mapped[str] = mapped_column(String(64), default="default")
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    priority: Mapped[int] = mapped_column(SmallInteger, default=100)
    state: Mapped[str] = mapped_column(String(16), default="available")
    run_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempt: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=20)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), default=None)
    concurrency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    concurrency_limit: Mapped[int | None] = mapped_column(default=None)
    required_capacity: Mapped[int] = mapped_column(BigInteger, default=0)
    required_labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Remote nodes: of the jobs sharing a spread key, a node holds or completes at most one
    # (BOINC's one result per host: each copy of an asset goes to a different node).
    spread_key: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_token: Mapped[str | None] = mapped_column(String(32), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    deadline_at: Mapped[datetime | None] = mapped_column(default=None)
    timeout_seconds: Mapped[int | None] = mapped_column(default=None)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class JobAttempt(Base):
    """One run of a job: who ran it, when, how it ended."""

    __tablename__ = "job_attempts"
    # What one worker or node ran lately (a rescue node's daily cap), and which spread keys
    # it ran (one job of a key per node: a single probe per candidate of a claim).
    __table_args__ = (
        Index("ix_job_attempts_worker_started", "worker", "started_at"),
        Index(
            "ix_job_attempts_spread", "worker", "spread_key", **partial("spread_key IS NOT NULL")
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int]
    worker: Mapped[str] = mapped_column(String(200))
    lease_token: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(20), default="running")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    duration_ms: Mapped[int | None] = mapped_column(default=None)
    spread_key: Mapped[str | None] = mapped_column(String(200), default=None)  # the job's
