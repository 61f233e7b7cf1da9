"""The offers microservice of seed 001: register products, read their offers.

Its auth header is literally named ``Bearer``. An access token lives five minutes and the
service refuses a new one while the last is valid (400), so the token and its expiry are
kept in the database (dispatch.catalog.tokens) and shared by every process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

from dispatch.catalog.http import ProviderHttp, Reply
from dispatch.catalog.provider import (
    ProviderConfig,
    ProviderMisconfigured,
    ProviderRejected,
    ProviderUnavailable,
    Unsupported,
)
from dispatch.catalog.providers.offers.parse import (
    detail,
    parse_access_token,
    parse_offers,
    parse_registered,
)
from dispatch.catalog.records import OfferRecord, ProductRecord
from dispatch.catalog.tokens import Token, TokenStore
from dispatch.db.base import utcnow

TOKEN_LIFETIME = timedelta(minutes=5)  # when the token does not say


def _detail(reply: Reply) -> str:
    try:
        return detail(reply.json()) or reply.text(200)
    except ValueError:
        return reply.text(200)


class OffersProvider:
    def __init__(self, config: ProviderConfig, http: ProviderHttp, tokens: TokenStore) -> None:
        self.config = config
        self.http = http
        self.tokens = tokens

    @property
    def searchable(self) -> bool:
        return False

    async def search(self, query: str | None, limit: int) -> list[ProductRecord]:
        raise Unsupported(self.config.name, "the offers service has no search")

    async def scrape(self) -> AsyncIterator[list[ProductRecord]]:
        raise Unsupported(self.config.name, "the offers service is synced product by product")
        yield []  # pragma: no cover - makes this an async generator

    async def _fetch_token(self) -> Token:
        refresh = self.config.credential("refresh_token")
        if not refresh or not self.config.base_url:
            raise ProviderMisconfigured(
                self.config.name, "OFFERS_SERVICE_URL and OFFERS_REFRESH_TOKEN must be set"
            )
        reply = await self.http.request("POST", "/api/v1/auth", headers={"Bearer": refresh})
        if reply.status == 400:
            # Another access token is still valid (a process lost it): wait for it to end.
            raise ProviderUnavailable(
                self.config.name,
                f"auth refused: {_detail(reply)}",
                status=400,
                retry_after=TOKEN_LIFETIME.total_seconds(),
            )
        if not reply.ok:
            raise ProviderRejected(
                self.config.name,
                f"auth answered {reply.status}: {_detail(reply)}",
                status=reply.status,
            )
        value, expires_at = parse_access_token(reply.json())
        return Token(value, expires_at or utcnow() + TOKEN_LIFETIME)

    async def _call(self, method: str, path: str, body: object = None) -> Reply:
        """A call with the access token; on 401 the token is refreshed once and retried once."""
        token = await self.tokens.get(self._fetch_token)
        reply = await self.http.request(
            method, path, json_body=body, headers={"Bearer": token.value}
        )
        if reply.status == 401:
            await self.tokens.invalidate(token.value)
            token = await self.tokens.get(self._fetch_token)
            reply = await self.http.request(
                method, path, json_body=body, headers={"Bearer": token.value}
            )
        return reply

    async def register(self, product_id: str, name: str, description: str | None) -> str:
        """Register a product under our id; 409 (already registered) counts as success."""
        body = {"id": product_id, "name": name, "description": description or ""}
        reply = await self._call("POST", "/api/v1/products/register", body)
        if reply.status == 409:
            return product_id
        if not reply.ok:
            reply.raise_for_status(f"register ({_detail(reply)})")
        return parse_registered(reply.json())

    async def offers(self, product_id: str) -> list[OfferRecord]:
        """The product's current offers; ProviderRejected(404) when it is not registered."""
        reply = await self._call("GET", f"/api/v1/products/{product_id}/offers")
        if not reply.ok:
            reply.raise_for_status(f"offers ({_detail(reply)})")
        return parse_offers(reply.json(), currency=self.config.currency)
