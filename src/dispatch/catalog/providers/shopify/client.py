"""Shopify storefronts: ``/products.json`` paged 250 at a time, predictive search for queries."""

from __future__ import annotations

from collections.abc import AsyncIterator

from dispatch.catalog.http import ProviderHttp
from dispatch.catalog.provider import ProviderConfig
from dispatch.catalog.providers.shopify.parse import parse_products, parse_suggest
from dispatch.catalog.records import ProductRecord

PAGE_SIZE = 250  # the storefront's maximum
SUGGEST_LIMIT = 10  # predictive search answers at most ten products
MAX_PAGES = 100  # 25,000 products: Shopify surfaces cap deep paging about there
FILTER_PAGES = 4  # pages scanned by a query when the shop has no predictive search


class ShopifyProvider:
    def __init__(self, config: ProviderConfig, http: ProviderHttp) -> None:
        self.config = config
        self.http = http
        self.shop_url = str(config.option("site_url", config.base_url)).rstrip("/")

    @property
    def searchable(self) -> bool:
        return True

    async def _page(self, page: int, size: int = PAGE_SIZE) -> list[ProductRecord]:
        reply = await self.http.request(
            "GET", "/products.json", params={"limit": size, "page": page}
        )
        reply.raise_for_status("products.json")
        return parse_products(
            reply.json(),
            provider=self.config.name,
            shop_url=self.shop_url,
            currency=self.config.currency,
        )

    async def search(self, query: str | None, limit: int) -> list[ProductRecord]:
        if not query:
            return (await self._page(1, min(PAGE_SIZE, max(limit, 1))))[:limit]
        reply = await self.http.request(
            "GET",
            "/search/suggest.json",
            params={
                "q": query,
                "resources[type]": "product",
                "resources[limit]": min(limit, SUGGEST_LIMIT),
            },
        )
        if reply.status == 404:  # no predictive search on this shop: filter the listing
            return await self._filtered(query, limit)
        reply.raise_for_status("search/suggest.json")
        found = parse_suggest(
            reply.json(),
            provider=self.config.name,
            shop_url=self.shop_url,
            currency=self.config.currency,
        )
        return found[:limit]

    async def _filtered(self, query: str, limit: int) -> list[ProductRecord]:
        words = query.lower().split()
        found: list[ProductRecord] = []
        for page in range(1, FILTER_PAGES + 1):
            products = await self._page(page)
            for product in products:
                text = " ".join([product.title, product.brand or "", *product.tags]).lower()
                if all(word in text for word in words):
                    found.append(product)
            if not products or len(found) >= limit:
                break
        return found[:limit]

    async def scrape(self) -> AsyncIterator[list[ProductRecord]]:
        max_pages = int(self.config.option("max_pages", MAX_PAGES))
        for page in range(1, max_pages + 1):
            products = await self._page(page)
            if not products:
                return
            yield products
