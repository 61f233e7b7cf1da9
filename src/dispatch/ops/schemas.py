from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class CheckOut(BaseModel):
    ok: bool
    latency_ms: float
    error: str | None = None


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, CheckOut]


class RootOut(BaseModel):
    service: str
    message: str
    version: str
    docs: str


class ServiceInfoOut(BaseModel):
    service: str
    version: str
    environment: str
    database: str
    redis: bool
    rate_limits_shared: bool
    uptime_seconds: float
