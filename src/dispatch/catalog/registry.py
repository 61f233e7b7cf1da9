"""The explicit provider registry: each kind's class, and the instances configured by default.

Seed 000's names are kept: ``complexshop`` and ``universalstore`` (two Shopify storefronts)
and ``goat``; Discogs, eBay and the offers service of seed 001 join them. Their defaults
come from the environment; the admin API stores edits on top (``catalog.providers``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dispatch import __version__
from dispatch.catalog.http import ProviderHttp
from dispatch.catalog.provider import Provider, ProviderConfig
from dispatch.catalog.providers.discogs.client import DiscogsProvider
from dispatch.catalog.providers.ebay.client import EbayProvider
from dispatch.catalog.providers.goat.client import GoatProvider
from dispatch.catalog.providers.offers.client import OffersProvider
from dispatch.catalog.providers.shopify.client import ShopifyProvider
from dispatch.catalog.tokens import TokenStore
from dispatch.config import Settings

Factory = Callable[[ProviderConfig, ProviderHttp, TokenStore], Provider]

KINDS: Mapping[str, Factory] = {
    "shopify": lambda config, http, tokens: ShopifyProvider(config, http),
    "goat": lambda config, http, tokens: GoatProvider(config, http),
    "discogs": lambda config, http, tokens: DiscogsProvider(config, http),
    "ebay": EbayProvider,
    "offers": OffersProvider,
}
OFFERS = "offers"
# Credentials each kind needs before it can be enabled.
REQUIRED_CREDENTIALS: Mapping[str, tuple[str, ...]] = {
    "shopify": (),
    "goat": ("app_id", "api_key"),
    "discogs": ("token",),
    "ebay": ("client_id", "client_secret"),
    "offers": ("refresh_token",),
}


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def _url(value: Any) -> str:
    return str(value).rstrip("/") if value else ""


def default_configs(settings: Settings) -> dict[str, ProviderConfig]:
    """Every provider this build configures, from the environment."""
    every = f"@every {settings.scrape_interval_seconds}s"
    common: dict[str, Any] = {
        "timeout_seconds": settings.default_timeout_seconds,
        "max_retries": settings.catalog_provider_retries,
        "retry_after_cap_seconds": settings.catalog_retry_after_max_seconds,
        "user_agent": settings.user_agent,
    }
    discogs_token = _secret(settings.discogs_token)
    ebay_secret = _secret(settings.ebay_client_secret)
    offers_url = _url(settings.offers_service_url)
    refresh = _secret(settings.offers_refresh_token)
    configs = [
        ProviderConfig("complexshop", "shopify", _url(settings.complexshop_base_url), "USD",
                       schedule=every, **common),
        ProviderConfig("universalstore", "shopify", _url(settings.universalstore_base_url),
                       "AUD", schedule=every, **common),
        ProviderConfig(
            "goat", "goat", _url(settings.goat_base_url), "USD",
            credentials={"app_id": settings.goat_algolia_app_id,
                         "api_key": _secret(settings.goat_algolia_api_key)},
            options={"index": settings.goat_algolia_index}, schedule=every, **common,
        ),
        ProviderConfig(
            "discogs", "discogs", _url(settings.discogs_base_url), "USD",
            enabled=bool(discogs_token), credentials={"token": discogs_token},
            # Discogs wants a User-Agent naming the application, not a browser's.
            options={"user_agent": f"{settings.app_name}/{__version__}"},
            rate_per_minute=60 if discogs_token else 25, schedule=every, **common,
        ),
        ProviderConfig(
            "ebay", "ebay", _url(settings.ebay_base_url), "USD",
            enabled=bool(settings.ebay_client_id and ebay_secret),
            credentials={"client_id": settings.ebay_client_id or "",
                         "client_secret": ebay_secret},
            options={"marketplace_id": settings.ebay_marketplace_id}, schedule=every, **common,
        ),
        ProviderConfig(
            OFFERS, "offers", offers_url, settings.offers_currency.upper(),
            enabled=bool(offers_url and refresh), credentials={"refresh_token": refresh},
            schedule=settings.sync_schedule, **common,
        ),
    ]  # fmt: skip
    return {config.name: config for config in configs}


def missing_credentials(config: ProviderConfig) -> list[str]:
    return [key for key in REQUIRED_CREDENTIALS.get(config.kind, ()) if not config.credential(key)]
