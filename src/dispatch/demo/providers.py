"""A stand-in for every provider on one loopback HTTP server, serving recorded answers.

Shopify storefronts, GOAT's Algolia index, Discogs, eBay (token + Browse) and seed 001's
offers service, with the rules that matter: Discogs wants its token header and counts
down its rate-limit headers; eBay's token can be revoked (401); the offers service hands
out one access token at a time (400 while one is valid) and 409s a second registration.
``faults`` queues answers (status, headers, body, delay) served before the normal ones.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispatch.demo.serving import ThreadedServer

RECORDED = Path(__file__).resolve().parent / "recorded"


def load(path: str) -> Any:
    """The JSON of ``dispatch/demo/recorded/<path>`` (a provider's recorded answer)."""
    return json.loads((RECORDED / path).read_text(encoding="utf-8"))


# The stand-ins' own made-up credentials, which the demo and the tests hand to Dispatch.
# Where the recorded answers' pictures live; ``FakeProviders.serve_images_from`` points them
# at a local server instead (the demo's console), so pages that show them work offline.
IMAGE_HOSTS = frozenset({"cdn.shopify.com", "image.goat.com", "i.discogs.com", "i.ebayimg.com"})


def local_images(value: Any, base: str) -> Any:
    """``value`` with each picture URL of the providers' image hosts moved to ``base``."""
    if isinstance(value, dict):
        return {key: local_images(item, base) for key, item in value.items()}
    if isinstance(value, list):
        return [local_images(item, base) for item in value]
    if isinstance(value, str) and urlsplit(value).hostname in IMAGE_HOSTS:
        digest = hashlib.sha256(value.encode()).hexdigest()[:16]
        return f"{base}/images/{digest}.svg"
    return value


REFRESH_TOKEN = "offers-refresh-token-0123"  # noqa: S105
EBAY_ID, EBAY_SECRET = "ebay-client", "ebay-secret"
DISCOGS_TOKEN = "discogs-token-abc"  # noqa: S105


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Fault:
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"error": "boom"}'
    delay: float = 0.0


