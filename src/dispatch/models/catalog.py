"""Catalogue: providers and their requests, products with offers, price history, changes.

A product is one listing at one provider, unique by ``(provider, external_id)``; products
created through the API (seed 001) belong to the ``offers`` provider and carry their
registration state. Money is integer minor units plus an ISO 4217 code. Price history and
the change feed are appended only when something changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db.base import Base, BigId, partial, utcnow

PRODUCT_STATUSES = ("active", "ended")
REGISTRATION_STATUSES = ("pending", "registered", "failed")
CHANGE_KINDS = ("new_listing", "price_change", "stock_change", "ended", "relisted", "removed")


class CatalogProvider(Base):
    """A configured provider: defaults from the environment, edits from the admin API."""

    __tablename__ = "catalog_providers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    base_url: Mapped[str] = mapped_column(Text)
    currency: Mapped[str] = mapped_column(String(3))
    credentials: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rate_per_minute: Mapped[int | None] = mapped_column(default=None)
    schedule: Mapped[str] = mapped_column(String(100), default="")
    # Fields the admin changed: the environment no longer sets them at start-up.
    edited: Mapped[list[str]] = mapped_column(JSON, default=list)
    next_run_at: Mapped[datetime | None] = mapped_column(default=None)  # the next scheduled run
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_error_at: Mapped[datetime | None] = mapped_column(default=None)
    last_result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CatalogProviderToken(Base):
    """An access token shared by every process (the offers service allows one at a time)."""

    __tablename__ = "catalog_provider_tokens"

    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    access_token: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # A process refreshing the token holds this lease; the others wait for its result.
    refreshing_until: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CatalogProviderRequest(Base):
    """One outbound request to a provider, kept for the provider-requests API until retention."""

    __tablename__ = "catalog_provider_requests"
    __table_args__ = (
        Index("ix_catalog_provider_requests_provider_created", "provider", "created_at"),
        Index("ix_catalog_provider_requests_created", "created_at"),
        Index("ix_catalog_provider_requests_user_created", "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    endpoint: Mapped[str] = mapped_column(Text)  # the path, without the query string
    status: Mapped[int | None] = mapped_column(default=None)
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempt: Mapped[int] = mapped_column(default=1)
    rate_limit_remaining: Mapped[int | None] = mapped_column(default=None)
    rate_headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # The user whose watch rule made the request (seed 003's "own" provider requests);
    # None for scheduled scrapes and admin calls. No foreign key: the log outlives users.
    user_id: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CatalogProduct(Base):
    """A product at one provider, normalised; ``raw`` keeps the payload for re-parsing."""

    __tablename__ = "catalog_products"
    __table_args__ = (
        UniqueConstraint("provider", "external_id", name="uq_catalog_products_provider_external"),
        CheckConstraint("status IN ('active', 'ended')", name="status"),
        Index("ix_catalog_products_provider", "provider", "id"),
        Index("ix_catalog_products_brand", "brand_key", "id"),
        Index("ix_catalog_products_price", "price_minor", "id"),
        Index("ix_catalog_products_last_seen", "last_seen_at"),
        # Partial: most products have no group and no registration (only seed 001's do).
        Index("ix_catalog_products_group", "group_key", **partial("group_key IS NOT NULL")),
        Index(
            "ix_catalog_products_registration",
            "registration_status",
            **partial("registration_status IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)  # the public id (a UUID)
    provider: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(Text)
    brand: Mapped[str | None] = mapped_column(String(255), default=None)
    brand_key: Mapped[str | None] = mapped_column(String(255), default=None)  # lower-cased
    url: Mapped[str | None] = mapped_column(Text, default=None)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    images: Mapped[list[str]] = mapped_column(JSON, default=list)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    sku: Mapped[str | None] = mapped_column(String(128), default=None)
    gtin: Mapped[str | None] = mapped_column(String(32), default=None)
    style_code: Mapped[str | None] = mapped_column(String(128), default=None)
    # Listings of the same item at several providers share it (GTIN, SKU or style code).
    group_key: Mapped[str | None] = mapped_column(String(160), default=None)
    release_date: Mapped[str | None] = mapped_column(String(10), default=None)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(12), default="active")
    registration_status: Mapped[str | None] = mapped_column(String(12), default=None)
    registration_error: Mapped[str | None] = mapped_column(Text, default=None)
    # Summary of the offers, for filters and sorting: the lowest available price (or the
    # lowest price when nothing is available), its currency, and whether any is in stock.
    price_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    compare_at_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    in_stock: Mapped[bool] = mapped_column(Boolean, default=False)
    offer_count: Mapped[int] = mapped_column(default=0)
    # Search text beside the title and brand (indexed outside the ORM, see catalog.search).
    codes: Mapped[str] = mapped_column(Text, default="")
    keywords: Mapped[str] = mapped_column(Text, default="")
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CatalogOffer(Base):
    """A priced option of a product: a variant, a size, an offer of the offers service."""

    __tablename__ = "catalog_offers"
    __table_args__ = (
        UniqueConstraint("product_id", "external_id", name="uq_catalog_offers_product_external"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    product_id: Mapped[int] = mapped_column(
        # Looked up through the (product_id, external_id) unique index: no index of its own.
        ForeignKey("catalog_products.id", ondelete="CASCADE")
    )
    external_id: Mapped[str] = mapped_column(String(255))
    label: Mapped[str | None] = mapped_column(String(255), default=None)
    sku: Mapped[str | None] = mapped_column(String(128), default=None)
    price_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    compare_at_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    stock: Mapped[int | None] = mapped_column(default=None)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CatalogPricePoint(Base):
    """An offer's price and stock from ``observed_at`` on: appended only when they change."""

    __tablename__ = "catalog_price_points"
    __table_args__ = (
        Index("ix_catalog_price_points_product_observed", "product_id", "observed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("catalog_products.id", ondelete="CASCADE"))
    offer_external_id: Mapped[str] = mapped_column(String(255))
    label: Mapped[str | None] = mapped_column(String(255), default=None)
    price_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    stock: Mapped[int | None] = mapped_column(default=None)
    observed_at: Mapped[datetime] = mapped_column(default=utcnow)


class CatalogChange(Base):
    """The change feed: new listings, price and stock changes, ends; read by id cursor."""

    __tablename__ = "catalog_changes"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('new_listing', 'price_change', 'stock_change', 'ended', 'relisted', "
            "'removed')",
            name="kind",
        ),
        Index("ix_catalog_changes_created", "created_at"),
        Index("ix_catalog_changes_product", "product_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign key: a deleted product's changes stay readable by the feed's consumers.
    product_id: Mapped[int] = mapped_column(BigId)
    product_uid: Mapped[str] = mapped_column(String(36))
    provider: Mapped[str] = mapped_column(String(64))
    offer_external_id: Mapped[str | None] = mapped_column(String(255), default=None)
    kind: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
