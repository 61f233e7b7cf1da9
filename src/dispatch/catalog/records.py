"""What a provider hands the catalogue: normalised products with their offers, no I/O.

A product is one listing at one provider (a Shopify product, a GOAT product template,
a Discogs release, an eBay item, a product of the offers service); its offers are the
things with a price (Shopify variants, sizes, marketplace listings, offers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class OfferRecord:
    """One priced option of a product: a variant, a size, a marketplace offer."""

    external_id: str
    price_minor: int | None
    currency: str | None
    label: str | None = None
    compare_at_minor: int | None = None  # a reference price: compare-at, retail, original
    available: bool = True
    stock: int | None = None  # None where the provider does not say
    sku: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProductRecord:
    """One product as a provider lists it, normalised; ``raw`` keeps the payload it came from."""

    provider: str
    external_id: str
    title: str
    url: str | None = None
    brand: str | None = None
    description: str | None = None
    images: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    sku: str | None = None
    gtin: str | None = None
    style_code: str | None = None
    release_date: str | None = None  # ISO date, year-month or year, as precise as known
    attributes: Mapping[str, Any] = field(default_factory=dict)
    offers: tuple[OfferRecord, ...] = ()
    raw: Mapping[str, Any] | None = None


class MalformedPayload(ValueError):
    """A provider answered with something that is not the shape its parser knows."""
