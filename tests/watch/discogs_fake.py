"""A fake Discogs for users' accounts: the OAuth 1.0a handshake and wantlists/collections.

Signatures are checked with ``oauthlib`` (an implementation independent of Dispatch's), the
way api.discogs.com does: the temporary token with the consumer secret alone, the access
token exchange with the temporary token's secret and the verifier, later calls with the
access token's secret. ``/oauth/authorize`` stands for the user pressing "Authorize": it
redirects to the callback with the token and a verifier. Lists follow Discogs' documented
shapes (``pagination``, ``wants[]`` / ``releases[]`` with ``basic_information``); the
data is made up. A wantlist is public; a collection needs its owner's credentials.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from oauthlib.oauth1 import Client
from oauthlib.oauth1.rfc5849 import signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from dispatch.demo.serving import ThreadedServer

CONSUMER_KEY, CONSUMER_SECRET = "consumer-key-1", "consumer-secret-1"
SERVICE_TOKEN = "service-token-1"


def release(
    release_id: int, title: str, artist: str = "Various", year: int = 1990, master: int = 0
) -> dict[str, Any]:
    """A release as ``basic_information`` describes it."""
    return {
        "id": release_id,
        "master_id": master,
        "title": title,
        "year": year,
        "artists": [{"name": artist, "id": release_id * 7}],
        "formats": [{"name": "Vinyl", "qty": "1"}],
        "resource_url": f"https://api.discogs.com/releases/{release_id}",
    }


@dataclass
class Account:
    username: str
    wants: list[dict[str, Any]] = field(default_factory=list)
    collection: list[dict[str, Any]] = field(default_factory=list)
    personal_token: str | None = None


@dataclass
class Pending:
    secret: str
    callback: str
    verifier: str | None = None
    username: str | None = None


class FakeDiscogs(ThreadedServer):
    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.pending: dict[str, Pending] = {}
        self.access: dict[str, tuple[str, str]] = {}  # token -> (secret, username)
        self.approve_as: str | None = None  # who presses "Authorize"
        self.bad_signatures = 0
        self.list_calls: list[tuple[str, str, int, str]] = []  # (user, list, page, auth)
        self.broken_pages: dict[tuple[str, int], int] = {}  # (list, page) -> status, once
        routes = [
            Route("/oauth/request_token", self.request_token, methods=["GET", "POST"]),
            Route("/oauth/authorize", self.authorize),
            Route("/oauth/access_token", self.access_token, methods=["POST"]),
            Route("/oauth/identity", self.identity),
            Route("/users/{user}/wants", self.wants),
            Route("/users/{user}/collection/folders/0/releases", self.collection),
        ]
        super().__init__(Starlette(routes=routes))

    def add(self, username: str, **lists: Any) -> Account:
        account = self.accounts[username] = Account(username, **lists)
        return account

    # Signatures --------------------------------------------------------------------------

    def _oauth(self, request: Request, token_secret: str) -> dict[str, str] | None:
        """The request's OAuth parameters if its HMAC-SHA1 signature is right."""
        header = request.headers.get("authorization", "")
        if not header.startswith("OAuth "):
            return None
        params = signature.collect_parameters(
            uri_query=request.url.query,
            headers={"Authorization": header},
            exclude_oauth_signature=False,
            with_realm=False,
        )
        protocol = dict(params)
        if protocol.get("oauth_consumer_key") != CONSUMER_KEY:
            return None
        base = signature.signature_base_string(
            request.method,
            signature.base_string_uri(str(request.url).split("?")[0]),
            signature.normalize_parameters([(k, v) for k, v in params if k != "oauth_signature"]),
        )
        signer = Client(
            CONSUMER_KEY, client_secret=CONSUMER_SECRET, resource_owner_secret=token_secret
        )
        expected = signature.sign_hmac_sha1_with_client(base, signer)
        if not secrets.compare_digest(expected, protocol.get("oauth_signature", "")):
            self.bad_signatures += 1
            return None
        return protocol

    def _token_of(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        for name, value in signature.collect_parameters(headers={"Authorization": header}):
            if name == "oauth_token":
                return str(value)
        return None

    def _caller(self, request: Request) -> tuple[str | None, str]:
        """Who the request is from (a username, or None for the service) and how."""
        header = request.headers.get("authorization", "")
        if header.startswith("OAuth "):
            token = self._token_of(request) or ""
            secret, username = self.access.get(token, ("", ""))
            if username and self._oauth(request, secret) is not None:
                return username, "oauth1"
            return None, "refused"
        if header.startswith("Discogs token="):
            token = header.removeprefix("Discogs token=")
            if token == SERVICE_TOKEN:
                return None, "service"
            for account in self.accounts.values():
                if account.personal_token == token:
                    return account.username, "personal"
            return None, "refused"
        return None, "anonymous"

    # The handshake -----------------------------------------------------------------------

    async def request_token(self, request: Request) -> Response:
        protocol = self._oauth(request, "")
        if protocol is None or "oauth_callback" not in protocol:
            return PlainTextResponse("Invalid signature", status_code=401)
        token, secret = secrets.token_hex(8), secrets.token_hex(16)
        self.pending[token] = Pending(secret, protocol["oauth_callback"])
        answer = {
            "oauth_token": token,
            "oauth_token_secret": secret,
            "oauth_callback_confirmed": "true",
        }
        return PlainTextResponse(urlencode(answer))

    async def authorize(self, request: Request) -> Response:
        token = request.query_params.get("oauth_token", "")
        pending = self.pending.get(token)
        if pending is None or self.approve_as is None:
            return PlainTextResponse("Unknown request token", status_code=400)
        pending.verifier, pending.username = secrets.token_hex(5), self.approve_as
        query = urlencode({"oauth_token": token, "oauth_verifier": pending.verifier})
        separator = "&" if urlsplit(pending.callback).query else "?"
        return RedirectResponse(f"{pending.callback}{separator}{query}", status_code=302)

    async def access_token(self, request: Request) -> Response:
        token = self._token_of(request) or ""
        pending = self.pending.get(token)
        if pending is None:
            return PlainTextResponse("Invalid request token", status_code=401)
        protocol = self._oauth(request, pending.secret)
        if protocol is None or protocol.get("oauth_verifier") != pending.verifier:
            return PlainTextResponse("Invalid signature or verifier", status_code=401)
        del self.pending[token]
        access, secret = secrets.token_hex(8), secrets.token_hex(16)
        self.access[access] = (secret, pending.username or "")
        return PlainTextResponse(urlencode({"oauth_token": access, "oauth_token_secret": secret}))

    async def identity(self, request: Request) -> Response:
        username, how = self._caller(request)
        if username is None or how != "oauth1":
            return JSONResponse({"message": "You must authenticate."}, status_code=401)
        return JSONResponse({"id": 1, "username": username, "consumer_name": "Dispatch"})

    # Lists ---------------------------------------------------------------------------------

    def _page(self, request: Request, which: str, key: str, private: bool) -> Response:
        user = request.path_params["user"]
        caller, how = self._caller(request)
        page = int(request.query_params.get("page", "1"))
        per_page = int(request.query_params.get("per_page", "50"))
        self.list_calls.append((user, which, page, how))
        if how == "refused":
            return JSONResponse({"message": "You must authenticate."}, status_code=401)
        account = self.accounts.get(user)
        if account is None:
            return JSONResponse({"message": "User does not exist."}, status_code=404)
        if private and caller != user:
            return JSONResponse({"message": "You don't have permission."}, status_code=403)
        if (status := self.broken_pages.pop((which, page), None)) is not None:
            return JSONResponse({"message": "Something went wrong."}, status_code=status)
        items: list[dict[str, Any]] = getattr(account, which)
        pages = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        entries = [
            {"id": item["id"], "rating": 0, "basic_information": item}
            if isinstance(item, dict) and "id" in item
            else {"basic_information": item}
            for item in chunk
        ]
        return JSONResponse(
            {
                "pagination": {
                    "page": page,
                    "pages": pages,
                    "per_page": per_page,
                    "items": len(items),
                },
                key: entries,
            }
        )

    async def wants(self, request: Request) -> Response:
        return self._page(request, "wants", "wants", private=False)

    async def collection(self, request: Request) -> Response:
        return self._page(request, "collection", "releases", private=True)


def discogs_settings(fake: FakeDiscogs, **extra: Any) -> dict[str, Any]:
    return {
        "discogs_base_url": fake.url,
        "discogs_site_url": fake.url,
        "discogs_token": SERVICE_TOKEN,
        "discogs_consumer_key": CONSUMER_KEY,
        "discogs_consumer_secret": CONSUMER_SECRET,
        "default_timeout_seconds": 2.0,
        "catalog_provider_retries": 0,
        **extra,
    }


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))
