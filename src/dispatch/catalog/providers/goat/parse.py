"""GOAT Algolia hits (index ``product_variants_v2``) as ProductRecords with one offer each.

Prices in a hit are already integer cents. The parser is keyed on the hit's fields, not on
the envelope's origin, so product-template records without ``slug`` parse too (without a URL).
"""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any

from dispatch.catalog.money import MoneyError, currency_code
from dispatch.catalog.providers._payload import html_to_text, identifier, list_at, mapping, text
from dispatch.catalog.records import MalformedPayload, OfferRecord, ProductRecord

_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})")
_IMAGE_KEYS = ("main_picture_url", "grid_picture_url", "original_picture_url")
_ATTRIBUTE_KEYS = ("color", "designer", "silhouette", "gender", "size_range", "shoe_condition")


def parse_query(
    payload: object,
    *,
    provider: str,
    currency: str = "USD",
    site_url: str = "https://www.goat.com",
) -> tuple[list[ProductRecord], int]:
    """Products of an Algolia single-index answer, and its page count (``nbPages``, 0 if absent)."""
    code = currency_code(currency)
    if code is None:
        raise MoneyError("a currency is required: Algolia hits carry cents without one")
    hits = list_at(payload, "hits")
    pages = mapping(payload, "payload").get("nbPages", 0)
    if isinstance(pages, bool) or not isinstance(pages, int) or pages < 0:
        raise MalformedPayload(f"nbPages: expected a count, got {pages!r}")
    products = [
        _product(mapping(hit, f"hits[{index}]"), f"hits[{index}]", provider, code, site_url)
        for index, hit in enumerate(hits)
    ]
    return products, pages


def _product(
    hit: dict[str, Any], where: str, provider: str, currency: str, site_url: str
) -> ProductRecord:
    ids = (identifier(hit.get(key)) for key in ("product_template_id", "objectID", "id"))
    external_id = next((found for found in ids if found), None)
    if external_id is None:
        raise MalformedPayload(f"{where}: no product_template_id, objectID or id")
    slug = text(hit.get("slug"))
    title = text(hit.get("name")) or slug
    if title is None:
        raise MalformedPayload(f"{where}: no name or slug")
    style_code = text(hit.get("sku"))
    attributes = {key: hit[key] for key in _ATTRIBUTE_KEYS if hit.get(key) is not None}
    return ProductRecord(
        provider=provider,
        external_id=external_id,
        title=title,
        url=f"{site_url.rstrip('/')}/sneakers/{slug}" if slug else None,
        brand=text(hit.get("brand_name")),
        description=html_to_text(hit.get("story_html")),
        images=tuple(dict.fromkeys(url for key in _IMAGE_KEYS if (url := text(hit.get(key))))),
        categories=_categories(hit),
        sku=style_code,
        style_code=style_code,  # GOAT's "sku" is the manufacturer's style code
        release_date=_release_date(hit),
        attributes=attributes,
        offers=(_offer(hit, external_id, currency),),
        raw=hit,
    )


def _offer(hit: dict[str, Any], external_id: str, currency: str) -> OfferRecord:
    size = _size_label(hit.get("size"))
    price = _cents(hit.get("lowest_price_cents"))
    if price is None:
        price = _cents(hit.get("instant_ship_lowest_price_cents"))
    has_stock = hit.get("has_stock")
    return OfferRecord(
        external_id=f"{external_id}:{size or 'lowest'}",
        price_minor=price,
        currency=currency,
        label=size,
        compare_at_minor=_cents(hit.get("retail_price_cents")),
        available=has_stock if isinstance(has_stock, bool) else price is not None,
        stock=None,
    )


def _categories(hit: dict[str, Any]) -> tuple[str, ...]:
    listed = hit.get("category")
    names = [text(item) for item in listed] if isinstance(listed, list) else []
    names.append(text(hit.get("product_category")))
    return tuple(dict.fromkeys(name for name in names if name))


def _release_date(hit: dict[str, Any]) -> str | None:
    stamp = hit.get("release_date")
    if isinstance(stamp, str) and (match := _DATE.match(stamp.strip())):
        try:
            return date(*(int(part) for part in match.groups())).isoformat()
        except ValueError:
            pass  # a date that does not exist: fall back to the year
    year = hit.get("release_date_year")
    if isinstance(year, str):
        year = int(year) if year.strip().isdigit() else None
    if isinstance(year, int) and not isinstance(year, bool) and 1000 <= year <= 9999:
        return str(year)
    return None


def _size_label(size: object) -> str | None:
    if isinstance(size, float) and math.isfinite(size):
        return str(int(size)) if size.is_integer() else str(size)
    return identifier(size)


def _cents(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None
