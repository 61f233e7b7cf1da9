"""Shopify storefront answers (``/products.json``, ``/search/suggest.json``) as ProductRecords.

The storefront states no currency and no stock: the caller passes the shop's currency, and
every offer's ``stock`` stays None.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

from dispatch.catalog.money import MoneyError, currency_code, to_minor
from dispatch.catalog.providers._payload import html_to_text as html_to_text  # re-exported
from dispatch.catalog.providers._payload import identifier, list_at, mapping, text
from dispatch.catalog.records import MalformedPayload, OfferRecord, ProductRecord

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_DEFAULT_VARIANT = "Default Title"  # Shopify's title for the only variant of an option-less product


def parse_products(
    payload: object, *, provider: str, shop_url: str, currency: str
) -> list[ProductRecord]:
    """Products of one ``/products.json`` page (an empty list past the last page)."""
    keys = ("products",)
    return _records(payload, keys, _page_fields, provider, shop_url, currency)


def parse_suggest(
    payload: object, *, provider: str, shop_url: str, currency: str
) -> list[ProductRecord]:
    """Products of a predictive-search answer (``/search/suggest.json?resources[type]=product``)."""
    keys = ("resources", "results", "products")
    return _records(payload, keys, _suggest_fields, provider, shop_url, currency)


# What the two answers state differently: (url, images, body HTML, product type).
_Fields = tuple[str | None, tuple[str, ...], object, object]


def _page_fields(product: dict[str, Any], shop_url: str) -> _Fields:
    handle = text(product.get("handle"))
    url = _join(shop_url, f"/products/{handle}") if handle else None
    images = _image_sources(product.get("images"))
    return url, images, product.get("body_html"), product.get("product_type")


def _suggest_fields(product: dict[str, Any], shop_url: str) -> _Fields:
    # Suggest URLs carry per-search tracking (_pos, _sid, _ss); without it the URL is stable.
    path = text((text(product.get("url")) or "").partition("?")[0])
    handle = text(product.get("handle"))
    if path is None and handle is not None:
        path = f"/products/{handle}"
    url = _join(shop_url, path) if path else None
    image = _image_source(product.get("image"))
    return url, (image,) if image else (), product.get("body"), product.get("type")


def _records(
    payload: object,
    keys: tuple[str, ...],
    fields: Callable[[dict[str, Any], str], _Fields],
    provider: str,
    shop_url: str,
    currency: str,
) -> list[ProductRecord]:
    code = _shop_currency(currency)
    records = []
    for index, item in enumerate(list_at(payload, *keys)):
        where = f"{'.'.join(keys)}[{index}]"
        product = mapping(item, where)
        records.append(_record(product, where, provider, code, fields(product, shop_url)))
    return records


def _record(
    product: dict[str, Any], where: str, provider: str, currency: str, fields: _Fields
) -> ProductRecord:
    url, images, body, product_type = fields
    external_id = _required_id(product, "id", where)
    title = text(product.get("title"))
    if title is None:
        raise MalformedPayload(f"{where}.title is missing or empty")
    kind = text(product_type)
    offers = _offers(product.get("variants"), currency)
    attributes = {
        "handle": text(product.get("handle")),
        "product_type": kind,
        "options": _option_names(product.get("options")),
        "updated_at": text(product.get("updated_at")),
    }
    return ProductRecord(
        provider=provider,
        external_id=external_id,
        title=title,
        url=url,
        brand=text(product.get("vendor")),
        description=html_to_text(body),
        images=images,
        categories=(kind,) if kind else (),
        tags=_tags(product.get("tags")),
        sku=next((offer.sku for offer in offers if offer.sku), None),
        release_date=_date_part(product.get("published_at")),
        attributes={key: value for key, value in attributes.items() if value is not None},
        offers=offers,
        raw=product,
    )


def _offers(variants: object, currency: str) -> tuple[OfferRecord, ...]:
    if not isinstance(variants, list):
        return ()
    offers = []
    for variant in variants:
        # A variant without an id cannot be followed from one fetch to the next; the
        # product's other variants are still worth keeping.
        if not isinstance(variant, dict) or (variant_id := identifier(variant.get("id"))) is None:
            continue
        price = _price(variant.get("price"), currency)
        compare_at = _price(variant.get("compare_at_price"), currency)
        if compare_at is not None and price is not None and compare_at <= price:
            compare_at = None  # shops leave an old or equal compare-at behind; it is no discount
        title = text(variant.get("title"))
        options = {key: text(variant.get(key)) for key in ("option1", "option2", "option3")}
        offers.append(
            OfferRecord(
                external_id=variant_id,
                price_minor=price,
                currency=currency,
                label=None if title == _DEFAULT_VARIANT else title,
                compare_at_minor=compare_at,
                available=variant.get("available") is True,
                stock=None,
                sku=text(variant.get("sku")),
                attributes={key: value for key, value in options.items() if value is not None},
            )
        )
    return tuple(offers)


def _shop_currency(currency: str) -> str:
    code = currency_code(currency)
    if code is None:
        raise MoneyError("a shop currency is required: the storefront does not state one")
    return code


def _join(shop_url: str, path: str) -> str:
    return urljoin(shop_url.rstrip("/") + "/", path)


def _image_source(image: object) -> str | None:
    if isinstance(image, dict):
        return text(image.get("src")) or text(image.get("url"))
    return text(image)


def _image_sources(images: object) -> tuple[str, ...]:
    if not isinstance(images, list):
        return ()
    return tuple(source for image in images if (source := _image_source(image)))


def _option_names(options: object) -> list[str] | None:
    if not isinstance(options, list):
        return None
    return [
        name
        for option in options
        if isinstance(option, dict) and (name := text(option.get("name")))
    ]


def _tags(tags: object) -> tuple[str, ...]:
    # The storefront sends an array, the Admin API and /products/{handle}.json one joined string.
    if isinstance(tags, str):
        tags = tags.split(",")
    if not isinstance(tags, list):
        return ()
    return tuple(tag for item in tags if (tag := text(item)))


def _date_part(timestamp: object) -> str | None:
    if isinstance(timestamp, str) and (match := _ISO_DATE.match(timestamp.strip())):
        return match.group(0)
    return None


def _price(amount: object, currency: str) -> int | None:
    # One unreadable price costs its offer the price, not the whole page.
    if isinstance(amount, bool) or not isinstance(amount, str | int | float):
        return None
    try:
        minor = to_minor(amount, currency)
    except MoneyError:
        return None
    return minor if minor is None or minor >= 0 else None


def _required_id(item: dict[str, Any], key: str, where: str) -> str:
    found = identifier(item.get(key))
    if found is None:
        raise MalformedPayload(f"{where}.{key} is missing or not an id")
    return found
