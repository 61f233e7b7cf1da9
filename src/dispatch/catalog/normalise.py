"""Pure helpers turning a ProductRecord into column values: hashes, search text, summaries."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from dispatch.catalog.records import OfferRecord, ProductRecord

_NOT_CODE = re.compile(r"[^0-9A-Z]")
MAX_LIST = 50  # images, tags and categories kept per product
MAX_TEXT = 4000  # characters of search text per column


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)


def code_key(value: str | None) -> str | None:
    """An SKU, style code or GTIN reduced to upper-case letters and digits ("dd1391-100" ->
    "DD1391100"), so the same item matches across providers however they punctuate it."""
    if not value:
        return None
    key = _NOT_CODE.sub("", value.upper())
    return key or None


def group_key(record: ProductRecord) -> str | None:
    """What groups listings of one item across providers: GTIN, else style code, else SKU."""
    gtin = code_key(record.gtin)
    if gtin:
        return "gtin:" + gtin.lstrip("0")
    code = code_key(record.style_code) or code_key(record.sku)
    return "code:" + code if code and len(code) >= 5 else None


def _unique(values: Iterable[str | None], limit: int = MAX_LIST) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        if value and value.strip():
            seen.setdefault(value.strip(), None)
        if len(seen) >= limit:
            break
    return list(seen)


def search_codes(record: ProductRecord) -> str:
    """SKU, style code, GTIN and offer SKUs: searched as they are and without punctuation."""
    codes = _unique([record.sku, record.style_code, record.gtin, *(o.sku for o in record.offers)])
    squeezed = [code_key(code) for code in codes]
    return " ".join(_unique([*codes, *squeezed]))[:MAX_TEXT]


def search_keywords(record: ProductRecord) -> str:
    return " ".join(_unique([*record.tags, *record.categories]))[:MAX_TEXT]


def content_hash(record: ProductRecord) -> str:
    """A hash of the normalised projection: unchanged products are not rewritten."""
    projection = {
        "title": record.title,
        "url": record.url,
        "brand": record.brand,
        "description": record.description,
        "images": record.images[:MAX_LIST],
        "categories": record.categories[:MAX_LIST],
        "tags": record.tags[:MAX_LIST],
        "sku": record.sku,
        "gtin": record.gtin,
        "style_code": record.style_code,
        "release_date": record.release_date,
        "attributes": record.attributes,
        "offers": [
            [o.external_id, o.label, o.sku, o.compare_at_minor, o.attributes] for o in record.offers
        ],
    }
    return hashlib.sha256(_canonical(projection)).hexdigest()


def product_values(record: ProductRecord) -> dict[str, Any]:
    """The product's own columns (not ids, times or the offer summary)."""
    return {
        "title": record.title[:2000],
        "brand": record.brand[:255] if record.brand else None,
        "brand_key": record.brand.strip().lower()[:255] if record.brand else None,
        "url": record.url,
        "description": record.description,
        "images": _unique(record.images),
        "categories": _unique(record.categories),
        "tags": _unique(record.tags),
        "sku": record.sku[:128] if record.sku else None,
        "gtin": record.gtin[:32] if record.gtin else None,
        "style_code": record.style_code[:128] if record.style_code else None,
        "group_key": group_key(record),
        "release_date": record.release_date[:10] if record.release_date else None,
        "attributes": dict(record.attributes),
        "raw": dict(record.raw) if record.raw is not None else None,
        "content_hash": content_hash(record),
        "codes": search_codes(record),
        "keywords": search_keywords(record),
    }


def summary(offers: Sequence[OfferRecord]) -> dict[str, Any]:
    """The product's offer summary, for filters and sorting.

    The price shown is the lowest among available offers, or the lowest of all when none
    is available, so an ended or sold-out product still shows what it cost.
    """
    priced = [o for o in offers if o.price_minor is not None]
    pool = [o for o in priced if o.available] or priced
    best = min(pool, key=lambda o: o.price_minor or 0) if pool else None
    return {
        "price_minor": best.price_minor if best else None,
        "currency": best.currency if best else None,
        "compare_at_minor": best.compare_at_minor if best else None,
        "in_stock": any(o.available and (o.stock is None or o.stock > 0) for o in offers),
        "offer_count": len(offers),
    }
