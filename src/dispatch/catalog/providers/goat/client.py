"""GOAT through its Algolia index (host, application id, key and index are configuration)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote, urlencode

from dispatch.catalog.http import ProviderHttp
from dispatch.catalog.provider import ProviderConfig, ProviderMisconfigured
from dispatch.catalog.providers.goat.parse import parse_query
from dispatch.catalog.records import ProductRecord

PAGE_SIZE = 100
MAX_PAGES = 10  # Algolia stops paging at 1,000 hits by default


class GoatProvider:
    def __init__(self, config: ProviderConfig, http: ProviderHttp) -> None:
        self.config = config
        self.http = http

    @property
    def searchable(self) -> bool:
        return True

    async def _query(self, query: str, page: int, size: int) -> tuple[list[ProductRecord], int]:
        app_id, key = self.config.credential("app_id"), self.config.credential("api_key")
        if not app_id or not key:
            raise ProviderMisconfigured(
                self.config.name, "the Algolia app_id and api_key are unset"
            )
        index = str(self.config.option("index", "product_variants_v2"))
        params = urlencode({"query": query, "hitsPerPage": size, "page": page, "distinct": "true"})
        reply = await self.http.request(
            "POST",
            f"/1/indexes/{quote(index, safe='')}/query",
            json_body={"params": params},
            headers={"x-algolia-application-id": app_id, "x-algolia-api-key": key},
        )
        reply.raise_for_status("Algolia query")
        return parse_query(
            reply.json(),
            provider=self.config.name,
            currency=self.config.currency,
            site_url=str(self.config.option("site_url", "https://www.goat.com")),
        )

    async def search(self, query: str | None, limit: int) -> list[ProductRecord]:
        products, _ = await self._query(query or "", 0, min(max(limit, 1), PAGE_SIZE))
        return products[:limit]

    async def scrape(self) -> AsyncIterator[list[ProductRecord]]:
        query = str(self.config.option("scrape_query", ""))
        max_pages = int(self.config.option("max_pages", MAX_PAGES))
        page, pages = 0, 1
        while page < min(pages, max_pages):
            products, pages = await self._query(query, page, PAGE_SIZE)
            if not products:
                return
            yield products
            page += 1
