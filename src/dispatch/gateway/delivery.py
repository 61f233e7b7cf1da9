"""``gateway.deliver``: one queue job per task, ordered failover inside each attempt.

An attempt walks the endpoint's resources in sequence, skipping those whose breaker is
open, and stops at the first 2xx. A retryable failure (timeout, connection error, 5xx,
408, 429) moves on to the next resource at once; any other 4xx, or a redirect, is
permanent for that resource; 410 also disables it. When every resource failed, the job
is retried with backoff (or after the largest ``Retry-After`` seen, within bounds) until
the task's attempts are spent. When every breaker is open, the resource that failed
least recently is tried anyway, so tasks are never stranded.

Every request carries the task's ``webhook-id`` (the same across retries and hops) and a
fresh ``webhook-timestamp`` and ``webhook-signature`` (Standard Webhooks).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import structlog
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import utcnow
from dispatch.gateway import alerts, breakers
from dispatch.gateway.breaker import Breaker, Transition, admit, panic_choice
from dispatch.gateway.breaker import record_failure as breaker_failure
from dispatch.gateway.breaker import record_success as breaker_success
from dispatch.gateway.context import GatewayContext
from dispatch.gateway.mapping import DevRule, MappingRule, map_payload
from dispatch.gateway.redact import RESPONSE_BODY_LIMIT, cap_text, mask_headers
from dispatch.gateway.resources import signing_secrets
from dispatch.gateway.search import search_text
from dispatch.gateway.signing import webhook_headers
from dispatch.models import (
    GatewayAttempt,
    GatewayClient,
    GatewayDevRule,
    GatewayEndpoint,
    GatewayEndpointResource,
    GatewayMappingRule,
    GatewayResource,
    GatewayTask,
)
from dispatch.queue.errors import PermanentFailure, RetryAfter
from dispatch.queue.registry import HandlerResult, JobContext
from dispatch.security.ssrf import SsrfBlocked, check_url, ssrf_cause

log = structlog.get_logger(__name__)

RETRYABLE = "retryable"
PERMANENT = "permanent"
GONE = "gone"
BLOCKED = "blocked"
SUCCESS = "success"


class DeliverArgs(BaseModel):
    message_id: str


@dataclass(frozen=True, slots=True)
class Target:
    """A resource as one delivery sees it."""

    id: int
    name: str
    url: str
    method: str
    headers: dict[str, str]
    timeout: float
    secrets: tuple[str, ...]
    required_params: tuple[str, ...]
    rate_per_second: float | None
    concurrency: int | None
    rules: tuple[MappingRule, ...]


@dataclass
class Plan:
    task_id: int
    message_id: str
    series: int
    source: dict[str, Any]
    client_rules: tuple[DevRule, ...]
    endpoint_rules: tuple[DevRule, ...]
    targets: list[Target]
    breakers: dict[int, Breaker]
    search_parts: tuple[Any, ...] = ()


@dataclass
class Hop:
    target: Target
    outcome: str
    started_at: datetime
    payload: dict[str, Any] | None = None
    status_code: int | None = None
    body: str | None = None
    error: str | None = None
    duration_ms: int | None = None
    headers_shown: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None


def classify(status: int) -> str:
    """What an HTTP status means for this resource and this task."""
    if 200 <= status < 300:
        return SUCCESS
    if status == 410:
        return GONE
    if status in (408, 429) or status >= 500:
        return RETRYABLE
    return PERMANENT  # other 4xx, and 3xx: redirects are never followed


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds()) if when.tzinfo else None


def _dev_rule(row: GatewayDevRule) -> DevRule:
    return DevRule(
        target_param=row.target_param,
        override_value=row.override_value,
        condition_param=row.condition_param,
        condition_value=row.condition_value,
        match=row.match,
    )


async def _dev_rules(
    session: AsyncSession, endpoint: GatewayEndpoint | None, client: GatewayClient | None
) -> tuple[tuple[DevRule, ...], tuple[DevRule, ...]]:
    rules = GatewayDevRule
    client_rules: tuple[DevRule, ...] = ()
    endpoint_rules: tuple[DevRule, ...] = ()
    if client is not None and client.dev_rules_enabled:
        rows = await session.scalars(
            select(rules)
            .where(rules.client_id == client.id, rules.active.is_(True))
            .where(
                rules.endpoint_id.is_(None)
                | (rules.endpoint_id == (endpoint.id if endpoint else -1))
            )
            .order_by(rules.position, rules.id)
        )
        client_rules = tuple(_dev_rule(row) for row in rows)
    if endpoint is not None and endpoint.is_development_mode and endpoint.dev_rules_enabled:
        rows = await session.scalars(
            select(rules)
            .where(rules.endpoint_id == endpoint.id, rules.client_id.is_(None))
            .where(rules.active.is_(True))
            .order_by(rules.position, rules.id)
        )
        endpoint_rules = tuple(_dev_rule(row) for row in rows)
    return client_rules, endpoint_rules


async def _targets(session: AsyncSession, endpoint_id: int | None, now: datetime) -> list[Target]:
    if endpoint_id is None:
        return []
    link = GatewayEndpointResource
    resources = list(
        await session.scalars(
            select(GatewayResource)
            .join(link, link.resource_id == GatewayResource.id)
            .where(link.endpoint_id == endpoint_id, GatewayResource.is_active.is_(True))
            .order_by(link.sequence, GatewayResource.id)
        )
    )
    rule_rows = await session.scalars(
        select(GatewayMappingRule)
        .where(GatewayMappingRule.endpoint_id == endpoint_id)
        .order_by(GatewayMappingRule.position, GatewayMappingRule.id)
    )
    rules: dict[int, list[MappingRule]] = {}
    for row in rule_rows:
        rules.setdefault(row.resource_id, []).append(
            MappingRule(row.target_key, row.source_type, row.source_value)
        )
    return [
        Target(
            id=r.id,
            name=r.name,
            url=r.url,
            method=r.method,
            headers=dict(r.headers),
            timeout=r.timeout_seconds,
            secrets=signing_secrets(r, now),
            required_params=tuple(r.required_params),
            rate_per_second=r.rate_limit_per_second,
            concurrency=r.concurrency_limit,
            rules=tuple(rules.get(r.id, ())),
        )
        for r in resources
    ]


async def load_plan(session: AsyncSession, message_id: str, now: datetime) -> Plan | None:
    """Mark the task processing and read everything its delivery needs; None to skip it."""
    task = await session.scalar(
        select(GatewayTask).where(GatewayTask.message_id == message_id).with_for_update()
    )
    if task is None or task.status not in ("pending", "processing"):
        return None  # deleted, stopped, held or already delivered: nothing to do
    task.status = "processing"
    task.updated_at = now
    endpoint = await session.get(GatewayEndpoint, task.endpoint_id) if task.endpoint_id else None
    client = await session.get(GatewayClient, task.client_id) if task.client_id else None
    client_rules, endpoint_rules = await _dev_rules(session, endpoint, client)
    targets = await _targets(session, task.endpoint_id, now)
    return Plan(
        task_id=task.id,
        message_id=task.message_id,
        series=task.series,
        source=dict(task.source_payload),
        client_rules=client_rules,
        endpoint_rules=endpoint_rules,
        targets=targets,
        breakers=await breakers.load(session, [t.id for t in targets]),
        search_parts=(
            task.ref,
            task.scope,
            task.client_name,
            task.endpoint_path,
            task.message_id,
            task.source_payload,
        ),
    )


def _encode(payload: dict[str, Any]) -> bytes:
    # The exact bytes that are signed are the bytes that are sent.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


async def _request(
    ctx: GatewayContext, target: Target, hop: Hop, body: bytes, headers: dict[str, str]
) -> None:
    started = time.perf_counter()
    try:
        async with ctx.http.request(
            target.method,
            target.url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=target.timeout),
            allow_redirects=False,
        ) as response:
            raw = await response.content.read(RESPONSE_BODY_LIMIT)
            hop.status_code = response.status
            hop.body = cap_text(raw)
            hop.outcome = classify(response.status)
            if hop.outcome != SUCCESS:
                hop.error = f"HTTP {response.status}"
                hop.retry_after = retry_after_seconds(
                    response.headers.get("Retry-After"), hop.started_at
                )
    except TimeoutError:
        hop.outcome, hop.error = RETRYABLE, f"timed out after {target.timeout:g} s"
    except SsrfBlocked as exc:  # the resolver or the socket factory refused the address
        hop.outcome, hop.error = BLOCKED, str(exc)
    except aiohttp.ClientError as exc:
        blocked = ssrf_cause(exc)
        if blocked is not None:
            hop.outcome, hop.error = BLOCKED, str(blocked)
        else:
            hop.outcome, hop.error = RETRYABLE, f"{type(exc).__name__}: {exc}"
    finally:
        hop.duration_ms = int((time.perf_counter() - started) * 1000)


async def send(ctx: GatewayContext, plan: Plan, target: Target, attempt: int) -> Hop:
    """Map, sign and send the task to one resource; the hop says how it went."""
    now = utcnow()
    hop = Hop(target=target, outcome=PERMANENT, started_at=now)
    mapped = map_payload(
        plan.source,
        client_rules=plan.client_rules,
        endpoint_rules=plan.endpoint_rules,
        mapping_rules=target.rules,
        now=now,
    )
    hop.payload = mapped.target
    missing = [name for name in target.required_params if name not in mapped.target]
    if missing:
        hop.error = f"missing required parameter(s) for this resource: {', '.join(missing)}"
        return hop
    try:
        check_url(target.url, ctx.addresses)
    except (SsrfBlocked, ValueError) as exc:
        hop.outcome, hop.error = BLOCKED, str(exc)
        return hop
    wait = ctx.rate_wait(target.id, target.rate_per_second)
    if wait > 0:
        await asyncio.sleep(wait)
    body = _encode(mapped.target)
    headers = {
        **target.headers,
        "Content-Type": "application/json",
        "Idempotency-Key": plan.message_id,
        "X-Dispatch-Task": str(plan.task_id),
        "X-Dispatch-Attempt": str(attempt),
        **webhook_headers(target.secrets, plan.message_id, body, int(time.time())),
    }
    hop.headers_shown = mask_headers(headers)
    slots = ctx.slots(target.id, target.concurrency)
    if slots is None:
        await _request(ctx, target, hop, body, headers)
    else:
        async with slots:
            await _request(ctx, target, hop, body, headers)
    return hop


async def _take_trial(ctx: GatewayContext, target: Target, seen: Breaker, new: Breaker) -> bool:
    async with ctx.database.session() as session:
        return await breakers.store_if_unchanged(session, target.id, seen, new, utcnow())


async def run_plan(ctx: GatewayContext, plan: Plan, attempt: int) -> tuple[list[Hop], list[str]]:
    """Walk the failover sequence; the hops made and the resources skipped by their breaker."""
    hops: list[Hop] = []
    skipped: list[str] = []
    for target in plan.targets:
        seen = plan.breakers.get(target.id, Breaker())
        verdict = admit(seen, utcnow(), ctx.breaker)
        if not verdict.allowed or (
            verdict.trial and not await _take_trial(ctx, target, seen, verdict.breaker)
        ):
            skipped.append(target.name)
            continue
        hop = await send(ctx, plan, target, attempt)
        hops.append(hop)
        if hop.outcome == SUCCESS:
            return hops, skipped
    if not hops and plan.targets:
        # Every breaker is open: probe the resource that failed least recently.
        chosen = panic_choice([(t, plan.breakers.get(t.id, Breaker())) for t in plan.targets])
        if chosen is not None:
            hops.append(await send(ctx, plan, chosen, attempt))
    return hops, skipped


def _counts_against_breaker(hop: Hop) -> bool | None:
    """True: a failure of the resource; False: a success; None: says nothing about it."""
    if hop.outcome == SUCCESS:
        return False
    if hop.outcome == RETRYABLE:
        return True
    return None


async def _record_breakers(
    session: AsyncSession, ctx: GatewayContext, hops: list[Hop], now: datetime
) -> list[tuple[Target, Transition]]:
    transitions = []
    for hop in hops:
        failed = _counts_against_breaker(hop)
        if failed is None:
            continue
        change = (
            (lambda b: breaker_failure(b, now, ctx.breaker))
            if failed
            else (lambda b: breaker_success(b, now, ctx.breaker))
        )
        _, transition = await breakers.apply(session, hop.target.id, change, now)
        if transition is not None:
            transitions.append((hop.target, transition))
    return transitions


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # success | pending | failed
    error: str | None
    delay: float = 0.0


def decide(
    hops: list[Hop],
    skipped: list[str],
    attempt: int,
    max_attempts: int,
    backoff: float,
    retry_after_cap: float,
) -> Verdict:
    """What happens to the task after one attempt (pure)."""
    if hops and hops[-1].outcome == SUCCESS:
        return Verdict("success", None)
    errors = [f"{h.target.name}: {h.error}" for h in hops] + [
        f"{name}: circuit open" for name in skipped
    ]
    error = "; ".join(errors) or "the endpoint has no active resources"
    retryable = not hops or bool(skipped) or any(h.outcome == RETRYABLE for h in hops)
    if not retryable:
        return Verdict("failed", f"Permanent failure: {error}")
    if attempt >= max_attempts:
        return Verdict("failed", f"Max retries reached. Final error: {error}")
    hints = [h.retry_after for h in hops if h.retry_after is not None]
    delay = max([backoff, *(min(h, retry_after_cap) for h in hints)])
    return Verdict("pending", error, delay)


def _attempt_row(plan: Plan, hop: Hop, attempt: int, hop_index: int, worker: str) -> GatewayAttempt:
    return GatewayAttempt(
        task_id=plan.task_id,
        series=plan.series,
        attempt=attempt,
        hop=hop_index,
        resource_id=hop.target.id,
        resource_name=hop.target.name,
        request_method=hop.target.method,
        request_url=hop.target.url,
        request_headers=hop.headers_shown,
        status_code=hop.status_code,
        response_body=hop.body,
        outcome=hop.outcome,
        error=hop.error,
        duration_ms=hop.duration_ms,
        worker=worker or None,
        started_at=hop.started_at,
    )


async def record(
    ctx: GatewayContext,
    plan: Plan,
    hops: list[Hop],
    verdict: Verdict,
    attempt: int,
    worker: str,
) -> list[tuple[Target, Transition]]:
    """Store the hops, the breakers' new states and the task's state, in one transaction."""
    now = utcnow()
    async with ctx.database.session() as session:
        for index, hop in enumerate(hops):
            session.add(_attempt_row(plan, hop, attempt, index, worker))
        transitions = await _record_breakers(session, ctx, hops, now)
        for target, transition in transitions:
            await alerts.note_transition(session, ctx, target.id, transition, now)
        for hop in hops:
            if hop.outcome == GONE:
                await session.execute(
                    update(GatewayResource)
                    .where(GatewayResource.id == hop.target.id)
                    .values(
                        is_active=False,
                        disabled_reason=f"disabled: answered 410 Gone at {now.isoformat()}",
                    )
                )
        last = hops[-1] if hops else None
        values: dict[str, Any] = {
            "status": verdict.status,
            "last_error": verdict.error,
            "updated_at": now,
            "attempts": GatewayTask.attempts + len(hops),
            "next_attempt_at": now + timedelta(seconds=verdict.delay)
            if verdict.status == "pending"
            else None,
        }
        if last is not None:
            values.update(
                resource_id=last.target.id,
                resource_name=last.target.name,
                target_payload=last.payload,
                last_status_code=last.status_code,
                search_text=search_text((*plan.search_parts, last.target.name, last.payload)),
            )
        if verdict.status == "success":
            values["delivered_at"] = now
        # Only the task this job is delivering, and only if nobody stopped or deleted it meanwhile.
        await session.execute(
            update(GatewayTask)
            .where(GatewayTask.id == plan.task_id, GatewayTask.status == "processing")
            .values(**values)
        )
    return transitions


def _count(ctx: GatewayContext, hops: list[Hop], verdict: Verdict) -> None:
    metrics = ctx.metrics
    if metrics is None:
        return
    for hop in hops:
        metrics.gateway_requests.labels(hop.target.name, hop.outcome).inc()
        if hop.duration_ms is not None:
            metrics.gateway_request_seconds.labels(hop.target.name).observe(hop.duration_ms / 1000)
    if verdict.status == "success" and len(hops) > 1:
        metrics.gateway_failovers.inc()


async def deliver(ctx: GatewayContext, context: JobContext, args: DeliverArgs) -> HandlerResult:
    """The ``gateway.deliver`` handler."""
    async with ctx.database.session() as session:
        plan = await load_plan(session, args.message_id, utcnow())
    if plan is None:
        return {"skipped": True}
    job = context.job
    hops, skipped = await run_plan(ctx, plan, job.attempt)
    verdict = decide(
        hops,
        skipped,
        job.attempt,
        job.max_attempts,
        ctx.retry.backoff(job.attempt),
        ctx.settings.gateway_retry_after_max_seconds,
    )
    await record(ctx, plan, hops, verdict, job.attempt, context.worker)
    _count(ctx, hops, verdict)
    log.info(
        "gateway.delivered" if verdict.status == "success" else "gateway.delivery_failed",
        task_id=plan.task_id,
        attempt=job.attempt,
        hops=len(hops),
        status=verdict.status,
    )
    if verdict.status == "pending":
        raise RetryAfter(verdict.delay, verdict.error or "delivery failed")
    if verdict.status == "failed":
        raise PermanentFailure(verdict.error or "delivery failed")
    last = hops[-1]
    return {"task_id": plan.task_id, "resource": last.target.name, "status_code": last.status_code}


__all__ = ["DeliverArgs", "Hop", "Plan", "Target", "classify", "decide", "deliver", "replace"]
