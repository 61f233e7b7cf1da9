"""Active health checks: seed 002's ``simple`` (TCP connect) and ``actual`` (a real request).

A sweep, scheduled every few seconds, enqueues one ``gateway.health_check`` job per due
resource (deduplicated, so checks never stack) and moves its next check to a random
moment in its interval. A check's result is kept (the whole history, pruned by
retention) and fed to the resource's breaker, whose changes may raise alerts.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import utcnow
from dispatch.errors import Conflict, NotFound
from dispatch.gateway import alerts, breakers
from dispatch.gateway.breaker import record_probe
from dispatch.gateway.context import GatewayContext
from dispatch.gateway.mapping import JSONValue, render_json
from dispatch.gateway.redact import cap_text
from dispatch.gateway.schemas import HealthCheckOut
from dispatch.gateway.signing import new_message_id
from dispatch.models import GatewayHealthCheck, GatewayResource
from dispatch.queue import service as queue
from dispatch.queue.service import JobSpec
from dispatch.security.ssrf import SsrfBlocked, check_url, open_guarded_connection

CHECK_KIND = "gateway.health_check"
SWEEP_KIND = "gateway.health_sweep"
SWEEP_EVERY = "@every 5s"
TCP_TIMEOUT_SECONDS = 3.0
REQUEST_TIMEOUT_SECONDS = 10.0
SWEEP_BATCH = 200


@dataclass(frozen=True, slots=True)
class ProbeResult:
    success: bool
    status_code: int | None
    detail: str
    duration_ms: int


def fill_placeholders(values: Any, resource_name: str, resource_url: str, now: datetime) -> Any:
    """Seed 002's placeholders: ``{datetime}``, ``{resource_name}``, ``{resource_endpoint}``,
    ``{param:KEY}`` (another test value), in every string of the test values."""
    names: dict[str, JSONValue] = {
        "datetime": now.isoformat(),
        "resource_name": resource_name,
        "resource_endpoint": resource_url,
    }
    if isinstance(values, dict):
        for key, value in values.items():
            if isinstance(value, str | int | float | bool) or value is None:
                names[f"param:{key}"] = value
    return render_json(values, names, now=now, new_uuid=new_message_id)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


async def _tcp(ctx: GatewayContext, resource: GatewayResource) -> ProbeResult:
    started = time.perf_counter()
    host, port = _host_port(resource.url)
    address, _ = await open_guarded_connection(host, port, ctx.addresses, TCP_TIMEOUT_SECONDS)
    elapsed = int((time.perf_counter() - started) * 1000)
    return ProbeResult(True, None, f"TCP connect to {address}:{port} succeeded", elapsed)


async def _request(ctx: GatewayContext, resource: GatewayResource, now: datetime) -> ProbeResult:
    import aiohttp

    started = time.perf_counter()
    check_url(resource.url, ctx.addresses)
    body = fill_placeholders(resource.health_check_test_values, resource.name, resource.url, now)
    headers = {**resource.headers, "X-Health-Check": "1"}
    try:
        async with ctx.http.request(
            resource.method,
            resource.url,
            json=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
            allow_redirects=False,
        ) as response:
            text = cap_text(await response.content.read(2000))
    except aiohttp.ClientError as exc:
        elapsed = int((time.perf_counter() - started) * 1000)
        return ProbeResult(False, None, f"{type(exc).__name__}: {exc}"[:500], elapsed)
    elapsed = int((time.perf_counter() - started) * 1000)
    ok = 200 <= response.status < 300
    return ProbeResult(ok, response.status, f"HTTP {response.status}: {text[:200]}", elapsed)


async def probe(ctx: GatewayContext, resource: GatewayResource, now: datetime) -> ProbeResult:
    """Run the resource's check; never raises (a failure is a failed result)."""
    started = time.perf_counter()
    try:
        if resource.health_check_method == "actual":
            return await _request(ctx, resource, now)
        return await _tcp(ctx, resource)
    except SsrfBlocked as exc:
        detail = f"refused: {exc}"
    except TimeoutError:
        detail = "timed out"
    except (OSError, ValueError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
    return ProbeResult(False, None, detail[:500], int((time.perf_counter() - started) * 1000))


async def record(
    session: AsyncSession,
    ctx: GatewayContext,
    resource: GatewayResource,
    result: ProbeResult,
    now: datetime,
    *,
    manual: bool,
) -> str:
    """Keep the result, feed the breaker (and alerts); returns the breaker's state."""
    cfg = replace(
        ctx.breaker,
        healthy_threshold=resource.healthy_threshold,
        unhealthy_threshold=resource.unhealthy_threshold,
    )
    breaker, transition = await breakers.apply(
        session, resource.id, lambda b: record_probe(b, result.success, now, cfg), now
    )
    if transition is not None:
        await alerts.note_transition(session, ctx, resource.id, transition, now)
    session.add(
        GatewayHealthCheck(
            resource_id=resource.id,
            method=resource.health_check_method,
            manual=manual,
            success=result.success,
            status_code=result.status_code,
            detail=result.detail,
            duration_ms=result.duration_ms,
            breaker_state=str(breaker.state),
            checked_at=now,
        )
    )
    resource.last_checked_at = now
    resource.latest_health_check_result = {
        "success": result.success,
        "status_code": result.status_code,
        "detail": result.detail[:200],
    }
    return str(breaker.state)


def next_check(resource: GatewayResource, now: datetime) -> datetime:
    """Somewhere in the resource's interval, so checks of many resources spread out."""
    low = resource.health_check_interval_min
    high = max(low, resource.health_check_interval_max)
    return now + timedelta(seconds=random.uniform(low, high))  # noqa: S311 (jitter, not security)


async def sweep(session: AsyncSession, queue_name: str, now: datetime) -> int:
    """Enqueue a check for every resource that is due; how many were enqueued."""
    due = await session.scalars(
        select(GatewayResource)
        .where(
            GatewayResource.health_check_enabled.is_(True),
            GatewayResource.is_active.is_(True),
            GatewayResource.next_health_check_at <= now,
        )
        .order_by(GatewayResource.next_health_check_at)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
    )
    count = 0
    for resource in due:
        spec = JobSpec(
            CHECK_KIND,
            {"resource_id": resource.id},
            queue=queue_name,
            max_attempts=1,
            dedupe_key=f"{CHECK_KIND}:{resource.id}",
        )
        await queue.enqueue(session, spec)
        resource.next_health_check_at = next_check(resource, now)
        count += 1
    return count


_checking: set[int] = set()  # resources with a manual check running in this process


async def check_now(ctx: GatewayContext, resource_id: int) -> tuple[ProbeResult, str]:
    """A manual check (API and UI): probe outside any transaction, then record it.

    One at a time per resource and process (Conflict otherwise). No transaction is open
    while the probe waits on the network: on SQLite that would hold the write lock.
    """
    async with ctx.database.session(write=False) as session:
        resource = await session.get(GatewayResource, resource_id)
    if resource is None:
        raise NotFound(f"Resource {resource_id} not found")
    if resource_id in _checking:
        raise Conflict("A check of this resource is already running")
    _checking.add(resource_id)
    try:
        result = await probe(ctx, resource, utcnow())
    finally:
        _checking.discard(resource_id)
    async with ctx.database.session() as session:
        fresh = await session.get(GatewayResource, resource_id)
        if fresh is None:
            raise NotFound(f"Resource {resource_id} not found")
        state = await record(session, ctx, fresh, result, utcnow(), manual=True)
    return result, state


async def history(
    session: AsyncSession, resource_id: int, limit: int, since: datetime | None = None
) -> list[HealthCheckOut]:
    """A resource's health checks, newest first."""
    query = select(GatewayHealthCheck).where(GatewayHealthCheck.resource_id == resource_id)
    if since is not None:
        query = query.where(GatewayHealthCheck.checked_at >= since)
    rows = await session.scalars(
        query.order_by(GatewayHealthCheck.checked_at.desc(), GatewayHealthCheck.id.desc()).limit(
            limit
        )
    )
    return [HealthCheckOut.model_validate(row) for row in rows]
