"""Request and response bodies of the catalogue API.

``ProductOut`` serves both seeds: seed 000's product fields (``provider, name, url, price``
as a float, ``currency, images, description, brand, categories, metadata, last_seen``) and
seed 001's (``id`` a UUID, ``name, description, created_at, updated_at``), plus the
normalised catalogue's own. ``OfferOut`` keeps seed 001's ``id, product_id, price`` (an
integer in minor units) and ``items_in_stock``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, computed_field, field_validator

from dispatch.catalog.configs import EDITABLE
from dispatch.catalog.money import to_major
from dispatch.catalog.provider import ProviderConfig
from dispatch.models import (
    CatalogChange,
    CatalogOffer,
    CatalogPricePoint,
    CatalogProduct,
    CatalogProviderRequest,
)
from dispatch.queue.schedules import InvalidSchedule, validate
from dispatch.security.masking import mask_value

_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


class ProductOut(BaseModel):
    id: str
    provider: str
    external_id: str
    name: str
    title: str
    description: str | None
    brand: str | None
    url: str | None
    images: list[str]
    categories: list[str]
    tags: list[str]
    sku: str | None
    gtin: str | None
    style_code: str | None
    release_date: str | None
    metadata: dict[str, Any]
    price: float | None = Field(description="Major units, as seed 000 reported it")
    price_minor: int | None
    compare_at_price_minor: int | None
    currency: str | None
    in_stock: bool
    offer_count: int
    status: str
    registration_status: str | None
    registration_error: str | None
    group_key: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    last_seen: datetime
    ended_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, p: CatalogProduct) -> ProductOut:
        return cls(
            id=p.uid,
            provider=p.provider,
            external_id=p.external_id,
            name=p.title,
            title=p.title,
            description=p.description,
            brand=p.brand,
            url=p.url,
            images=list(p.images or []),
            categories=list(p.categories or []),
            tags=list(p.tags or []),
            sku=p.sku,
            gtin=p.gtin,
            style_code=p.style_code,
            release_date=p.release_date,
            metadata=dict(p.attributes or {}),
            price=to_major(p.price_minor, p.currency),
            price_minor=p.price_minor,
            compare_at_price_minor=p.compare_at_minor,
            currency=p.currency,
            in_stock=p.in_stock,
            offer_count=p.offer_count,
            status=p.status,
            registration_status=p.registration_status,
            registration_error=p.registration_error,
            group_key=p.group_key,
            first_seen_at=p.first_seen_at,
            last_seen_at=p.last_seen_at,
            last_seen=p.last_seen_at,
            ended_at=p.ended_at,
            created_at=p.created_at,
            updated_at=p.updated_at,
        )


class OfferOut(BaseModel):
    id: str = Field(description="The provider's id of the offer (a UUID at the offers service)")
    product_id: str
    price: int | None = Field(description="Minor units of ``currency``")
    items_in_stock: int | None
    currency: str | None
    label: str | None
    sku: str | None
    available: bool
    compare_at_price: int | None
    first_seen_at: datetime
    last_seen_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, offer: CatalogOffer, product_uid: str) -> OfferOut:
        return cls(
            id=offer.external_id,
            product_id=product_uid,
            price=offer.price_minor,
            items_in_stock=offer.stock,
            currency=offer.currency,
            label=offer.label,
            sku=offer.sku,
            available=offer.available,
            compare_at_price=offer.compare_at_minor,
            first_seen_at=offer.first_seen_at,
            last_seen_at=offer.last_seen_at,
            updated_at=offer.updated_at,
        )


class ProductDetail(ProductOut):
    offers: list[OfferOut]
    same_item: list[ProductOut] = Field(description="Listings of this item at other providers")


class PricePointOut(BaseModel):
    offer_id: str
    label: str | None
    price: int | None
    currency: str | None
    available: bool
    items_in_stock: int | None
    observed_at: datetime

    @classmethod
    def of(cls, point: CatalogPricePoint) -> PricePointOut:
        return cls(
            offer_id=point.offer_external_id,
            label=point.label,
            price=point.price_minor,
            currency=point.currency,
            available=point.available,
            items_in_stock=point.stock,
            observed_at=point.observed_at,
        )


class HistoryOut(BaseModel):
    product_id: str
    points: list[PricePointOut]


class ProductCreate(BaseModel):
    """Seed 001's body: ``name`` and an optional ``description``."""

    name: str = Field(min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=20_000)


class ProductPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=20_000)

    @field_validator("name")
    @classmethod
    def _name_not_null(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("name cannot be null")
        return value


class SearchPage(BaseModel):
    items: list[ProductOut]
    count: int
    next_cursor: str | None


class LiveOut(BaseModel):
    """Seed 000's ``{"providers": {name: [product…]}}``, plus each failed provider's error."""

    providers: dict[str, list[ProductOut]]
    errors: dict[str, dict[str, Any]]


class CacheOut(BaseModel):
    results: list[ProductOut]


def masked_credentials(config: ProviderConfig) -> dict[str, str]:
    return {key: mask_value(value) for key, value in config.credentials.items() if value}


class ProviderHealth(BaseModel):
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    last_result: dict[str, Any]
    requests_24h: int
    errors_24h: int
    error_rate_24h: float
    products: int
    active_products: int
    in_stock_products: int


class ProviderOut(BaseModel):
    name: str
    kind: str
    enabled: bool
    status: str = Field(description="ok, disabled, misconfigured or failing")
    status_detail: str | None
    searchable: bool
    base_url: str
    currency: str
    rate_per_minute: int | None
    schedule: str
    options: dict[str, Any]
    credentials: dict[str, str] = Field(description="Masked; never shown in full")
    edited: list[str]
    health: ProviderHealth


class ProvidersOut(BaseModel):
    """Seed 000's sorted ``providers`` name list, with each provider's details beside it."""

    providers: list[str]
    details: list[ProviderOut]


class ProviderUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    base_url: AnyHttpUrl | None = None
    currency: str | None = None
    credentials: dict[str, str | None] | None = None
    options: dict[str, Any] | None = None
    rate_per_minute: int | None = Field(default=None, ge=1, le=100_000)
    schedule: str | None = Field(default=None, max_length=100)
    reset: list[str] | None = Field(
        default=None, description=f"Fields whose edit is dropped: any of {', '.join(EDITABLE)}"
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is not None and not _CURRENCY.match(value):
            raise ValueError("must be a three-letter ISO 4217 code")
        return value.upper() if value else value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                validate(value)
            except InvalidSchedule as exc:
                raise ValueError(str(exc)) from exc
        return value.strip() if value is not None else None

    @field_validator("reset")
    @classmethod
    def _reset(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or ()) - set(EDITABLE))
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(unknown)}")
        return value

    def changes(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.model_fields_set}
        if "base_url" in out and out["base_url"] is not None:
            out["base_url"] = str(out["base_url"]).rstrip("/")
        return out


class SyncOut(BaseModel):
    provider: str
    job_id: int
    kind: str
    created: bool = Field(description="False when a run of this provider was already queued")


class ProviderRequestOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    provider: str
    method: str
    endpoint: str
    status: int | None
    duration_ms: float
    error: str | None
    attempt: int
    rate_limit_remaining: int | None
    rate_headers: dict[str, str]
    user_id: int | None = Field(description="The user whose watch rule made it (seed 003)")
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status_code(self) -> int | None:
        """Seed 003's name for ``status``."""
        return self.status

    @classmethod
    def of(cls, row: CatalogProviderRequest) -> ProviderRequestOut:
        return cls.model_validate(row)


class ProviderRequestPage(BaseModel):
    items: list[ProviderRequestOut]
    next_before_id: int | None


class ProviderRequestSummary(BaseModel):
    provider: str
    requests: int
    errors: int
    error_rate: float
    mean_ms: float
    max_ms: float
    last_at: datetime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_requests(self) -> int:
        """Seed 003's name for ``requests``."""
        return self.requests

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error_requests(self) -> int:
        """Seed 003's name for ``errors`` (status >= 400, or an error without a status)."""
        return self.errors


class ChangeOut(BaseModel):
    id: int
    product_id: str
    provider: str
    offer_id: str | None
    kind: str
    details: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: CatalogChange) -> ChangeOut:
        return cls(
            id=row.id,
            product_id=row.product_uid,
            provider=row.provider,
            offer_id=row.offer_external_id,
            kind=row.kind,
            details=dict(row.details or {}),
            created_at=row.created_at,
        )


class ChangesPage(BaseModel):
    items: list[ChangeOut]
    next_after: int = Field(description="Pass as ``after`` to read on from here")
