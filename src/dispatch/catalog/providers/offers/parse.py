"""Offers-service answers (offers, access token, registration, errors) as records and values.

The service's prices are integers without a currency: the caller names the currency they are
minor units of.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from dispatch.catalog.money import MoneyError, currency_code
from dispatch.catalog.providers._payload import mapping
from dispatch.catalog.records import MalformedPayload, OfferRecord


def parse_offers(payload: object, *, currency: str) -> list[OfferRecord]:
    """The offers of ``GET /products/{id}/offers``, prices in minor units of ``currency``."""
    code = currency_code(currency)
    if code is None:
        raise MoneyError("a currency is required: the offers service does not state one")
    if not isinstance(payload, list):
        raise MalformedPayload(f"payload: expected a list, got {type(payload).__name__}")
    offers = []
    for index, item in enumerate(payload):
        where = f"offers[{index}]"
        offer = mapping(item, where)
        offer_id = offer.get("id")
        if not isinstance(offer_id, str) or not _is_uuid(offer_id):
            raise MalformedPayload(f"{where}.id: expected a UUID string, got {offer_id!r}")
        stock = _count(offer, "items_in_stock", where)
        offers.append(
            OfferRecord(
                external_id=offer_id,
                price_minor=_count(offer, "price", where),
                currency=code,
                available=stock > 0,
                stock=stock,
            )
        )
    return offers


def parse_access_token(payload: object) -> tuple[str, datetime | None]:
    """The token of a ``POST /auth`` answer and its expiry from the JWT (None if unreadable)."""
    token = mapping(payload, "payload").get("access_token")
    if not isinstance(token, str) or not token.strip():
        raise MalformedPayload("access_token is missing or not a string")
    return token, _jwt_expiry(token)


def parse_registered(payload: object) -> str:
    """The product id of a ``POST /products/register`` answer."""
    registered = mapping(payload, "payload").get("id")
    if not isinstance(registered, str) or not _is_uuid(registered):
        raise MalformedPayload(f"id: expected a UUID string, got {registered!r}")
    return registered


def detail(payload: object) -> str | None:
    """The ``detail`` of an error body, a validation-error list joined into one line; else None."""
    found = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(found, str):
        return found.strip() or None
    if isinstance(found, list):
        return "; ".join(text for entry in found if (text := _problem(entry))) or None
    return None


def _jwt_expiry(token: str) -> datetime | None:
    # The expiry only schedules the next refresh: a token whose claims cannot be read is
    # still a token, so every failure here means "unknown", never an error.
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(segment))
    except ValueError:  # also binascii.Error, UnicodeDecodeError and JSONDecodeError
        return None
    expires = claims.get("expires") if isinstance(claims, dict) else None
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        return None
    try:
        return datetime.fromtimestamp(expires, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _problem(entry: object) -> str | None:
    # FastAPI's 422 detail: [{"loc": ["body", "id"], "msg": "...", "type": "..."}]
    if isinstance(entry, str):
        return entry.strip() or None
    if not isinstance(entry, dict) or not isinstance(entry.get("msg"), str):
        return None
    message, location = entry["msg"].strip(), entry.get("loc")
    where = ".".join(str(part) for part in location) if isinstance(location, list) else ""
    return (f"{where}: {message}" if where else message) if message else None


def _count(item: dict[str, Any], key: str, where: str) -> int:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedPayload(f"{where}.{key}: expected an integer, got {value!r}")
    if value < 0:
        raise MalformedPayload(f"{where}.{key}: expected zero or more, got {value}")
    return value


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
