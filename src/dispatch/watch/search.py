"""``POST /api/v1/search``: seed 003's live search across providers, for users.

Each named (or every enabled) provider is asked now through the catalogue (what comes back
is stored, as any live search's results are); the items are filtered by price and
condition, sorted by price (cheapest first, unpriced last) and paged, in seed 003's shape.
A provider that fails is named in ``provider_errors``; the others still answer.
"""

from __future__ import annotations

import math

from fastapi import APIRouter
from pydantic import BaseModel

from dispatch.catalog import service
from dispatch.catalog.money import requested_minor, to_major
from dispatch.deps import RuntimeDep
from dispatch.errors import ERROR_RESPONSES, ValidationFailed
from dispatch.models import CatalogProduct
from dispatch.watch import outbound
from dispatch.watch.deps import SearchCaller
from dispatch.watch.matching import GRADES, grade
from dispatch.watch.schemas import SearchQuery

router = APIRouter(tags=["search"], responses=ERROR_RESPONSES)


class Pagination(BaseModel):
    page: int
    page_size: int
    total: int
    returned: int
    total_pages: int
    has_next: bool


class SearchItem(BaseModel):
    id: str  # "provider:external_id"
    listing_id: int
    provider: str
    external_id: str
    title: str
    url: str | None
    price: float | None
    currency: str | None
    condition: str | None
    seller: str | None
    location: str | None
    discogs_release_id: str | None
    public_url: str | None


class SearchResult(BaseModel):
    items: list[SearchItem]
    pagination: Pagination
    providers_searched: list[str]
    provider_errors: dict[str, str]


def _item(product: CatalogProduct, prefix: str) -> SearchItem:
    attributes = product.attributes or {}
    release = attributes.get("release_id") if product.provider == "discogs" else None
    return SearchItem(
        id=f"{product.provider}:{product.external_id}",
        listing_id=product.id,
        provider=product.provider,
        external_id=product.external_id,
        title=product.title,
        url=product.url,
        price=to_major(product.price_minor, product.currency),
        currency=product.currency,
        condition=attributes.get("condition"),
        seller=attributes.get("seller"),
        location=attributes.get("item_location_country") or attributes.get("location"),
        discogs_release_id=str(release) if release else None,
        public_url=outbound.public_url(product, prefix),
    )


def _keep(product: CatalogProduct, query: SearchQuery, floor: int | None) -> bool:
    price = product.price_minor
    if query.min_price is not None or query.max_price is not None:
        if price is None or (query.currency and product.currency != query.currency.upper()):
            return False
        low = requested_minor(query.min_price, product.currency, "min_price")
        high = requested_minor(query.max_price, product.currency, "max_price")
        if (low is not None and price < low) or (high is not None and price > high):
            return False
    if floor is not None:
        rank = grade((product.attributes or {}).get("condition"))
        return rank is not None and rank >= floor
    return True


@router.post("/search")
async def search(query: SearchQuery, runtime: RuntimeDep, _: SearchCaller) -> SearchResult:
    """Ask the providers now; seed 003's items, sorted by price, and its pagination."""
    low, high = query.min_price, query.max_price
    if low is not None and high is not None and high < low:
        raise ValidationFailed("max_price must be greater than or equal to min_price")
    floor = grade(query.min_condition) if query.min_condition else None
    if query.min_condition and floor is None:
        raise ValidationFailed(f"min_condition must be one of {', '.join(GRADES)}")
    configs = await runtime.catalog.configs()
    names = query.providers or [name for name, config in configs.items() if config.enabled]
    unknown = [name for name in names if name not in configs]
    if unknown:
        raise ValidationFailed(
            f"Unknown provider: {', '.join(unknown)}", details={"unknown": unknown}
        )
    text = " ".join(word.strip() for word in query.keywords if word.strip()) or None
    wanted = query.page * query.page_size
    result = await service.live_search(runtime.catalog, names, text, min(max(wanted, 50), 200))
    kept = [
        product
        for products in result.products.values()
        for product in products
        if _keep(product, query, floor)
    ]
    kept.sort(key=lambda p: (p.price_minor is None, p.price_minor or 0, p.id))
    start = (query.page - 1) * query.page_size
    page = kept[start : start + query.page_size]
    pages = math.ceil(len(kept) / query.page_size) if kept else 0
    return SearchResult(
        items=[_item(product, runtime.settings.api_v1_prefix) for product in page],
        pagination=Pagination(
            page=query.page,
            page_size=query.page_size,
            total=len(kept),
            returned=len(page),
            total_pages=pages,
            has_next=query.page < pages,
        ),
        providers_searched=names,
        provider_errors={name: failure.message for name, failure in result.errors.items()},
    )
