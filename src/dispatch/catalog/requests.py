"""The provider request log: buffered in memory, written in batches, read by the API.

Requests are buffered (bounded; the oldest are dropped and counted when a flush falls
behind) and written when an operation ends and every few seconds, so a provider call
never waits on the database.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, case, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.engine import Database
from dispatch.models import CatalogProviderRequest
from dispatch.telemetry.metrics import Metrics

_TABLE: Table = CatalogProviderRequest.__table__  # type: ignore[assignment]


class RequestLog:
    def __init__(self, capacity: int = 10_000, metrics: Metrics | None = None) -> None:
        self._buffer: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.dropped = 0
        self.metrics = metrics

    def add(self, record: dict[str, Any]) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(record)
        if self.metrics is not None:
            provider = record["provider"]
            status = str(record["status"]) if record["status"] is not None else "error"
            self.metrics.provider_requests.labels(provider, status).inc()
            self.metrics.provider_request_seconds.labels(provider).observe(
                record["duration_ms"] / 1000
            )

    def __len__(self) -> int:
        return len(self._buffer)

    async def flush(self, database: Database) -> int:
        """Write what is buffered; the count written."""
        rows = list(self._buffer)
        if not rows:
            return 0
        self._buffer.clear()
        async with database.session() as session:
            await session.execute(insert(_TABLE), rows)
        return len(rows)


async def recent(
    session: AsyncSession,
    *,
    provider: str | None = None,
    status: int | None = None,
    errors_only: bool = False,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> Sequence[CatalogProviderRequest]:
    """Newest first, filtered; ``before_id`` pages on."""
    query = select(CatalogProviderRequest).order_by(CatalogProviderRequest.id.desc()).limit(limit)
    if provider:
        query = query.where(CatalogProviderRequest.provider == provider)
    if status is not None:
        query = query.where(CatalogProviderRequest.status == status)
    if errors_only:
        query = query.where(CatalogProviderRequest.error.is_not(None))
    if since is not None:
        query = query.where(CatalogProviderRequest.created_at >= since)
    if before_id is not None:
        query = query.where(CatalogProviderRequest.id < before_id)
    return (await session.scalars(query)).all()


async def summary(
    session: AsyncSession, since: datetime, provider: str | None = None
) -> list[dict[str, Any]]:
    """Per provider since ``since``: requests, errors, error rate, mean and max duration."""
    failed = func.sum(
        case(
            (
                (CatalogProviderRequest.error.is_not(None))
                | (CatalogProviderRequest.status >= 400),
                1,
            ),
            else_=0,
        )
    )
    query = (
        select(
            CatalogProviderRequest.provider,
            func.count().label("requests"),
            failed.label("errors"),
            func.avg(CatalogProviderRequest.duration_ms).label("mean_ms"),
            func.max(CatalogProviderRequest.duration_ms).label("max_ms"),
            func.max(CatalogProviderRequest.created_at).label("last_at"),
        )
        .where(CatalogProviderRequest.created_at >= since)
        .group_by(CatalogProviderRequest.provider)
        .order_by(CatalogProviderRequest.provider)
    )
    if provider:
        query = query.where(CatalogProviderRequest.provider == provider)
    out = []
    for row in await session.execute(query):
        errors = int(row.errors or 0)
        out.append(
            {
                "provider": row.provider,
                "requests": int(row.requests),
                "errors": errors,
                "error_rate": round(errors / row.requests, 4) if row.requests else 0.0,
                "mean_ms": round(float(row.mean_ms or 0), 3),
                "max_ms": round(float(row.max_ms or 0), 3),
                "last_at": row.last_at,
            }
        )
    return out


async def prune(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(
        delete(CatalogProviderRequest).where(CatalogProviderRequest.created_at < before)
    )
    return int(getattr(result, "rowcount", 0) or 0)
