"""A user's Discogs account: the OAuth 1.0a handshake, who they are, their lists.

Calls go through the catalogue's Discogs provider configuration (base URL, timeouts,
retries, the shared pacing of Discogs' 60 requests a minute) and into the provider request
log under the user's id. How a call is authorised depends on the link: signed with the
user's OAuth access token, their personal token (``Discogs token=…``), or for an account
linked by name only, the service's own token (public lists only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode

from dispatch.catalog.http import ProviderHttp, Reply
from dispatch.catalog.provider import ProviderError, ProviderRejected
from dispatch.catalog.providers._payload import identifier, list_at, mapping, text
from dispatch.catalog.records import MalformedPayload
from dispatch.watch import oauth1

ListSource = Literal["wantlist", "collection"]
PER_PAGE = 100  # Discogs' largest page
PATHS: Mapping[ListSource, tuple[str, str]] = {
    # source -> (path under /users/{username}, the answer's list key)
    "wantlist": ("wants", "wants"),
    "collection": ("collection/folders/0/releases", "releases"),
}


@dataclass(frozen=True, slots=True)
class Consumer:
    """The application's OAuth consumer key and secret."""

    key: str
    secret: str


@dataclass(frozen=True, slots=True)
class Credentials:
    """How calls for one user are authorised (secrets already opened)."""

    auth: Literal["oauth1", "personal", "none"]
    token: str | None = None
    secret: str = ""


@dataclass(frozen=True, slots=True)
class ListedRelease:
    """One release on a wantlist or in a collection."""

    release_id: int
    master_id: int | None
    title: str
    artist: str | None
    year: int | None


@dataclass(frozen=True, slots=True)
class ListPage:
    items: list[ListedRelease]
    pages: int
    errors: list[dict[str, Any]]  # items that could not be read: index and why


class OAuthFailed(ProviderError):
    """Discogs refused a step of the handshake (a stale token, a wrong verifier)."""


def _artist(info: dict[str, Any]) -> str | None:
    artists = info.get("artists")
    if not isinstance(artists, list) or not artists or not isinstance(artists[0], dict):
        return None
    name = text(artists[0].get("name"))
    if name is None:
        return None
    # Discogs tells same-named artists apart with a number: "Prince (2)".
    base, separator, rest = name.rpartition(" (")
    if separator and rest.endswith(")") and rest[:-1].isdigit():
        return base
    return name


def parse_list(payload: object, source: ListSource) -> ListPage:
    """A page of a wantlist (``wants``) or a collection folder (``releases``): its releases,
    its page count, and the items that could not be read (the rest are kept)."""
    body = mapping(payload, "payload")
    key = PATHS[source][1]
    items: list[ListedRelease] = []
    errors: list[dict[str, Any]] = []
    for index, raw in enumerate(list_at(body, key)):
        try:
            items.append(_listed(raw, f"{key}[{index}]"))
        except MalformedPayload as exc:
            errors.append({"source": source, "index": index, "error": str(exc)})
    pagination = body.get("pagination")
    pages = pagination.get("pages") if isinstance(pagination, dict) else None
    if isinstance(pages, bool) or not isinstance(pages, int) or pages < 0:
        raise MalformedPayload(f"{source}: pagination.pages is missing or not a count")
    return ListPage(items, pages, errors)


def _listed(raw: object, where: str) -> ListedRelease:
    item = mapping(raw, where)
    info = item.get("basic_information")
    if not isinstance(info, dict):
        raise MalformedPayload(f"{where}.basic_information is missing")
    release_id = identifier(info.get("id")) or identifier(item.get("id"))
    if release_id is None or not release_id.isdigit() or int(release_id) < 1:
        raise MalformedPayload(f"{where}: the release id is missing or not a number")
    title = text(info.get("title"))
    if title is None:
        raise MalformedPayload(f"{where}.basic_information.title is missing")
    master = identifier(info.get("master_id"))
    year = info.get("year")
    return ListedRelease(
        release_id=int(release_id),
        master_id=int(master) if master and master.isdigit() and int(master) > 0 else None,
        title=title[:300],
        artist=(_artist(info) or "")[:300] or None,
        year=year if isinstance(year, int) and 1800 <= year <= 2100 else None,
    )


