"""The provider protocol, a provider's configuration, and the errors provider calls raise.

Errors::

    ProviderError            a provider call failed (message names the provider)
      ProviderUnavailable    timeouts, refused connections, 5xx and 429 once retries ran out;
                             ``retry_after`` says when to try again if the provider said so
      ProviderRejected       a 4xx that retrying will not fix (bad credentials, not found)
      ProviderMisconfigured  disabled, or missing credentials or a base URL
      Unsupported            the provider cannot do this (say, search the offers service)
    MalformedPayload         (dispatch.catalog.records) an answer of the wrong shape
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dispatch.catalog.records import ProductRecord


class ProviderError(Exception):
    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message
        self.status = status


class ProviderUnavailable(ProviderError):
    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(provider, message, status=status)
        self.retry_after = retry_after


class ProviderRejected(ProviderError):
    pass


class ProviderMisconfigured(ProviderError):
    pass


class Unsupported(ProviderError):
    pass


@dataclass(frozen=True)
class ProviderConfig:
    """A provider's effective configuration: environment defaults under the admin's edits."""

    name: str
    kind: str
    base_url: str
    currency: str
    enabled: bool = True
    credentials: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    rate_per_minute: int | None = None
    schedule: str = ""  # "@every 1800s", a cron expression, or "" for no scheduled scrape
    timeout_seconds: float = 10.0
    max_retries: int = 3
    retry_after_cap_seconds: float = 60.0
    user_agent: str = "Dispatch"

    def credential(self, key: str) -> str | None:
        value = self.credentials.get(key)
        return value if value else None

    def option(self, key: str, default: Any = None) -> Any:
        value = self.options.get(key)
        return default if value in (None, "") else value


class Provider(Protocol):
    """A source of products. ``search`` answers a live query; ``scrape`` pages everything."""

    config: ProviderConfig

    @property
    def searchable(self) -> bool: ...

    async def search(self, query: str | None, limit: int) -> list[ProductRecord]: ...

    def scrape(self) -> AsyncIterator[list[ProductRecord]]: ...
