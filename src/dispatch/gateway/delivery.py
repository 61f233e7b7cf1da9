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
from typing import Any

import structlog
from pydantic import BaseModel

from dispatch.db.base import utcnow
from dispatch.gateway import breakers
from dispatch.gateway.breaker import Breaker, admit, panic_choice
from dispatch.gateway.context import GatewayContext
from dispatch.gateway.mapping import map_payload
from dispatch.gateway.outcomes import Outcome
from dispatch.gateway.plans import (
    BLOCKED,
    GONE,
    PERMANENT,
    RETRYABLE,
    SUCCESS,
    Hop,
    Plan,
    Target,
    Verdict,
)
from dispatch.gateway.redact import RESPONSE_BODY_LIMIT, cap_text, mask_headers
from dispatch.gateway.signing import webhook_headers
from dispatch.queue.errors import PermanentFailure, RetryAfter
from dispatch.queue.policy import retry_after_seconds
from dispatch.queue.registry import HandlerResult, JobContext
from dispatch.security.ssrf import SsrfBlocked, check_url, ssrf_cause

log = structlog.get_logger(__name__)


class DeliverArgs(BaseModel):
    message_id: str


def classify(status: int) -> str:
    """What an HTTP status means for this resource and this task."""
    if 200 <= status < 300:
        return SUCCESS
    if status == 410:
        return GONE
    if status in (408, 429) or status >= 500:
        return RETRYABLE
    return PERMANENT  # other 4xx, and 3xx: redirects are never followed


def _encode(payload: dict[str, Any]) -> bytes:
    # The exact bytes that are signed are the bytes that are sent.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


async def _request(
    ctx: GatewayContext, target: Target, hop: Hop, body: bytes, headers: dict[str, str]
) -> None:
    import aiohttp

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
    plan = await ctx.loader.submit(args.message_id)
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
    await ctx.recorder.submit(Outcome(plan, hops, verdict, job.attempt, context.worker))
    _count(ctx, hops, verdict)
    log.debug(
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
