"""The provider request log: buffered in memory, written in batches, read by the API.

Requests are buffered (bounded; the oldest are dropped and counted when a flush falls
behind) and written when an operation ends and every few seconds, so a provider call
never waits on the database.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, case, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.engine import Database
from dispatch.models import CatalogProviderRequest
from dispatch.telemetry.metrics import Metrics

_TABLE: Table = CatalogProviderRequest.__table__  # type: ignore[assignment]
# The user on whose behalf provider requests are made now (a watch rule's poll), so seed
# 003's "own provider requests" can be told apart; None for scrapes and admin calls.
_ACTING_USER: ContextVar[int | None] = ContextVar("catalog_acting_user", default=None)


@contextlib.contextmanager
def acting_for(user_id: int | None) -> Iterator[None]:
    """Attribute the provider requests made inside the block to ``user_id``."""
    token = _ACTING_USER.set(user_id)
    try:
        yield
    finally:
        _ACTING_USER.reset(token)


def acting_user() -> int | None:
    return _ACTING_USER.get()


@dataclass(frozen=True, slots=True)
class Filters:
    """Which requests: seed 000's filters and seed 003's (status range, time range, user)."""

    provider: str | None = None
    status: int | None = None
    status_gte: int | None = None
    status_lte: int | None = None
    errors_only: bool = False
    since: datetime | None = None
    until: datetime | None = None
    user_id: int | None = None

    def apply(self, query: Any) -> Any:
        table = CatalogProviderRequest
        conditions: list[Any] = []
        if self.provider:
            conditions.append(table.provider == self.provider)
        if self.status is not None:
            conditions.append(table.status == self.status)
        if self.status_gte is not None:
            conditions.append(table.status >= self.status_gte)
        if self.status_lte is not None:
            conditions.append(table.status <= self.status_lte)
        if self.since is not None:
            conditions.append(table.created_at >= self.since)
        if self.until is not None:
            conditions.append(table.created_at <= self.until)
        if self.user_id is not None:
            conditions.append(table.user_id == self.user_id)
        if self.errors_only:
            conditions.append(table.error.is_not(None))
        return query.where(*conditions) if conditions else query


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
    filters: Filters,
    *,
    before_id: int | None = None,
    limit: int = 50,
) -> Sequence[CatalogProviderRequest]:
    """Newest first, filtered; ``before_id`` pages on."""
    query = select(CatalogProviderRequest).order_by(CatalogProviderRequest.id.desc()).limit(limit)
    query = filters.apply(query)
    if before_id is not None:
        query = query.where(CatalogProviderRequest.id < before_id)
    return (await session.scalars(query)).all()


async def summary(session: AsyncSession, filters: Filters) -> list[dict[str, Any]]:
    """Per provider: requests, errors (status >= 400, or an error without a status: seed
    003's count), error rate, mean and max duration."""
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
        .group_by(CatalogProviderRequest.provider)
        .order_by(CatalogProviderRequest.provider)
    )
    query = filters.apply(query)
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
