"""eBay Browse API answers (item summary search, errors, OAuth token) as records and values.

Every item summary is one product with one offer; its price is the current bid for auctions.
"""

from __future__ import annotations

from typing import Any

from dispatch.catalog.providers._payload import identifier, list_at, mapping, money, strings, text
from dispatch.catalog.records import MalformedPayload, OfferRecord, ProductRecord


def parse_search(payload: object, *, provider: str) -> tuple[list[ProductRecord], str | None]:
    """Items of an ``item_summary/search`` page, and the URL of the next page (None at the end)."""
    page = mapping(payload, "payload")
    if "itemSummaries" not in page and isinstance(page.get("total"), int):
        items: list[Any] = []  # eBay leaves the list out of a page with no items
    else:
        items = list_at(page, "itemSummaries")
    products = [
        _item(mapping(item, f"itemSummaries[{index}]"), f"itemSummaries[{index}]", provider)
        for index, item in enumerate(items)
    ]
    return products, text(page.get("next"))


def parse_error(payload: object) -> str | None:
    """``"<errorId>: <message>"`` of the first entry of an error answer, or None."""
    errors = payload.get("errors") if isinstance(payload, dict) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    message = text(first.get("message")) if isinstance(first, dict) else None
    if first is None or message is None:
        return None
    error_id = identifier(first.get("errorId"))
    return f"{error_id}: {message}" if error_id else message


def parse_token(payload: object) -> tuple[str, int]:
    """``(access_token, expires_in seconds)`` of a client-credentials token answer."""
    answer = mapping(payload, "payload")
    token = text(answer.get("access_token"))
    if token is None:
        raise MalformedPayload("access_token is missing or empty")
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
        raise MalformedPayload(f"expires_in: expected seconds, got {expires_in!r}")
    return token, expires_in


def _item(item: dict[str, Any], where: str, provider: str) -> ProductRecord:
    item_id = text(item.get("itemId"))
    if item_id is None:
        raise MalformedPayload(f"{where}.itemId is missing or empty")
    title = text(item.get("title"))
    if title is None:
        raise MalformedPayload(f"{where}.title is missing or empty")
    bid = item.get("currentBidPrice")
    price, currency = money(bid if isinstance(bid, dict) else item.get("price"))
    marketing = item.get("marketingPrice")
    original, original_currency = money(
        marketing.get("originalPrice") if isinstance(marketing, dict) else None
    )
    # A reference price in another currency than the price compares with nothing.
    compare_at = original if original_currency == currency else None
    images = [item.get("image"), *_dicts(item.get("additionalImages"))]
    return ProductRecord(
        provider=provider,
        external_id=item_id,
        title=title,
        url=text(item.get("itemWebUrl")),
        images=tuple(dict.fromkeys(url for entry in images if (url := _image_url(entry)))),
        categories=tuple(
            name
            for category in _dicts(item.get("categories"))
            if (name := text(category.get("categoryName")))
        ),
        gtin=text(item.get("gtin")),
        attributes=_attributes(item),
        offers=(
            OfferRecord(
                external_id=item_id,
                price_minor=price,
                currency=currency,
                compare_at_minor=compare_at,
                available=True,
                stock=None,
            ),
        ),
        raw=item,
    )


def _attributes(item: dict[str, Any]) -> dict[str, Any]:
    seller = _object(item.get("seller"))
    location = _object(item.get("itemLocation"))
    costs = [option.get("shippingCost") for option in _dicts(item.get("shippingOptions"))]
    shipping_minor, shipping_currency = money(next((cost for cost in costs if cost), None))
    attributes = {
        "condition": text(item.get("condition")),
        "condition_id": identifier(item.get("conditionId")),
        "buying_options": list(strings(item.get("buyingOptions"))) or None,
        "seller": text(seller.get("username")),
        "seller_feedback_percentage": text(seller.get("feedbackPercentage")),
        "seller_feedback_score": _count(seller.get("feedbackScore")),
        "item_location_country": text(location.get("country")),
        "epid": identifier(item.get("epid")),
        "legacy_item_id": identifier(item.get("legacyItemId")),
        "shipping_minor": shipping_minor,
        "shipping_currency": shipping_currency if shipping_minor is not None else None,
        "bid_count": _count(item.get("bidCount")),
        "item_end_date": text(item.get("itemEndDate")),
        "item_creation_date": text(item.get("itemCreationDate")),
    }
    return {key: value for key, value in attributes.items() if value is not None}


def _image_url(image: object) -> str | None:
    return text(image.get("imageUrl")) if isinstance(image, dict) else None


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(values: object) -> list[dict[str, Any]]:
    return (
        [value for value in values if isinstance(value, dict)] if isinstance(values, list) else []
    )


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value