def _jwt(payload: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.c2lnbmF0dXJl"


class FakeProviders(ThreadedServer):
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.faults: dict[str, list[Fault]] = defaultdict(list)
        self.shopify_pages: list[dict[str, Any] | bytes] = [
            load("shopify/products_storefront_bjjfanatics.json")
        ]
        self.algolia = load("goat/algolia_query_jordan.json")
        self.discogs_remaining = 60
        self.ebay_tokens: list[str] = []
        self.ebay_valid: str | None = None
        self.token_lifetime = 300.0
        self.offers_token: tuple[str, float] | None = None  # (token, expires at)
        self.auth_calls = 0
        self.registered: set[str] = set()
        self.offers: dict[str, list[dict[str, Any]]] = {}
        self.default_offers = load("offers/offers_product.json")
        self.image_base: str | None = None
        routes = [
            Route("/products.json", self.shopify_products),
            Route("/search/suggest.json", self.shopify_suggest),
            Route("/1/indexes/{index}/query", self.algolia_query, methods=["POST"]),
            Route("/database/search", self.discogs_search),
            Route("/marketplace/stats/{release}", self.discogs_stats),
            Route("/users/{user}/inventory", self.discogs_inventory),
            Route("/identity/v1/oauth2/token", self.ebay_token, methods=["POST"]),
            Route("/buy/browse/v1/item_summary/search", self.ebay_search),
            Route("/api/v1/auth", self.offers_auth, methods=["POST"]),
            Route("/api/v1/products/register", self.offers_register, methods=["POST"]),
            Route("/api/v1/products/{pid}/offers", self.offers_list),
        ]
        super().__init__(Starlette(routes=routes, middleware=[]))
        self.app = self.server.config.app

    def serve_images_from(self, base: str) -> None:
        """Point every picture in the answers at ``base``/images/… from now on."""
        self.image_base = base
        self.shopify_pages = [
            page if isinstance(page, bytes) else local_images(page, base)
            for page in self.shopify_pages
        ]
        self.algolia = local_images(self.algolia, base)
        self.default_offers = local_images(self.default_offers, base)

    def _load(self, path: str) -> Any:
        answer = load(path)
        return local_images(answer, self.image_base) if self.image_base else answer

    def fail(self, path: str, *faults: Fault) -> None:
        self.faults[path].extend(faults)

    def calls(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def _enter(self, request: Request) -> Response | None:
        """Record the request; serve a queued fault for its path, if any."""
        body = await request.body()
        self.seen.append(
            Seen(
                request.method,
                request.url.path,
                dict(request.query_params),
                {k.lower(): v for k, v in request.headers.items()},
                body,
            )
        )
        queued = self.faults.get(request.url.path)
        if queued:
            fault = queued.pop(0)
            if fault.delay:
                await asyncio.sleep(fault.delay)
            return Response(fault.body, status_code=fault.status, headers=fault.headers)
        return None

    # Shopify ---------------------------------------------------------------------------

    async def shopify_products(self, request: Request) -> Response:
        if (fault := await self._enter(request)) is not None:
            return fault
        page = int(request.query_params.get("page", "1"))
        if 1 <= page <= len(self.shopify_pages):
            answer = self.shopify_pages[page - 1]
            if isinstance(answer, bytes):  # a broken page, served as is
                return Response(answer, media_type="application/json")
            return JSONResponse(answer)
        return JSONResponse({"products": []})

    async def shopify_suggest(self, request: Request) -> Response:
        if (fault := await self._enter(request)) is not None:
            return fault
        return JSONResponse(self._load("shopify/suggest_jordan.json"))

    # GOAT (Algolia) ----------------------------------------------------------------------

    async def algolia_query(self, request: Request) -> Response:
        if (fault := await self._enter(request)) is not None:
            return fault
        headers = request.headers
        if not headers.get("x-algolia-application-id") or not headers.get("x-algolia-api-key"):
            return JSONResponse({"message": "Invalid Application-ID or API key"}, status_code=403)
        answer = copy.deepcopy(self.algolia)
        params = dict(
            p.split("=", 1) for p in json.loads(await request.body())["params"].split("&")
        )
        if int(params.get("page", "0")) >= answer.get("nbPages", 1):
            answer["hits"] = []
        return JSONResponse(answer)

    # Discogs -----------------------------------------------------------------------------

    def _discogs_headers(self) -> dict[str, str]:
        self.discogs_remaining = max(0, self.discogs_remaining - 1)
        return {
            "X-Discogs-Ratelimit": "60",
            "X-Discogs-Ratelimit-Used": str(60 - self.discogs_remaining),
            "X-Discogs-Ratelimit-Remaining": str(self.discogs_remaining),
        }

    def _discogs_denied(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Discogs token={DISCOGS_TOKEN}":
            return JSONResponse(
                {"message": "You must authenticate to access this resource."}, status_code=401
            )
        return None

    async def discogs_search(self, request: Request) -> Response:
        if (fault := await self._enter(request)) is not None:
            return fault
        if (denied := self._discogs_denied(request)) is not None:
            return denied
        return JSONResponse(
            self._load("discogs/database_search_modern_dj_healer.json"),
            headers=self._discogs_headers(),
        )

    async def discogs_stats(self, request: Request) -> Response:
        if (fault := await self._enter(request)) is not None:
            return fault
        if (denied := self._discogs_denied(request)) is not None:
            return denied
        return JSONResponse(
            self._load("discogs/marketplace_stats_1.json"), headers=self._discogs_headers()
        )

    async def discogs_inventory(self, request: Request) -> Response:
        if (fault := await self._enter(request)) is not None:
            return fault
        return JSONResponse(
            self._load("discogs/user_inventory_listings.json"), headers=self._discogs_headers()
        )

    # eBay --------------------------------------------------------------------------------

    async def ebay_token(self, request: Request) -> Response:
        if (fault := await self._enter(request)) is not None:
            return fault
        basic = base64.b64encode(f"{EBAY_ID}:{EBAY_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {basic}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = f"v^1.1#fake-{len(self.ebay_tokens) + 1}"
        self.ebay_tokens.append(token)
        self.ebay_valid = token
        answer = load("ebay/token.json")
        answer["access_token"] = token
        return JSONResponse(answer)

    async def ebay_search(self, request: Request) -> Response:
        if (fault := await self._enter(request)) is not None:
            return fault
        if request.headers.get("authorization") != f"Bearer {self.ebay_valid}":
            return JSONResponse(
                {"errors": [{"errorId": 1001, "message": "Invalid access token"}]}, status_code=401
            )
        return JSONResponse(self._load("ebay/item_summary_search_sneakers.json"))

    # The offers service (seed 001) -------------------------------------------------------

    def _offers_denied(self, request: Request) -> Response | None:
        token = request.headers.get("bearer")
        valid = self.offers_token
        if valid is None or token != valid[0] or time.time() >= valid[1]:
            return JSONResponse({"detail": "Access token invalid"}, status_code=401)
        return None

    async def offers_auth(self, request: Request) -> Response:
        if (fault := await self._enter(request)) is not None:
            return fault
        self.auth_calls += 1
        if request.headers.get("bearer") != REFRESH_TOKEN:
            return JSONResponse({"detail": "Invalid refresh token"}, status_code=401)
        if self.offers_token is not None and time.time() < self.offers_token[1]:
            return JSONResponse(
                {"detail": "Cannot generate access token because another is valid"},
                status_code=400,
            )
        expires = time.time() + self.token_lifetime
        token = _jwt({"token": str(uuid.uuid4()), "expires": int(expires)})
        self.offers_token = (token, expires)
        return JSONResponse({"access_token": token}, status_code=201)

    def expire_offers_token(self) -> None:
        """The service forgets the token early (a restart of theirs): calls get 401."""
        self.offers_token = None

    async def offers_register(self, request: Request) -> Response:
        if (fault := await self._enter(request)) is not None:
            return fault
        if (denied := self._offers_denied(request)) is not None:
            return denied
        product_id = json.loads(await request.body())["id"]
        if product_id in self.registered:
            return JSONResponse({"detail": "Product ID already registered"}, status_code=409)
        self.registered.add(product_id)
        return JSONResponse({"id": product_id}, status_code=201)

    async def offers_list(self, request: Request) -> Response:
        if (fault := await self._enter(request)) is not None:
            return fault
        if (denied := self._offers_denied(request)) is not None:
            return denied
        product_id = request.path_params["pid"]
        if product_id not in self.registered:
            return JSONResponse({"detail": "Product ID has not been registered"}, status_code=404)
        return JSONResponse(self.offers.get(product_id, self.default_offers))


def provider_settings(fake: FakeProviders) -> dict[str, Any]:
    """Settings that point every provider at the fake server, with fast retries."""
    return {
        "complexshop_base_url": fake.url,
        "universalstore_base_url": fake.url,
        "goat_base_url": fake.url,
        "discogs_base_url": fake.url,
        "discogs_token": DISCOGS_TOKEN,
        "ebay_base_url": fake.url,
        "ebay_client_id": EBAY_ID,
        "ebay_client_secret": EBAY_SECRET,
        "offers_service_url": fake.url,
        "offers_refresh_token": REFRESH_TOKEN,
        "default_timeout_seconds": 2.0,
        "catalog_retry_after_max_seconds": 5.0,
    }
