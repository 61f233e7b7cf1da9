"""Resources: the destination APIs, their signing secrets and their breakers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.errors import Conflict, NotFound
from dispatch.gateway import breakers
from dispatch.gateway.breaker import Breaker
from dispatch.gateway.redact import mask_headers, merge_headers
from dispatch.gateway.schemas import BreakerOut, ResourceCreate, ResourceOut, ResourceUpdate
from dispatch.gateway.signing import new_secret
from dispatch.models import GatewayBreaker, GatewayResource
from dispatch.security.masking import mask_value

_HEADER_FIELDS = ("headers", "failure_webhook_headers")
# Settings a PATCH may clear with null (the others treat null as "unchanged").
_NULLABLE = frozenset(column.key for column in GatewayResource.__table__.columns if column.nullable)


async def flush_unique(session: AsyncSession, what: str) -> None:
    """Flush, turning a unique-constraint violation into a 409."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"{what} already exists") from exc


def signing_secrets(resource: GatewayResource, now: datetime) -> tuple[str, ...]:
    """The current secret, and the previous one while its grace period lasts."""
    expires = resource.previous_secret_expires_at
    if resource.previous_secret and expires is not None and expires > now:
        return (resource.signing_secret, resource.previous_secret)
    return (resource.signing_secret,)


async def get_resource(session: AsyncSession, resource_id: int) -> GatewayResource:
    resource = await session.get(GatewayResource, resource_id)
    if resource is None:
        raise NotFound(f"Resource {resource_id} not found")
    return resource


async def create_resource(
    session: AsyncSession, data: ResourceCreate, now: datetime
) -> tuple[GatewayResource, str]:
    """A new resource and its signing secret (returned in full this once)."""
    secret = new_secret()
    values = data.model_dump(exclude_unset=True)
    resource = GatewayResource(signing_secret=secret, created_at=now, updated_at=now, **values)
    if resource.health_check_enabled:
        resource.next_health_check_at = now
    session.add(resource)
    await flush_unique(session, f"A resource named {data.name!r}")
    session.add(GatewayBreaker(resource_id=resource.id, changed_at=now))
    return resource, secret


async def update_resource(
    session: AsyncSession, resource_id: int, data: ResourceUpdate, now: datetime
) -> GatewayResource:
    resource = await get_resource(session, resource_id)
    values: dict[str, Any] = data.model_dump(exclude_unset=True)
    for name in _HEADER_FIELDS:
        if values.get(name) is not None:
            values[name] = merge_headers(getattr(resource, name), values[name])
    if values.get("is_active"):
        values.setdefault("disabled_reason", None)
    turning_on = values.get("health_check_enabled") and not resource.health_check_enabled
    for name, value in values.items():
        if value is None and name not in _NULLABLE:
            continue  # null means "leave as it is" for settings that cannot be empty
        setattr(resource, name, value)
    if turning_on:
        resource.next_health_check_at = now
    resource.updated_at = now
    await flush_unique(session, f"A resource named {resource.name!r}")
    return resource


async def delete_resource(session: AsyncSession, resource_id: int) -> None:
    await session.delete(await get_resource(session, resource_id))


async def duplicate_resource(
    session: AsyncSession, resource_id: int, now: datetime
) -> tuple[GatewayResource, str]:
    """A copy, inactive and with health checks off (seed 002), and its own secret."""
    source = await get_resource(session, resource_id)
    names = set(await session.scalars(select(GatewayResource.name)))
    name = f"{source.name} copy"
    counter = 2
    while name in names:
        name, counter = f"{source.name} copy {counter}", counter + 1
    skip = {"id", "name", "signing_secret", "previous_secret", "previous_secret_expires_at"}
    values = {
        column.key: getattr(source, column.key)
        for column in GatewayResource.__table__.columns
        if column.key not in skip
    }
    values.update(
        is_active=False,
        health_check_enabled=False,
        next_health_check_at=None,
        latest_health_check_result=None,
        last_alert_at=None,
        created_at=now,
        updated_at=now,
    )
    secret = new_secret()
    copy = GatewayResource(name=name, signing_secret=secret, **values)
    session.add(copy)
    await flush_unique(session, f"A resource named {name!r}")
    session.add(GatewayBreaker(resource_id=copy.id, changed_at=now))
    return copy, secret


async def rotate_secret(
    session: AsyncSession, resource_id: int, grace: timedelta, now: datetime
) -> tuple[str, datetime | None]:
    """A new signing secret; the old one keeps signing too until the grace period ends."""
    resource = await get_resource(session, resource_id)
    secret = new_secret()
    expires = now + grace if grace > timedelta(0) else None
    resource.previous_secret = resource.signing_secret if expires else None
    resource.previous_secret_expires_at = expires
    resource.signing_secret = secret
    resource.updated_at = now
    return secret, expires


async def breaker_rows(
    session: AsyncSession, resource_ids: Sequence[int]
) -> dict[int, GatewayBreaker]:
    rows = await session.scalars(
        select(GatewayBreaker).where(GatewayBreaker.resource_id.in_(list(resource_ids)))
    )
    return {row.resource_id: row for row in rows}


async def resource_view(session: AsyncSession, resource_id: int) -> ResourceOut:
    """One resource as the API and the UI show it (secrets masked, with its breaker)."""
    resource = await get_resource(session, resource_id)
    rows = await breaker_rows(session, [resource.id])
    return resource_out(resource, rows.get(resource.id))


async def list_resources(session: AsyncSession) -> list[ResourceOut]:
    resources = list(await session.scalars(select(GatewayResource).order_by(GatewayResource.name)))
    rows = await breaker_rows(session, [r.id for r in resources])
    return [resource_out(r, rows.get(r.id)) for r in resources]


async def breaker_states(session: AsyncSession) -> list[tuple[str, str]]:
    """(resource name, breaker state) for every resource, for the metrics."""
    rows = await session.execute(
        select(GatewayResource.name, GatewayBreaker.state).join(
            GatewayBreaker, GatewayBreaker.resource_id == GatewayResource.id, isouter=True
        )
    )
    return [(name, state or "closed") for name, state in rows]


def breaker_out(row: GatewayBreaker | None) -> BreakerOut:
    state: Breaker = breakers.to_breaker(row)
    return BreakerOut(
        state=str(state.state),
        consecutive_failures=state.consecutive_failures,
        consecutive_successes=state.consecutive_successes,
        probe_failures=state.probe_failures,
        probe_successes=state.probe_successes,
        opened_at=state.opened_at,
        last_failure_at=state.last_failure_at,
        last_success_at=state.last_success_at,
        changed_at=row.changed_at if row is not None else None,
    )


def resource_out(resource: GatewayResource, breaker: GatewayBreaker | None) -> ResourceOut:
    out = breaker_out(breaker)
    values = {
        column.key: getattr(resource, column.key) for column in GatewayResource.__table__.columns
    }
    values.update(
        headers=mask_headers(resource.headers),
        failure_webhook_headers=mask_headers(resource.failure_webhook_headers),
        signing_secret=mask_value(resource.signing_secret),
        healthy=out.state == "closed",
        breaker=out,
    )
    return ResourceOut.model_validate(values, from_attributes=False)
