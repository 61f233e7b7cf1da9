"""Request and response bodies of ``/api/v1/nodes``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
QueueName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Capacity = Annotated[
    int, Field(ge=0, le=2**53, description="In the unit the jobs use (MB of disk for data rescue)")
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeRegister(_Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    capacity: Capacity
    labels: list[Label] = Field(default_factory=list, max_length=50)
    queues: list[QueueName] | None = Field(
        default=None,
        max_length=20,
        description="Queues to serve; default: every NODE_QUEUES queue but RESCUE_QUEUE",
    )
    max_in_flight: int = Field(default=4, ge=1, le=1000)
    version: Annotated[str, StringConstraints(max_length=64)] | None = None


class NodeUpdate(_Strict):
    enabled: bool | None = None
    capacity: Capacity | None = None
    max_in_flight: int | None = Field(default=None, ge=1, le=1000)
    labels: list[Label] | None = Field(default=None, max_length=50)
    queues: list[QueueName] | None = Field(default=None, max_length=20)


class NodeOut(BaseModel):
    id: str
    name: str
    status: Literal["active", "offline"]
    enabled: bool
    capacity: int
    capacity_used: int
    in_flight: int
    max_in_flight: int
    labels: list[str]
    queues: list[str]
    version: str | None
    token_prefix: str
    registered_at: datetime
    last_seen_at: datetime


class NodeList(BaseModel):
    items: list[NodeOut]


class Timing(BaseModel):
    lease_seconds: float
    heartbeat_seconds: float = Field(description="Heart-beat at least this often to keep leases")


class NodeRegistered(NodeOut, Timing):
    token: str = Field(description="The node's token: shown only now, stored hashed")


class ClaimIn(_Strict):
    limit: int = Field(default=1, ge=1, le=100)
    capacity: Capacity | None = Field(
        default=None, description="The node's current capacity, if it changed"
    )


class LeasedJob(BaseModel):
    id: int
    kind: str
    queue: str
    args: dict[str, Any]
    attempt: int
    max_attempts: int
    required_capacity: int
    lease_token: str
    lease_expires_at: datetime
    deadline_at: datetime | None


class ClaimOut(Timing):
    jobs: list[LeasedJob]


class RunningReport(_Strict):
    job_id: int
    lease_token: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    progress: dict[str, Any] | None = None


class HeartbeatIn(_Strict):
    capacity: Capacity | None = None
    running: list[RunningReport] = Field(default_factory=list, max_length=1000)


class HeartbeatOut(Timing):
    extended: list[int] = Field(description="Jobs whose leases were extended")
    cancelled: list[int] = Field(description="Jobs to stop: an operator cancelled them")
    lost: list[int] = Field(description="Reported jobs this node no longer holds: drop them")
    lease_expires_at: datetime | None


class LeaseIn(_Strict):
    lease_token: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ProgressIn(LeaseIn):
    progress: dict[str, Any]


class CompleteIn(LeaseIn):
    result: dict[str, Any] | None = None


class FailIn(LeaseIn):
    error: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
    retry_after_seconds: float | None = Field(
        default=None, ge=0, le=86_400, description="Retry no sooner than this"
    )
    permanent: bool = Field(default=False, description="Do not retry: the job cannot succeed")


class OutcomeOut(BaseModel):
    job_id: int
    state: str
    run_at: datetime | None = None