class DiscogsAccount:
    """Discogs calls for one user (or, for the handshake, for the application)."""

    def __init__(
        self,
        http: ProviderHttp,
        consumer: Consumer | None,
        *,
        service_token: str | None = None,
        user_agent: str = "Dispatch",
    ) -> None:
        self.http = http
        self.consumer = consumer
        self.service_token = service_token
        self.user_agent = user_agent

    def _consumer(self) -> Consumer:
        if self.consumer is None:
            raise OAuthFailed(
                "discogs", "DISCOGS_CONSUMER_KEY and DISCOGS_CONSUMER_SECRET are unset"
            )
        return self.consumer

    def _headers(
        self,
        method: str,
        path: str,
        credentials: Credentials,
        params: Mapping[str, str | int] | None = None,
        *,
        callback: str | None = None,
        verifier: str | None = None,
    ) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent}
        if credentials.auth == "oauth1" or callback is not None:
            consumer = self._consumer()
            headers["Authorization"] = oauth1.authorization(
                method,
                self.http.url(path),
                consumer_key=consumer.key,
                consumer_secret=consumer.secret,
                token=credentials.token,
                token_secret=credentials.secret,
                params=params,
                callback=callback,
                verifier=verifier,
            )
        elif credentials.auth == "personal" and credentials.token:
            headers["Authorization"] = f"Discogs token={credentials.token}"
        elif self.service_token:
            headers["Authorization"] = f"Discogs token={self.service_token}"
        return headers

    async def _form(self, reply: Reply, what: str) -> dict[str, str]:
        if not reply.ok:
            raise OAuthFailed("discogs", f"{what} answered {reply.status}: {reply.text(200)}")
        answer = oauth1.form(reply.body.decode("utf-8", "replace"))
        if not answer.get("oauth_token") or "oauth_token_secret" not in answer:
            raise OAuthFailed("discogs", f"{what}: the answer carries no token")
        return answer

    async def request_token(self, callback: str) -> tuple[str, str]:
        """A temporary token and secret for the user to approve."""
        path = "/oauth/request_token"
        headers = self._headers("GET", path, Credentials("none"), callback=callback)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        reply = await self.http.request("GET", path, headers=headers)
        answer = await self._form(reply, "oauth/request_token")
        return answer["oauth_token"], answer["oauth_token_secret"]

    async def access_token(self, token: str, secret: str, verifier: str) -> tuple[str, str]:
        """The approved temporary token exchanged for the user's access token and secret."""
        path = "/oauth/access_token"
        headers = self._headers(
            "POST", path, Credentials("oauth1", token, secret), verifier=verifier
        )
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        reply = await self.http.request("POST", path, headers=headers)
        answer = await self._form(reply, "oauth/access_token")
        return answer["oauth_token"], answer["oauth_token_secret"]

    async def identity(self, credentials: Credentials) -> str:
        """The username the credentials belong to."""
        path = "/oauth/identity"
        reply = await self.http.request(
            "GET", path, headers=self._headers("GET", path, credentials)
        )
        reply.raise_for_status("oauth/identity")
        username = text(mapping(reply.json(), "identity").get("username"))
        if username is None:
            raise MalformedPayload("oauth/identity: no username")
        return username

    async def list_page(
        self, credentials: Credentials, username: str, source: ListSource, page: int
    ) -> ListPage:
        """One page of the user's wantlist or collection."""
        path = f"/users/{quote(username, safe='')}/{PATHS[source][0]}"
        params: dict[str, str | int] = {"page": page, "per_page": PER_PAGE}
        headers = self._headers("GET", path, credentials, params)
        reply = await self.http.request("GET", path, params=params, headers=headers)
        if reply.status == 404:
            raise ProviderRejected(
                "discogs", f"Discogs has no user {username!r} (or the list is private)", status=404
            )
        reply.raise_for_status(source)
        return parse_list(reply.json(), source)


def authorize_url(site_url: str, token: str) -> str:
    """Where the user approves the application."""
    return f"{site_url.rstrip('/')}/oauth/authorize?{urlencode({'oauth_token': token})}"


def release_url(site_url: str, release_id: int) -> str:
    return f"{site_url.rstrip('/')}/release/{release_id}"
