"""Read-only figures for the gateway UI: deliveries per minute and the filter choices.

Task counts, task lists and resource health come from ``tasks`` and ``resources``;
this module adds only what the pages need beyond them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Integer, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.gateway.plans import SUCCESS
from dispatch.models import GatewayAttempt, GatewayClient, GatewayEndpoint, GatewayEndpointClient


@dataclass(frozen=True, slots=True)
class MinuteCount:
    minute: datetime  # the start of the minute, UTC
    count: int


@dataclass(frozen=True, slots=True)
class Choice:
    id: int
    label: str


def _epoch_minute(dialect: str) -> ColumnElement[int]:
    """Minutes since the epoch of an attempt's start, computed by the database."""
    started = GatewayAttempt.started_at
    if dialect == "sqlite":
        return cast(func.strftime("%s", started), Integer) // 60
    return cast(func.floor(func.extract("epoch", started) / 60), Integer)


def minute_series(found: dict[int, int], now: datetime, minutes: int) -> list[MinuteCount]:
    """One entry per minute, oldest first, ending with the current minute; gaps are zero."""
    last = int(now.timestamp()) // 60
    return [
        MinuteCount(datetime.fromtimestamp(m * 60, UTC), found.get(m, 0))
        for m in range(last - minutes + 1, last + 1)
    ]


async def deliveries_per_minute(
    session: AsyncSession, now: datetime, minutes: int = 60
) -> list[MinuteCount]:
    """Successful hops per minute over the last ``minutes`` minutes (every client's)."""
    bucket = _epoch_minute(session.get_bind().dialect.name).label("minute")
    since = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    stmt = (
        select(bucket, func.count())
        .where(GatewayAttempt.started_at >= since, GatewayAttempt.outcome == SUCCESS)
        .group_by(bucket)
    )
    rows = (await session.execute(stmt)).all()
    return minute_series({int(minute): int(count) for minute, count in rows}, now, minutes)


async def endpoint_choices(session: AsyncSession, client_id: int | None) -> list[Choice]:
    """Endpoints to filter tasks by: all of them (admin) or those the client may call."""
    stmt = select(GatewayEndpoint.id, GatewayEndpoint.path).order_by(GatewayEndpoint.path)
    if client_id is not None:
        stmt = stmt.join(
            GatewayEndpointClient, GatewayEndpointClient.endpoint_id == GatewayEndpoint.id
        ).where(GatewayEndpointClient.client_id == client_id)
    return [Choice(id_, path) for id_, path in (await session.execute(stmt)).all()]


async def client_choices(session: AsyncSession) -> list[Choice]:
    """Every client, for the admin's client filter."""
    stmt = select(GatewayClient.id, GatewayClient.name).order_by(GatewayClient.name)
    return [Choice(id_, name) for id_, name in (await session.execute(stmt)).all()]
