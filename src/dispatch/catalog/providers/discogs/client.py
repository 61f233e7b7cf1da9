"""Discogs: database search, priced from marketplace stats; or a seller's inventory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog

from dispatch.catalog.http import ProviderHttp
from dispatch.catalog.provider import ProviderConfig, ProviderError, ProviderMisconfigured
from dispatch.catalog.providers.discogs.parse import apply_stats, parse_inventory, parse_search
from dispatch.catalog.records import MalformedPayload, ProductRecord

log = structlog.get_logger(__name__)

PAGE_SIZE = 50
MAX_PAGES = 5


class DiscogsProvider:
    def __init__(self, config: ProviderConfig, http: ProviderHttp) -> None:
        self.config = config
        self.http = http

    @property
    def searchable(self) -> bool:
        return True

    def _headers(self) -> dict[str, str]:
        token = self.config.credential("token")
        if not token:
            raise ProviderMisconfigured(self.config.name, "DISCOGS_TOKEN is unset")
        agent = str(self.config.option("user_agent", self.config.user_agent))
        return {"Authorization": f"Discogs token={token}", "User-Agent": agent}

    async def _search_page(
        self, query: str, page: int, size: int
    ) -> tuple[list[ProductRecord], int]:
        reply = await self.http.request(
            "GET",
            "/database/search",
            params={"q": query, "type": "release", "per_page": size, "page": page},
            headers=self._headers(),
        )
        reply.raise_for_status("database/search")
        return parse_search(
            reply.json(),
            provider=self.config.name,
            site_url=str(self.config.option("site_url", "https://www.discogs.com")),
        )

    async def _priced(self, product: ProductRecord) -> ProductRecord:
        """The release with its marketplace price; without one when the stats call fails."""
        release_id = product.external_id.partition(":")[2] or product.external_id
        try:
            reply = await self.http.request(
                "GET",
                f"/marketplace/stats/{release_id}",
                params={"curr_abbr": self.config.currency},
                headers=self._headers(),
            )
            reply.raise_for_status("marketplace/stats")
            return apply_stats(product, reply.json())
        except (ProviderError, MalformedPayload) as exc:
            log.warning("provider.stats_failed", provider=self.config.name, error=str(exc))
            return product

    async def search(self, query: str | None, limit: int) -> list[ProductRecord]:
        products, _ = await self._search_page(query or "", 1, min(max(limit, 1), 100))
        return [await self._priced(p) for p in products[:limit]]

    async def scrape(self) -> AsyncIterator[list[ProductRecord]]:
        max_pages = int(self.config.option("max_pages", MAX_PAGES))
        seller = self.config.option("seller")
        if seller:
            for page in range(1, max_pages + 1):
                reply = await self.http.request(
                    "GET",
                    f"/users/{seller}/inventory",
                    params={"per_page": PAGE_SIZE, "page": page, "sort": "listed"},
                    headers=self._headers(),
                )
                reply.raise_for_status("inventory")
                products, pages = parse_inventory(reply.json(), provider=self.config.name)
                if products:
                    yield products
                if page >= pages or not products:
                    break
        for query in self.config.option("queries", []) or []:
            for page in range(1, max_pages + 1):
                found, pages = await self._search_page(str(query), page, PAGE_SIZE)
                if found:
                    yield [await self._priced(p) for p in found]
                if page >= pages or not found:
                    break
