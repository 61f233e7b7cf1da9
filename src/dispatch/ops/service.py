"""Readiness checks and service information, shared by the API and the admin UI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dispatch import __version__
from dispatch.runtime import Runtime


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    latency_ms: float
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": self.ok, "latency_ms": round(self.latency_ms, 2)}
        if self.error is not None:
            body["error"] = self.error
        return body


Probe = Callable[[], Awaitable[object]]


async def _timed(probe: Probe, limit_seconds: float) -> CheckResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit_seconds):
            await probe()
    except TimeoutError:
        elapsed = (time.perf_counter() - started) * 1000
        return CheckResult(False, elapsed, f"timed out after {limit_seconds}s")
    except Exception as exc:
        return CheckResult(
            False,
            (time.perf_counter() - started) * 1000,
            type(exc).__name__ + ": " + str(exc)[:200],
        )
    return CheckResult(True, (time.perf_counter() - started) * 1000)


async def readiness(runtime: Runtime) -> dict[str, CheckResult]:
    """Probe the database and, when configured, Redis; both run concurrently."""
    timeout = runtime.settings.health_check_timeout_seconds
    probes: dict[str, Probe] = {"database": lambda: runtime.database.ping(timeout)}
    redis = runtime.redis
    if redis is not None:
        probes["redis"] = redis.ping
    results = await asyncio.gather(*(_timed(probe, timeout) for probe in probes.values()))
    return dict(zip(probes, results, strict=True))


def service_info(runtime: Runtime) -> dict[str, Any]:
    settings = runtime.settings
    return {
        "service": settings.app_name,
        "version": __version__,
        "environment": settings.environment,
        "database": settings.database_kind,
        "redis": settings.redis_url is not None,
        "rate_limits_shared": runtime.limiter.shared,
        "uptime_seconds": round(time.time() - runtime.started_at, 1),
    }
