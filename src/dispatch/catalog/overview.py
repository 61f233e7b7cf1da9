"""What the API and UI show of providers: configuration (secrets masked), status and health."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.catalog import configs, requests
from dispatch.catalog.context import CatalogContext, UnknownProvider
from dispatch.catalog.schemas import ProviderHealth, ProviderOut, masked_credentials
from dispatch.catalog.service import usable
from dispatch.db.base import utcnow
from dispatch.errors import NotFound
from dispatch.models import CatalogProduct, CatalogProvider


async def _counts(session: AsyncSession, only: str | None) -> dict[str, tuple[int, int, int]]:
    query = select(
        CatalogProduct.provider,
        func.count(),
        func.sum(cast(CatalogProduct.status == "active", Integer)),
        func.sum(cast(CatalogProduct.in_stock, Integer)),
    ).group_by(CatalogProduct.provider)
    if only is not None:  # one provider's page need not count the whole catalogue
        query = query.where(CatalogProduct.provider == only)
    rows = await session.execute(query)
    return {row[0]: (int(row[1]), int(row[2] or 0), int(row[3] or 0)) for row in rows}


async def views(
    ctx: CatalogContext, session: AsyncSession, only: str | None = None
) -> list[ProviderOut]:
    """Every provider (or only the one named), sorted by name."""
    loaded = await configs.load(session, ctx.defaults)
    counts = await _counts(session, only)
    since = utcnow() - timedelta(days=1)
    window = requests.Filters(provider=only, since=since)
    recent = {s["provider"]: s for s in await requests.summary(session, window)}
    out = []
    for name in sorted(loaded):
        if only is not None and name != only:
            continue
        config, row = loaded[name]
        problem = usable(config)
        stats: dict[str, Any] = recent.get(name, {})
        detail: str | None
        if problem is not None:
            status, detail = problem.code, problem.message
        elif (
            row is not None
            and row.last_error_at
            and (row.last_success_at is None or row.last_error_at > row.last_success_at)
        ):
            status, detail = "failing", row.last_error
        else:
            status, detail = "ok", None
        total, active, in_stock = counts.get(name, (0, 0, 0))
        out.append(
            ProviderOut(
                name=name,
                kind=config.kind,
                enabled=config.enabled,
                status=status,
                status_detail=detail,
                searchable=ctx.build(config).searchable,
                base_url=config.base_url,
                currency=config.currency,
                rate_per_minute=config.rate_per_minute,
                schedule=config.schedule,
                options=dict(config.options),
                credentials=masked_credentials(config),
                edited=list(row.edited) if row else [],
                health=ProviderHealth(
                    next_run_at=row.next_run_at if row else None,
                    last_run_at=row.last_run_at if row else None,
                    last_success_at=row.last_success_at if row else None,
                    last_error=row.last_error if row else None,
                    last_error_at=row.last_error_at if row else None,
                    last_result=dict(row.last_result or {}) if row else {},
                    requests_24h=int(stats.get("requests", 0)),
                    errors_24h=int(stats.get("errors", 0)),
                    error_rate_24h=float(stats.get("error_rate", 0.0)),
                    products=total,
                    active_products=active,
                    in_stock_products=in_stock,
                ),
            )
        )
    return out


async def view(ctx: CatalogContext, session: AsyncSession, name: str) -> ProviderOut:
    for provider in await views(ctx, session, only=name):
        return provider
    raise NotFound(f"No provider named {name!r}", details={"provider": name})


async def edit(
    ctx: CatalogContext, session: AsyncSession, name: str, changes: dict[str, Any]
) -> None:
    """Store the admin's edit of one provider's configuration."""
    if name not in ctx.defaults:
        raise NotFound(f"No provider named {name!r}", details={"provider": name})
    now = utcnow()
    await configs.ensure_rows(session, ctx.defaults, now)
    row = await session.get(CatalogProvider, name)
    if row is None:
        raise UnknownProvider(name)
    configs.apply_edit(row, changes, configs.merge(ctx.defaults[name], row), now)
    if "schedule" in changes or "reset" in changes:
        row.next_run_at = None  # the sweep sets the next run from the new schedule
    await session.flush()
    ctx.invalidate()
