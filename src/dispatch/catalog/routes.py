"""``/api/v1/providers``, ``/api/v1/products`` and friends: the catalogue's API.

Reads need the ``read`` scope, changes ``write``, provider configuration ``admin``.
Seed 000's routes keep their shapes (``/products/live`` is its live ``/products``;
``/products/cache`` its cached listing); seed 001's CRUD keeps its bodies and statuses.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.catalog import overview, products, requests, service
from dispatch.catalog.money import currency_code, requested_minor
from dispatch.catalog.registry import OFFERS
from dispatch.catalog.schedule import run_spec
from dispatch.catalog.schemas import (
    CacheOut,
    ChangeOut,
    ChangesPage,
    HistoryOut,
    LiveOut,
    OfferOut,
    PricePointOut,
    ProductCreate,
    ProductDetail,
    ProductOut,
    ProductPatch,
    ProviderOut,
    ProviderRequestOut,
    ProviderRequestPage,
    ProviderRequestSummary,
    ProvidersOut,
    ProviderUpdate,
    SearchPage,
    SyncOut,
)
from dispatch.catalog.search import Filters, Sort, search
from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import ERROR_RESPONSES, Conflict, Forbidden, ValidationFailed
from dispatch.models import CatalogChange, CatalogProduct
from dispatch.queue import service as queue
from dispatch.runtime import Runtime
from dispatch.security.deps import AdminKey, ReadKey, ReadKeyOrUser, WriteKey
from dispatch.security.scopes import Scope

router = APIRouter(tags=["catalogue"], responses=ERROR_RESPONSES)

ProviderNames = Annotated[
    list[str],
    Query(description="Repeat the parameter or separate names with commas"),
]


def _names(values: list[str]) -> list[str]:
    return list(dict.fromkeys(n.strip() for v in values for n in v.split(",") if n.strip()))


async def _known(runtime: Runtime, names: list[str]) -> list[str]:
    known = await runtime.catalog.configs()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValidationFailed(
            f"Unknown provider: {', '.join(unknown)}",
            details={"unknown": unknown, "known": sorted(known)},
        )
    return names


# Providers ----------------------------------------------------------------------------------


@router.get("/providers", response_model=ProvidersOut)
async def list_providers(session: SessionDep, runtime: RuntimeDep, _: ReadKey) -> ProvidersOut:
    """Every provider with its health: last success, error rate, item counts."""
    details = await overview.views(runtime.catalog, session)
    return ProvidersOut(providers=[p.name for p in details], details=details)


@router.get("/providers/{name}", response_model=ProviderOut)
async def get_provider(
    name: str, session: SessionDep, runtime: RuntimeDep, _: ReadKey
) -> ProviderOut:
    return await overview.view(runtime.catalog, session, name)


@router.patch("/providers/{name}", response_model=ProviderOut)
async def update_provider(
    name: str, data: ProviderUpdate, session: SessionDep, runtime: RuntimeDep, _: AdminKey
) -> ProviderOut:
    """Edit a provider's configuration; edited fields no longer follow the environment."""
    await overview.edit(runtime.catalog, session, name, data.changes())
    return await overview.view(runtime.catalog, session, name)


