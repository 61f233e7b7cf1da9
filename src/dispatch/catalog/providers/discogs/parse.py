"""Discogs answers (database search, marketplace stats, inventories) as ProductRecords.

Search results carry no price: a release's offer comes from ``/marketplace/stats/{id}`` through
``apply_stats``. An inventory listing is a product and its one offer at once.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from dispatch.catalog.providers._payload import identifier, list_at, mapping, money, strings, text
from dispatch.catalog.records import MalformedPayload, OfferRecord, ProductRecord

_SITE_URL = "https://www.discogs.com"
_GTIN = re.compile(r"^\d{8,14}$")
_NO_CATNO = "none"  # what Discogs writes for a release without a catalog number
_NO_IMAGE = "spacer.gif"  # the placeholder Discogs sends where a release has no image


def parse_search(
    payload: object, *, provider: str, site_url: str = _SITE_URL
) -> tuple[list[ProductRecord], int]:
    """Releases and masters of a ``/database/search`` page, and its page count."""
    results = list_at(payload, "results")
    products = [
        _search_result(mapping(item, f"results[{index}]"), f"results[{index}]", provider, site_url)
        for index, item in enumerate(results)
    ]
    return products, _pages(mapping(payload, "payload"))


def apply_stats(product: ProductRecord, payload: object) -> ProductRecord:
    """A copy of ``product`` whose marketplace offer is the ``/marketplace/stats/{id}`` answer."""
    stats = mapping(payload, "payload")
    for_sale = stats.get("num_for_sale")
    if isinstance(for_sale, bool) or not isinstance(for_sale, int) or for_sale < 0:
        raise MalformedPayload(f"num_for_sale: expected a count, got {for_sale!r}")
    price, currency = money(stats.get("lowest_price"))
    offer = OfferRecord(
        external_id=f"{product.external_id}:marketplace",
        price_minor=price,
        currency=currency,
        label="Marketplace lowest",
        available=for_sale > 0,
        stock=for_sale,
    )
    others = tuple(kept for kept in product.offers if kept.external_id != offer.external_id)
    return dataclasses.replace(product, offers=(*others, offer))


def parse_listing(payload: object, *, provider: str) -> ProductRecord:
    """One marketplace listing (an item of an inventory's ``listings``) with its offer."""
    listing = mapping(payload, "listing")
    listing_id = identifier(listing.get("id"))
    if listing_id is None:
        raise MalformedPayload("listing.id is missing or not an id")
    release = listing.get("release")
    release = release if isinstance(release, dict) else {}
    artist, name = text(release.get("artist")), text(release.get("title"))
    title = text(release.get("description")) or (f"{artist} - {name}" if artist and name else name)
    if title is None:
        raise MalformedPayload(f"listing {listing_id}: release has no description or title")
    price, currency = money(listing.get("price"))
    seller = listing.get("seller")
    attributes = {
        "condition": text(listing.get("condition")),
        "sleeve_condition": text(listing.get("sleeve_condition")),
        "seller": text(seller.get("username")) if isinstance(seller, dict) else None,
        "ships_from": text(listing.get("ships_from")),
        "release_id": identifier(release.get("id")),
    }
    thumbnail = text(release.get("thumbnail"))
    if thumbnail is not None and not thumbnail.startswith(("https://", "http://")):
        thumbnail = None  # older answers give a bare path, which names no host to fetch it from
    return ProductRecord(
        provider=provider,
        external_id=f"listing:{listing_id}",
        title=title,
        url=_absolute(text(listing.get("uri")), _SITE_URL),
        brand=artist,
        images=(thumbnail,) if thumbnail else (),
        sku=_catalog_number(release.get("catalog_number")),
        release_date=_year(release.get("year")),
        attributes={key: value for key, value in attributes.items() if value is not None},
        offers=(
            OfferRecord(
                external_id=listing_id,
                price_minor=price,
                currency=currency,
                available=listing.get("status") == "For Sale",
            ),
        ),
        raw=listing,
    )


def parse_inventory(payload: object, *, provider: str) -> tuple[list[ProductRecord], int]:
    """The listings of a ``/users/{username}/inventory`` page, and its page count."""
    listings = list_at(payload, "listings")
    products = [parse_listing(item, provider=provider) for item in listings]
    return products, _pages(mapping(payload, "payload"))


def _search_result(
    result: dict[str, Any], where: str, provider: str, site_url: str
) -> ProductRecord:
    result_id = identifier(result.get("id"))
    kind = text(result.get("type"))
    title = text(result.get("title"))
    if result_id is None or kind is None:
        raise MalformedPayload(f"{where}: id or type is missing")
    if title is None:
        raise MalformedPayload(f"{where}.title is missing or empty")
    artist, separator, _ = title.partition(" - ")
    formats = strings(result.get("format"))
    community = result.get("community")
    attributes = {
        "type": kind,
        "country": text(result.get("country")),
        "label": list(strings(result.get("label"))),
        "format": list(formats),
        "master_id": identifier(result.get("master_id")),
        "community": (
            {key: community.get(key) for key in ("want", "have")}
            if isinstance(community, dict)
            else None
        ),
    }
    images = (text(result.get("cover_image")), text(result.get("thumb")))
    return ProductRecord(
        provider=provider,
        external_id=f"{kind}:{result_id}",
        title=title,
        url=_absolute(text(result.get("uri")), site_url),
        brand=(artist.strip() or None) if separator else None,
        images=tuple(dict.fromkeys(url for url in images if url and not url.endswith(_NO_IMAGE))),
        categories=tuple(
            dict.fromkeys((*strings(result.get("genre")), *strings(result.get("style"))))
        ),
        tags=formats,
        sku=_catalog_number(result.get("catno")),
        gtin=_gtin(result.get("barcode")),
        release_date=_year(result.get("year")),
        attributes={key: value for key, value in attributes.items() if value is not None},
        raw=result,
    )


def _pages(payload: dict[str, Any]) -> int:
    pagination = payload.get("pagination")
    if pagination is None:
        return 0
    pages = mapping(pagination, "pagination").get("pages", 0)
    if isinstance(pages, bool) or not isinstance(pages, int) or pages < 0:
        raise MalformedPayload(f"pagination.pages: expected a count, got {pages!r}")
    return pages


def _absolute(uri: str | None, site_url: str) -> str | None:
    if uri is None:
        return None
    return f"{site_url.rstrip('/')}{uri}" if uri.startswith("/") else uri


def _catalog_number(value: object) -> str | None:
    number = text(value)
    return None if number is None or number.lower() == _NO_CATNO else number


def _gtin(barcodes: object) -> str | None:
    # The barcode list mixes real EAN/UPC codes with matrix-runout etchings; keep the first code.
    for entry in strings(barcodes):
        digits = entry.replace(" ", "").replace("-", "")
        if _GTIN.match(digits):
            return digits
    return None


def _year(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if value > 0 else None  # release pages use 0 for "unknown"
    return text(value)
