"""Failure alerts: on breaker state changes only, by email and webhook, through the queue.

A resource going down (its breaker opening) or coming back (closing) enqueues one
``gateway.alert`` job per channel it has configured, in the same transaction as the
state change. A "down" alert is suppressed when the resource alerted within
``GATEWAY_ALERT_SUPPRESSION_SECONDS``, so a flapping resource cannot flood anyone.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import utcnow
from dispatch.gateway import settings_store
from dispatch.gateway.breaker import State, Transition
from dispatch.gateway.mapping import JSONValue, render_json
from dispatch.gateway.resources import signing_secrets
from dispatch.gateway.signing import new_message_id, webhook_headers
from dispatch.models import GatewayResource
from dispatch.queue import service as queue
from dispatch.queue.errors import PermanentFailure
from dispatch.queue.service import JobSpec
from dispatch.security.ssrf import SsrfBlocked, check_url

if TYPE_CHECKING:  # the context builds this module's batcher: no import at run time
    from dispatch.gateway.context import GatewayContext

ALERT_KIND = "gateway.alert"
DEFAULT_SUBJECT = 'Dispatchapy Alert: Resource "{resource_name}" is {state_word}'
DEFAULT_BODY = (
    "Resource {resource_name} ({resource_endpoint}) is {state_word} as of {timestamp_utc}.\n"
    "Reason: {reason}\n"
)


class AlertArgs(BaseModel):
    resource_id: int
    channel: Literal["email", "webhook"]
    event: Literal["down", "up"]
    reason: str
    at: datetime


def event_of(transition: Transition) -> Literal["down", "up"] | None:
    """Opening is "down", closing is "up"; half-open is no news."""
    if transition.new == State.OPEN and transition.old == State.CLOSED:
        return "down"
    if transition.new == State.CLOSED:
        return "up"
    return None


async def note_transition(
    session: AsyncSession,
    ctx: GatewayContext,
    resource_id: int,
    transition: Transition,
    now: datetime,
) -> int:
    """Enqueue the alerts a breaker change calls for; how many were enqueued."""
    event = event_of(transition)
    resource = await session.get(GatewayResource, resource_id)
    if event is None or resource is None:
        return 0
    channels = []
    if resource.send_failure_email and resource.notification_email:
        channels.append("email")
    if resource.send_failure_webhook and resource.failure_webhook_url:
        channels.append("webhook")
    if not channels:
        return 0
    window = timedelta(seconds=ctx.settings.gateway_alert_suppression_seconds)
    last = resource.last_alert_at
    if event == "down" and last is not None and now - last < window:
        return 0
    if event == "up" and last is None:
        return 0  # nobody was told it was down
    for channel in channels:
        args = AlertArgs(
            resource_id=resource_id, channel=channel, event=event, reason=transition.reason, at=now
        )
        spec = JobSpec(
            ALERT_KIND,
            args.model_dump(mode="json"),
            queue=ctx.settings.gateway_queue,
            max_attempts=5,
        )
        await queue.enqueue(session, spec)
    resource.last_alert_at = now if event == "down" else None
    return len(channels)


def _names(resource: GatewayResource, args: AlertArgs) -> dict[str, JSONValue]:
    return {
        "resource_name": resource.name,
        "resource_endpoint": resource.url,
        "timestamp_utc": args.at.isoformat(),
        "datetime": args.at.isoformat(),
        "state": "down" if args.event == "down" else "up",
        "state_word": "DOWN" if args.event == "down" else "UP again",
        "event": args.event,
        "reason": args.reason,
    }


def _fill(value: Any, names: dict[str, JSONValue], now: datetime) -> Any:
    return render_json(value, names, now=now, new_uuid=new_message_id)


async def _email(ctx: GatewayContext, resource: GatewayResource, args: AlertArgs) -> str:
    async with ctx.database.session(write=False) as session:
        smtp = await settings_store.load(session)
    names = _names(resource, args)
    now = utcnow()
    subject = _fill(resource.notification_subject or DEFAULT_SUBJECT, names, now)
    body = _fill(resource.notification_template or DEFAULT_BODY, names, now)
    recipients = [a.strip() for a in (resource.notification_email or "").split(",") if a.strip()]
    try:
        await settings_store.send_email(smtp, recipients, subject, body)
    except settings_store.SmtpNotConfigured as exc:
        raise PermanentFailure(str(exc)) from exc
    return f"sent to {len(recipients)} recipient(s)"


async def _webhook(ctx: GatewayContext, resource: GatewayResource, args: AlertArgs) -> str:
    url = resource.failure_webhook_url or ""
    names = _names(resource, args)
    template = resource.failure_webhook_payload or {
        "event": "resource.{event}",
        "resource": "{resource_name}",
        "endpoint": "{resource_endpoint}",
        "reason": "{reason}",
        "at": "{timestamp_utc}",
    }
    payload = _fill(template, names, utcnow())
    body = json.dumps(payload, separators=(",", ":")).encode()
    try:
        check_url(url, ctx.addresses)
    except (SsrfBlocked, ValueError) as exc:
        raise PermanentFailure(f"alert webhook refused: {exc}") from exc
    headers = {
        **resource.failure_webhook_headers,
        "Content-Type": "application/json",
        **webhook_headers(
            signing_secrets(resource, utcnow()), new_message_id(), body, int(time.time())
        ),
    }
    import aiohttp

    try:
        async with ctx.http.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=10),
            allow_redirects=False,
        ) as response:
            status = response.status
    except SsrfBlocked as exc:
        raise PermanentFailure(f"alert webhook refused: {exc}") from exc
    if not 200 <= status < 300:
        raise RuntimeError(f"alert webhook answered HTTP {status}")
    return f"HTTP {status}"


async def send(ctx: GatewayContext, args: AlertArgs) -> dict[str, Any]:
    """The ``gateway.alert`` handler: one channel, retried by the queue on failure."""
    async with ctx.database.session(write=False) as session:
        resource = await session.get(GatewayResource, args.resource_id)
    if resource is None:
        return {"skipped": "resource deleted"}
    outcome = await (_email if args.channel == "email" else _webhook)(ctx, resource, args)
    return {"channel": args.channel, "event": args.event, "outcome": outcome}
