from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

JobState = Literal["scheduled", "available", "running", "succeeded", "failed", "cancelled"]


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    worker: str
    outcome: str
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    queue: str
    state: JobState
    priority: int
    args: dict[str, Any]
    attempt: int
    max_attempts: int
    run_at: datetime
    dedupe_key: str | None
    concurrency_key: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    last_error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobDetail(JobOut):
    attempts: list[AttemptOut]


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class WorkerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    hostname: str
    pid: int
    version: str
    queues: list[str]
    concurrency: int
    running_job_ids: list[int]
    started_at: datetime
    heartbeat_at: datetime


class WorkerList(BaseModel):
    items: list[WorkerOut]
