"""``GET /api/v1/outbound/ebay/{listing_id}``: seed 003's outbound link to an eBay listing.

The click is logged (who, which listing, where to) and answered with a 307 to the listing's
eBay URL carrying the eBay Partner Network parameters when ``EBAY_CAMPAIGN_ID`` is set.
A listing that is not eBay's is a 404, as in the seed.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, status
from fastapi.responses import RedirectResponse

from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.deps import RuntimeDep, SessionDep
from dispatch.errors import ERROR_RESPONSES, NotFound
from dispatch.models import CatalogProduct, OutboundClick
from dispatch.watch.deps import UserCaller

router = APIRouter(tags=["search"], responses=ERROR_RESPONSES)
EBAY = "ebay"


def affiliate_url(url: str, settings: Settings) -> str:
    """The listing's URL with seed 003's affiliate parameters (none without a campaign)."""
    if not settings.ebay_campaign_id:
        return url
    parts = urlsplit(url)
    extra = {
        "mkevt": "1",
        "mkcid": "1",
        "mkrid": "711-53200-19255-0",
        "campid": settings.ebay_campaign_id,
        "toolid": "10001",
    }
    if settings.ebay_custom_id:
        extra["customid"] = settings.ebay_custom_id
    query = "&".join(part for part in (parts.query, urlencode(extra)) if part)
    return urlunsplit(parts._replace(query=query))


def public_url(product: CatalogProduct, prefix: str) -> str | None:
    """Seed 003's ``public_url``: eBay listings go through the outbound route."""
    if product.provider == EBAY:
        return f"{prefix}/outbound/ebay/{product.id}"
    return product.url


@router.get(
    "/outbound/ebay/{listing_id}",
    status_code=status.HTTP_307_TEMPORARY_REDIRECT,
    response_class=RedirectResponse,
    responses={307: {"description": "To the eBay listing"}},
)
async def outbound_ebay(
    listing_id: int, session: SessionDep, runtime: RuntimeDep, caller: UserCaller
) -> RedirectResponse:
    product = await session.get(CatalogProduct, listing_id)
    if product is None or product.provider != EBAY or not product.url:
        raise NotFound(f"eBay listing {listing_id} does not exist")
    target = affiliate_url(product.url, runtime.settings)
    session.add(
        OutboundClick(
            user_id=caller.user_id,
            product_id=product.id,
            provider=product.provider,
            target_url=target,
            created_at=utcnow(),
        )
    )
    return RedirectResponse(target, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
