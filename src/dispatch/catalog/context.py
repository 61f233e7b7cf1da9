"""The catalogue's per-process parts: provider configs, HTTP sessions, pacing, tokens, log."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dispatch.catalog import configs
from dispatch.catalog.http import ProviderHttp, RateGate
from dispatch.catalog.provider import Provider, ProviderConfig
from dispatch.catalog.registry import KINDS, default_configs
from dispatch.catalog.requests import RequestLog
from dispatch.catalog.store import UpsertSummary
from dispatch.catalog.tokens import TokenStore
from dispatch.config import Settings
from dispatch.db.engine import Database
from dispatch.telemetry.events import Telemetry
from dispatch.telemetry.metrics import Metrics

if TYPE_CHECKING:
    import aiohttp

CONFIG_CACHE_SECONDS = 2.0


class UnknownProvider(KeyError):
    """No provider of that name is configured."""


@dataclass
class CatalogContext:
    settings: Settings
    database: Database
    metrics: Metrics | None = None
    telemetry: Telemetry | None = None  # seed 000's scraper.* and api.products events
    requests: RequestLog = field(init=False)
    defaults: dict[str, ProviderConfig] = field(init=False)
    _sessions: dict[str, aiohttp.ClientSession] = field(default_factory=dict)
    _gates: dict[str, RateGate] = field(default_factory=dict)
    _tokens: dict[str, TokenStore] = field(default_factory=dict)
    _cache: tuple[float, dict[str, ProviderConfig]] | None = None

    def __post_init__(self) -> None:
        self.defaults = default_configs(self.settings)
        self.requests = RequestLog(metrics=self.metrics)

    def emit(self, name: str, **attributes: object) -> None:
        if self.telemetry is not None:
            self.telemetry.emit(name, **attributes)

    def count_written(self, provider: str, summary: UpsertSummary) -> None:
        if self.metrics is None:
            return
        for result in ("created", "updated", "unchanged"):
            amount = getattr(summary, result)
            if amount:
                self.metrics.catalog_products_written.labels(provider, result).inc(amount)

    def invalidate(self) -> None:
        self._cache = None

    async def configs(self) -> dict[str, ProviderConfig]:
        """Every provider's effective configuration (cached for a couple of seconds)."""
        now = time.monotonic()
        if self._cache is not None and now - self._cache[0] < CONFIG_CACHE_SECONDS:
            return self._cache[1]
        async with self.database.session(write=False) as session:
            loaded = await configs.load(session, self.defaults)
        found = {name: config for name, (config, _) in loaded.items()}
        self._cache = (now, found)
        return found

    async def config(self, name: str) -> ProviderConfig:
        found = (await self.configs()).get(name)
        if found is None:
            raise UnknownProvider(name)
        return found

    async def provider(self, name: str) -> Provider:
        return self.build(await self.config(name))

    def build(self, config: ProviderConfig) -> Provider:
        """The provider object for ``config``, sharing this process's session and pacing."""
        return KINDS[config.kind](config, self.http(config), self.tokens(config.name))

    def http(self, config: ProviderConfig) -> ProviderHttp:
        """Requests to ``config``'s provider on this process's session, pacing and log
        (also for calls made on a user's behalf, such as their Discogs lists)."""
        gate = self._gates.get(config.name)
        if gate is None or gate.per_minute != config.rate_per_minute:
            gate = self._gates[config.name] = RateGate(config.rate_per_minute)
        return ProviderHttp(config, lambda: self.session(config.name), self.requests, gate)

    def tokens(self, name: str) -> TokenStore:
        store = self._tokens.get(name)
        if store is None:
            margin = self.settings.offers_token_margin_seconds
            store = self._tokens[name] = TokenStore(self.database, name, margin)
        return store

    def session(self, name: str) -> aiohttp.ClientSession:
        """One HTTP session per provider, made inside the running loop on first use."""
        session = self._sessions.get(name)
        if session is None or session.closed:
            import aiohttp  # a process that never calls a provider never loads aiohttp

            connector = aiohttp.TCPConnector(limit=self.settings.max_connections)
            session = self._sessions[name] = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": self.settings.user_agent}
            )
        return session

    async def flush_requests(self) -> int:
        return await self.requests.flush(self.database)

    async def close(self) -> None:
        await self.flush_requests()
        for session in self._sessions.values():
            if not session.closed:
                await session.close()
        self._sessions.clear()
