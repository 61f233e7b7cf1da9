"""OAuth 1.0a request signing (RFC 5849), which Discogs uses for user authorisation.

Seed 003 coded Discogs' OAuth as OAuth 2 (``authorization_code``, a client secret in a form
post, a revoke URL), which Discogs does not speak. Discogs' flow is OAuth 1.0a: a signed
request for a temporary token, the user's approval at ``/oauth/authorize?oauth_token=…``,
then the temporary token and the verifier exchanged for an access token; every later call
is signed with the consumer's and the access token's secrets. Pure functions only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

SIGNATURE_METHOD = "HMAC-SHA1"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def percent(value: str) -> str:
    """RFC 3986 percent-encoding: everything but the unreserved characters."""
    return quote(value, safe="~")


def base_url(url: str) -> str:
    """The URL as it enters the signature: lower-case scheme and host, no default port,
    no query or fragment."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    netloc = host if parts.port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{parts.port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


def base_string(method: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The signature base string: the method, the base URL and every parameter (the
    URL's query, the body's form fields and the ``oauth_*`` ones, but not the signature),
    encoded and sorted."""
    query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    pairs = sorted(
        (percent(name), percent(value))
        for name, value in (*query, *params)
        if name != "oauth_signature"
    )
    normalised = "&".join(f"{name}={value}" for name, value in pairs)
    return "&".join(percent(part) for part in (method.upper(), base_url(url), normalised))


def sign(base: str, consumer_secret: str, token_secret: str = "") -> str:
    """HMAC-SHA1 of the base string keyed by both secrets, base64."""
    key = f"{percent(consumer_secret)}&{percent(token_secret)}".encode()
    return base64.b64encode(hmac.new(key, base.encode(), hashlib.sha1).digest()).decode()


def oauth_params(
    consumer_key: str,
    *,
    token: str | None = None,
    callback: str | None = None,
    verifier: str | None = None,
    nonce: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The protocol parameters of one request (a fresh nonce and the time unless given)."""
    params = {
        "oauth_consumer_key": consumer_key,
        "oauth_nonce": nonce or secrets.token_hex(16),
        "oauth_signature_method": SIGNATURE_METHOD,
        "oauth_timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "oauth_version": "1.0",
    }
    if token is not None:
        params["oauth_token"] = token
    if callback is not None:
        params["oauth_callback"] = callback
    if verifier is not None:
        params["oauth_verifier"] = verifier
    return params


def authorization(
    method: str,
    url: str,
    *,
    consumer_key: str,
    consumer_secret: str,
    token: str | None = None,
    token_secret: str = "",
    params: Mapping[str, str | int] | None = None,
    callback: str | None = None,
    verifier: str | None = None,
    nonce: str | None = None,
    timestamp: int | None = None,
) -> str:
    """The ``Authorization: OAuth …`` header value of a signed request.

    ``params`` are the request's query (or form) parameters sent besides those in ``url``.
    """
    protocol = oauth_params(
        consumer_key,
        token=token,
        callback=callback,
        verifier=verifier,
        nonce=nonce,
        timestamp=timestamp,
    )
    extra = [(name, str(value)) for name, value in (params or {}).items()]
    base = base_string(method, url, [*protocol.items(), *extra])
    protocol["oauth_signature"] = sign(base, consumer_secret, token_secret)
    fields = ", ".join(f'{name}="{percent(value)}"' for name, value in protocol.items())
    return f"OAuth {fields}"


def parse_authorization(header: str) -> dict[str, str]:
    """The parameters of an ``Authorization: OAuth …`` header (empty when it is not one)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "oauth":
        return {}
    found: dict[str, str] = {}
    for item in rest.split(","):
        name, separator, value = item.strip().partition("=")
        if separator and name and name.lower() != "realm":
            found[unquote(name)] = unquote(value.strip().strip('"'))
    return found


def verify(
    method: str,
    url: str,
    header: str,
    *,
    consumer_secret: str,
    token_secret: str = "",
    params: Iterable[tuple[str, str]] = (),
) -> bool:
    """Whether a request's header carries a correct HMAC-SHA1 signature (the server side)."""
    protocol = parse_authorization(header)
    presented = protocol.get("oauth_signature")
    if not presented or protocol.get("oauth_signature_method") != SIGNATURE_METHOD:
        return False
    base = base_string(method, url, [*protocol.items(), *params])
    expected = sign(base, consumer_secret, token_secret)
    return hmac.compare_digest(expected.encode(), presented.encode())


def form(body: str) -> dict[str, str]:
    """A form-encoded answer (``oauth_token=…&oauth_token_secret=…``) as a dict."""
    return dict(parse_qsl(body, keep_blank_values=True))
