"""eBay Browse API: an application token cached until it expires, refreshed once on 401."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta

from dispatch.catalog.http import ProviderHttp, Reply
from dispatch.catalog.provider import ProviderConfig, ProviderMisconfigured
from dispatch.catalog.providers.ebay.parse import parse_error, parse_search, parse_token
from dispatch.catalog.records import ProductRecord
from dispatch.catalog.tokens import Token, TokenStore
from dispatch.db.base import utcnow

SCOPE = "https://api.ebay.com/oauth/api_scope"
PAGE_SIZE = 200  # the Browse API's maximum
MAX_PAGES = 5
SEARCH = "/buy/browse/v1/item_summary/search"


class EbayProvider:
    def __init__(self, config: ProviderConfig, http: ProviderHttp, tokens: TokenStore) -> None:
        self.config = config
        self.http = http
        self.tokens = tokens

    @property
    def searchable(self) -> bool:
        return True

    async def _fetch_token(self) -> Token:
        client_id = self.config.credential("client_id")
        secret = self.config.credential("client_secret")
        if not client_id or not secret:
            raise ProviderMisconfigured(
                self.config.name, "EBAY_CLIENT_ID and EBAY_CLIENT_SECRET are unset"
            )
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        reply = await self.http.request(
            "POST",
            "/identity/v1/oauth2/token",
            data={"grant_type": "client_credentials", "scope": SCOPE},
            headers={"Authorization": f"Basic {basic}"},
        )
        reply.raise_for_status("oauth2/token")
        value, expires_in = parse_token(reply.json())
        return Token(value, utcnow() + timedelta(seconds=expires_in))

    async def _get(self, params: Mapping[str, str | int]) -> Reply:
        token = await self.tokens.get(self._fetch_token)
        for attempt in (1, 2):
            headers = {
                "Authorization": f"Bearer {token.value}",
                "X-EBAY-C-MARKETPLACE-ID": str(self.config.option("marketplace_id", "EBAY_US")),
            }
            reply = await self.http.request("GET", SEARCH, params=params, headers=headers)
            if reply.status != 401 or attempt == 2:
                break
            await self.tokens.invalidate(token.value)  # refused: refresh once and retry once
            token = await self.tokens.get(self._fetch_token)
        if not reply.ok:
            detail = parse_error(_json_or_none(reply))
            reply.raise_for_status(f"item_summary/search ({detail})" if detail else SEARCH)
        return reply

    async def _page(
        self, query: str, offset: int, size: int
    ) -> tuple[list[ProductRecord], str | None]:
        params: dict[str, str | int] = {"q": query, "limit": size, "offset": offset}
        sort = self.config.option("sort")
        if sort:
            params["sort"] = str(sort)
        reply = await self._get(params)
        return parse_search(reply.json(), provider=self.config.name)

    async def search(self, query: str | None, limit: int) -> list[ProductRecord]:
        if not query:
            raise ProviderMisconfigured(self.config.name, "eBay search needs a query")
        products, _ = await self._page(query, 0, min(max(limit, 1), PAGE_SIZE))
        return products[:limit]

    async def scrape(self) -> AsyncIterator[list[ProductRecord]]:
        max_pages = int(self.config.option("max_pages", MAX_PAGES))
        for query in self.config.option("queries", []) or []:
            for page in range(max_pages):
                products, following = await self._page(str(query), page * PAGE_SIZE, PAGE_SIZE)
                if products:
                    yield products
                if not following or not products:
                    break


def _json_or_none(reply: Reply) -> object:
    try:
        return reply.json()
    except ValueError:
        return None