@router.post("/providers/{name}/sync", response_model=SyncOut, status_code=status.HTTP_202_ACCEPTED)
async def sync_provider(
    name: str, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> SyncOut:
    """Run a provider now: a scrape, or for ``offers`` a sync of every registered product."""
    await _known(runtime, [name])
    config = await runtime.catalog.config(name)
    problem = service.usable(config)
    if problem is not None:
        raise Conflict(f"{name} cannot run: {problem.message}", details=problem.as_json())
    spec = run_spec(runtime.settings, name)
    job = await queue.enqueue(session, spec)
    return SyncOut(provider=name, job_id=job.job_id, kind=spec.kind, created=job.created)


StatusBound = Annotated[int | None, Query(ge=100, le=599)]


def _request_filters(
    provider: str | None = None,
    status_code: Annotated[int | None, Query(alias="status", ge=100, le=599)] = None,
    status_code_gte: StatusBound = None,
    status_code_lte: StatusBound = None,
    errors_only: bool = False,
    since: datetime | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    user_id: Annotated[int | None, Query(ge=1)] = None,
) -> requests.Filters:
    """Seed 000's filters and seed 003's (``status_code_gte/lte``, ``created_from/to``)."""
    return requests.Filters(
        provider=provider,
        status=status_code,
        status_gte=status_code_gte,
        status_lte=status_code_lte,
        errors_only=errors_only,
        since=created_from or since,
        until=created_to,
        user_id=user_id,
    )


def _own(
    principal: ReadKeyOrUser, filters: Annotated[requests.Filters, Depends(_request_filters)]
) -> requests.Filters:
    """A user sees the requests their own rules made; a key with ``read`` sees every one."""
    if principal.user_id is None:
        return filters
    return dataclasses.replace(filters, user_id=principal.user_id)


def _everyone(
    principal: ReadKeyOrUser, filters: Annotated[requests.Filters, Depends(_request_filters)]
) -> requests.Filters:
    """Seed 003's admin variants: an admin key or an admin user, ``user_id`` to narrow."""
    if not (principal.allows(Scope.ADMIN) or principal.user_admin):
        raise Forbidden("The admin-wide provider requests need an admin key or an admin user")
    return filters


OwnRequests = Annotated[requests.Filters, Depends(_own)]
EveryonesRequests = Annotated[requests.Filters, Depends(_everyone)]
BeforeId = Annotated[int | None, Query(ge=1)]
PageLimit = Annotated[int, Query(ge=1, le=500)]
Hours = Annotated[float, Query(gt=0, le=24 * 90)]


async def _request_page(
    session: AsyncSession, filters: requests.Filters, before_id: int | None, limit: int
) -> ProviderRequestPage:
    rows = await requests.recent(session, filters, before_id=before_id, limit=limit)
    following = rows[-1].id if len(rows) == limit else None
    return ProviderRequestPage(
        items=[ProviderRequestOut.of(r) for r in rows], next_before_id=following
    )


async def _request_summary(
    session: AsyncSession, filters: requests.Filters, hours: float
) -> list[ProviderRequestSummary]:
    if filters.since is None:
        filters = dataclasses.replace(filters, since=utcnow() - timedelta(hours=hours))
    return [ProviderRequestSummary(**row) for row in await requests.summary(session, filters)]


@router.get("/provider-requests", response_model=ProviderRequestPage)
async def provider_requests(
    session: SessionDep, filters: OwnRequests, before_id: BeforeId = None, limit: PageLimit = 50
) -> ProviderRequestPage:
    """Outbound provider requests, newest first; page on with ``before_id``. A user sees
    those their watch rules made (seed 003); a key with ``read`` sees all."""
    return await _request_page(session, filters, before_id, limit)


@router.get("/provider-requests/summary", response_model=list[ProviderRequestSummary])
async def provider_requests_summary(
    session: SessionDep, filters: OwnRequests, hours: Hours = 24
) -> list[ProviderRequestSummary]:
    """Per provider over the last ``hours`` (or ``created_from``): requests, errors, error
    rate, durations; a user's own requests only."""
    return await _request_summary(session, filters, hours)


@router.get("/provider-requests/admin", response_model=ProviderRequestPage)
async def provider_requests_admin(
    session: SessionDep,
    filters: EveryonesRequests,
    before_id: BeforeId = None,
    limit: PageLimit = 50,
) -> ProviderRequestPage:
    """Seed 003's admin variant: everyone's requests, ``user_id`` to narrow them."""
    return await _request_page(session, filters, before_id, limit)


@router.get("/provider-requests/admin/summary", response_model=list[ProviderRequestSummary])
async def provider_requests_admin_summary(
    session: SessionDep, filters: EveryonesRequests, hours: Hours = 24
) -> list[ProviderRequestSummary]:
    return await _request_summary(session, filters, hours)


# Products -----------------------------------------------------------------------------------


@router.get("/products", response_model=SearchPage)
async def search_products(
    session: SessionDep,
    runtime: RuntimeDep,
    _: ReadKey,
    providers: ProviderNames = [],  # noqa: B006 - FastAPI copies query defaults
    query: Annotated[str | None, Query(max_length=200, alias="query")] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    brand: Annotated[str | None, Query(max_length=255)] = None,
    min_price: Annotated[Decimal | None, Query(ge=0, description="Major units")] = None,
    max_price: Annotated[Decimal | None, Query(ge=0, description="Major units")] = None,
    currency: Annotated[str | None, Query(pattern="^[A-Za-z]{3}$", description="ISO 4217")] = None,
    in_stock: bool | None = None,
    status_filter: Annotated[str, Query(alias="status", pattern="^(active|ended|all)$")] = "active",
    sort: Sort | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> SearchPage:
    """Search the catalogue: full text, filters, sort, cursor pagination."""
    names = await _known(runtime, _names(providers))
    code = currency_code(currency) if currency else None
    filters = Filters(
        text=query or q,
        providers=tuple(names),
        brand=brand,
        min_price_minor=requested_minor(min_price, code, "min_price"),
        max_price_minor=requested_minor(max_price, code, "max_price"),
        currency=code,
        in_stock=in_stock,
        status=None if status_filter == "all" else status_filter,
    )
    page = await search(session, filters, sort=sort, limit=limit, cursor=cursor)
    items = [ProductOut.of(p) for p in page.items]
    return SearchPage(items=items, count=len(items), next_cursor=page.next_cursor)


@router.post("/products", response_model=ProductOut, status_code=status.HTTP_201_CREATED)
async def create_product(
    data: ProductCreate, session: SessionDep, runtime: RuntimeDep, _: WriteKey
) -> ProductOut:
    """Seed 001: create a product; its registration with the offers service is queued."""
    product = await products.create(
        session, runtime.settings, data.name, data.description, utcnow()
    )
    return ProductOut.of(product)


@router.get("/products/live", response_model=LiveOut)
async def live_products(
    runtime: RuntimeDep,
    principal: ReadKey,
    providers: ProviderNames = [],  # noqa: B006
    query: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Per provider")] = 20,
) -> LiveOut:
    """Seed 000's live fetch: ask providers now, store the results, report failures."""
    known = await runtime.catalog.configs()
    names = await _known(runtime, _names(providers)) or sorted(
        n for n, c in known.items() if c.enabled and n != OFFERS
    )
    result = await service.live_search(runtime.catalog, names, query, limit)
    runtime.telemetry.emit(
        "api.products",
        providers=names,
        query=query,
        count=sum(len(rows) for rows in result.products.values()),
        client=principal.identity,
    )
    return LiveOut(
        providers={n: [ProductOut.of(p) for p in rows] for n, rows in result.products.items()},
        errors={n: failure.as_json() for n, failure in result.errors.items()},
    )


@router.get("/products/cache", response_model=CacheOut)
async def cached_products(
    session: SessionDep,
    runtime: RuntimeDep,
    _: ReadKey,
    provider: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> CacheOut:
    """Seed 000's cached listing: the most recently seen products first."""
    query = select(CatalogProduct).order_by(
        CatalogProduct.last_seen_at.desc(), CatalogProduct.id.desc()
    )
    if provider:
        await _known(runtime, [provider])
        query = query.where(CatalogProduct.provider == provider)
    rows = (await session.scalars(query.limit(limit))).all()
    return CacheOut(results=[ProductOut.of(p) for p in rows])


@router.get("/products/{product_id}", response_model=ProductDetail)
async def get_product(product_id: str, session: SessionDep, _: ReadKey) -> ProductDetail:
    product = await products.get(session, product_id)
    offers = await products.offers_of(session, product)
    siblings = await products.same_item(session, product)
    return ProductDetail(
        **ProductOut.of(product).model_dump(),
        offers=[OfferOut.of(o, product.uid) for o in offers],
        same_item=[ProductOut.of(p) for p in siblings],
    )


async def _editable(session: SessionDep, product_id: str) -> None:
    product = await products.get(session, product_id)
    if product.provider != OFFERS:
        raise Conflict(
            f"Products of {product.provider} come from the provider and are read-only here",
            details={"provider": product.provider},
        )


@router.put("/products/{product_id}", response_model=ProductOut)
async def replace_product(
    product_id: str, data: ProductCreate, session: SessionDep, _: WriteKey
) -> ProductOut:
    """Seed 001's full replace: an omitted description becomes null."""
    await _editable(session, product_id)
    changes = {"name": data.name, "description": data.description}
    product = await products.update(session, product_id, changes, utcnow())
    return ProductOut.of(product)


@router.patch("/products/{product_id}", response_model=ProductOut)
async def patch_product(
    product_id: str, data: ProductPatch, session: SessionDep, _: WriteKey
) -> ProductOut:
    """Change only the fields sent."""
    await _editable(session, product_id)
    changes = {name: getattr(data, name) for name in data.model_fields_set}
    product = await products.update(session, product_id, changes, utcnow())
    return ProductOut.of(product)


@router.delete("/products/{product_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_product(product_id: str, session: SessionDep, _: WriteKey) -> Response:
    """Delete a product with its offers and price history."""
    await products.delete(session, product_id, utcnow())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/products/{product_id}/offers", response_model=list[OfferOut])
async def product_offers(product_id: str, session: SessionDep, _: ReadKey) -> list[OfferOut]:
    """Seed 001: the product's offers as last synchronised, cheapest first."""
    product = await products.get(session, product_id)
    return [OfferOut.of(o, product.uid) for o in await products.offers_of(session, product)]


@router.get("/products/{product_id}/history", response_model=HistoryOut)
async def product_history(
    product_id: str,
    session: SessionDep,
    _: ReadKey,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> HistoryOut:
    """Price and stock history: one point per offer whenever its price or stock changed."""
    product = await products.get(session, product_id)
    points = await products.history_of(session, product, since=since, limit=limit)
    return HistoryOut(product_id=product.uid, points=[PricePointOut.of(p) for p in points])


@router.get("/catalog/changes", response_model=ChangesPage)
async def catalog_changes(
    session: SessionDep,
    _: ReadKey,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    provider: str | None = None,
) -> ChangesPage:
    """The change feed, oldest first after ``after``: new listings, price and stock changes."""
    query = select(CatalogChange).where(CatalogChange.id > after).order_by(CatalogChange.id)
    if provider:
        query = query.where(CatalogChange.provider == provider)
    rows = (await session.scalars(query.limit(limit))).all()
    return ChangesPage(
        items=[ChangeOut.of(r) for r in rows], next_after=rows[-1].id if rows else after
    )
