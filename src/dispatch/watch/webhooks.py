"""A user's webhook alerts go through the gateway, so they get its failover, retries and
Standard Webhooks signatures instead of a second HTTP client.

Each user with ``webhook_urls`` owns a gateway endpoint ``watch-alerts/user-<id>`` whose
resources are those URLs in failover order, all signing with one secret the user can read
at ``GET /api/v1/me/webhook``. A due webhook notification becomes a task of that endpoint
(written in the same transaction as the notification's move to ``queued``, with the
notification as its idempotency key), and the task's attempts say how delivery went.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.config import Settings
from dispatch.gateway import ingest
from dispatch.gateway.directory import EndpointView
from dispatch.gateway.signing import new_secret
from dispatch.models import (
    GatewayBreaker,
    GatewayEndpoint,
    GatewayEndpointResource,
    GatewayResource,
    User,
    WatchEvent,
    WatchNotification,
)

PATH = "watch-alerts/user-{user_id}"
RESOURCE_NAME = "watch-alerts-user-{user_id}-{position}"
TIMEOUT_SECONDS = 10.0


def endpoint_path(user_id: int) -> str:
    return PATH.format(user_id=user_id)


async def _endpoint(session: AsyncSession, user_id: int) -> GatewayEndpoint | None:
    found: GatewayEndpoint | None = await session.scalar(
        select(GatewayEndpoint).where(GatewayEndpoint.path == endpoint_path(user_id))
    )
    return found


async def _resources(session: AsyncSession, endpoint_id: int) -> list[GatewayResource]:
    rows = await session.scalars(
        select(GatewayResource)
        .join(GatewayEndpointResource, GatewayEndpointResource.resource_id == GatewayResource.id)
        .where(GatewayEndpointResource.endpoint_id == endpoint_id)
        .order_by(GatewayEndpointResource.sequence)
    )
    return list(rows.all())


async def configure(session: AsyncSession, user: User, urls: list[str], now: datetime) -> None:
    """Make the user's endpoint and resources match ``urls`` (none: the endpoint is off)."""
    endpoint = await _endpoint(session, user.id)
    if endpoint is None:
        if not urls:
            return
        endpoint = GatewayEndpoint(
            path=endpoint_path(user.id),
            description=f"Watch alerts of user {user.id}",
            required_params=[],
            is_active=True,
            created_at=now,
            updated_at=now,
        )
        session.add(endpoint)
        await session.flush()
    existing = await _resources(session, endpoint.id)
    secret = existing[0].signing_secret if existing else new_secret()
    for position, url in enumerate(urls):
        if position < len(existing):
            existing[position].url, existing[position].updated_at = url, now
            continue
        resource = GatewayResource(
            name=RESOURCE_NAME.format(user_id=user.id, position=position + 1),
            url=url,
            method="POST",
            headers={},
            timeout_seconds=TIMEOUT_SECONDS,
            required_params=[],
            is_active=True,
            signing_secret=secret,
            created_at=now,
            updated_at=now,
        )
        session.add(resource)
        await session.flush()
        session.add(GatewayBreaker(resource_id=resource.id, changed_at=now))
        session.add(
            GatewayEndpointResource(
                endpoint_id=endpoint.id, resource_id=resource.id, sequence=position
            )
        )
    for extra in existing[len(urls) :]:
        await session.execute(delete(GatewayResource).where(GatewayResource.id == extra.id))
    endpoint.is_active = bool(urls)
    endpoint.updated_at = now


async def remove(session: AsyncSession, user_id: int) -> None:
    """Delete the user's endpoint and resources (the user is being deleted)."""
    endpoint = await _endpoint(session, user_id)
    if endpoint is None:
        return
    for resource in await _resources(session, endpoint.id):
        await session.execute(delete(GatewayResource).where(GatewayResource.id == resource.id))
    await session.execute(delete(GatewayEndpoint).where(GatewayEndpoint.id == endpoint.id))


async def describe(session: AsyncSession, user: User, enabled: bool) -> dict[str, Any]:
    endpoint = await _endpoint(session, user.id)
    resources = await _resources(session, endpoint.id) if endpoint else []
    return {
        "enabled": enabled and bool(resources),
        "urls": [resource.url for resource in resources],
        "endpoint_id": endpoint.id if endpoint else None,
        "signing_secret": resources[0].signing_secret if resources else None,
    }


def body(event: WatchEvent) -> dict[str, Any]:
    """What a webhook carries: the event as ``GET /api/v1/events`` shows it."""
    return {
        "type": event.type,
        "event": {
            "id": event.id,
            "user_id": event.user_id,
            "type": event.type,
            "rule_id": event.rule_id,
            "listing_id": event.product_id,
            "payload": event.payload,
            "created_at": event.created_at.isoformat(),
        },
    }


async def hand_over(
    session: AsyncSession,
    settings: Settings,
    rows: list[WatchNotification],
    events: dict[int, WatchEvent],
) -> int:
    """Queue the gateway task of each claimed webhook notification; returns how many."""
    queued = 0
    for row in rows:
        endpoint = await _endpoint(session, row.user_id)
        event = events.get(row.event_id)
        if endpoint is None or not endpoint.is_active or event is None:
            row.status, row.error = "skipped", "no webhook URL is configured"
            continue
        view = EndpointView(
            id=endpoint.id,
            path=endpoint.path,
            required_params=(),
            is_active=True,
            holds=False,
            max_attempts=None,
            client_ids=frozenset(),
        )
        request = ingest.Request(view, None, body(event), f"watch-notification-{row.id}")
        (accepted,) = await ingest.store_many(
            session, [request], settings.gateway_max_attempts, settings.gateway_queue
        )
        row.status, row.gateway_task_id, row.error = "queued", accepted.task_id, None
        queued += 1
    return queued
