"""Bearer JWTs from an external identity provider (seed 003 used Supabase).

RS256 only; the keys come from the provider's JWKS, cached for AUTH_JWKS_CACHE_SECONDS
and fetched again (at most every few seconds) when a token names a key id the cache does
not hold, so a key rotation is picked up without a restart. ``exp``, ``iss``, ``aud`` and
``sub`` are required; ``iss`` is checked when AUTH_ISSUER is set. A bad token is a 401;
a JWKS that cannot be fetched is a 503, not a 401 (the token may well be valid).

PyJWT, cryptography and aiohttp load only when a token is first verified.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from dispatch.config import Settings
from dispatch.errors import ServiceUnavailable, Unauthorized

if TYPE_CHECKING:
    import aiohttp
    from jwt import PyJWK

log = structlog.get_logger(__name__)

ALGORITHMS = ("RS256",)
ADMIN_ROLES = frozenset({"admin", "service_role"})
ADMIN_GRANTS = frozenset({"admin", "provider_requests:read_all"})
_REFETCH_AFTER_SECONDS = 5.0  # an unknown kid fetches again, but not on every request


def looks_like_jwt(token: str) -> bool:
    """Three base64url segments: a JWT, not a Dispatch key (those have no dots)."""
    return token.count(".") == 2 and not token.startswith("dsp_")


@dataclass(frozen=True, slots=True)
class Identity:
    """What a verified token says about its holder."""

    subject: str
    email: str | None
    is_admin: bool
    issued_at: float | None


def _strings(value: object) -> set[str]:
    if isinstance(value, str):
        return set(value.split())
    if isinstance(value, list | tuple):
        return {item for item in value if isinstance(item, str)}
    return set()


def claims_admin(claims: dict[str, Any]) -> bool:
    """Seed 003's admin test: a role claim, app_metadata roles, or an admin grant."""
    roles = _strings(claims.get("role")) | _strings(claims.get("user_role"))
    metadata = claims.get("app_metadata")
    if isinstance(metadata, dict):
        roles |= _strings(metadata.get("role")) | _strings(metadata.get("roles"))
    grants = set()
    for name in ("scope", "roles", "permissions"):
        grants |= _strings(claims.get(name))
    return bool(roles & ADMIN_ROLES or grants & ADMIN_GRANTS)


class JwtVerifier:
    """Verifies bearer JWTs against the identity provider's JWKS."""

    def __init__(self, settings: Settings) -> None:
        location = settings.auth_jwks_location
        if location is None:
            raise ValueError("AUTH_JWKS_URL or AUTH_ISSUER is required for JWTs")
        self.location = location
        self.issuer = settings.auth_issuer
        self.audience = settings.auth_audience
        self.leeway = settings.auth_clock_skew_seconds
        self.cache_seconds = settings.auth_jwks_cache_seconds
        self.timeout = settings.default_timeout_seconds
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = -1e9
        self._unknown_at = -1e9
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def verify(self, token: str) -> Identity:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("Invalid bearer token") from exc
        if header.get("alg") not in ALGORITHMS:
            raise Unauthorized("Bearer token algorithm not allowed")
        key = await self._key(str(header.get("kid") or ""))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "sub"], "verify_iss": bool(self.issuer)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("Bearer token has expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"Invalid bearer token: {exc}") from exc
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject.strip():
            raise Unauthorized("Bearer token has no subject")
        email = claims.get("email")
        issued = claims.get("iat")
        return Identity(
            subject=subject.strip()[:255],
            email=email.strip().lower() if isinstance(email, str) and email.strip() else None,
            is_admin=claims_admin(claims),
            issued_at=float(issued) if isinstance(issued, int | float) else None,
        )

    async def _key(self, kid: str) -> PyJWK:
        now = time.monotonic()
        if now - self._fetched_at > self.cache_seconds:
            await self._refresh(self._fetched_at)
        elif kid not in self._keys and now - self._unknown_at > _REFETCH_AFTER_SECONDS:
            # A key rotated in since the last fetch; unknown kids cannot force more fetches.
            self._unknown_at = now
            await self._refresh(self._fetched_at)
        key = self._keys.get(kid) or (self._keys.get("") if not kid else None)
        if key is None:
            raise Unauthorized("Bearer token signed by an unknown key")
        return key

    async def _refresh(self, seen: float) -> None:
        async with self._lock:
            if self._fetched_at == seen:  # nobody fetched while this request waited
                await self._fetch()

    async def _fetch(self) -> None:
        import aiohttp
        import jwt

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.get(self.location) as response:
                response.raise_for_status()
                document = await response.json(content_type=None)
            keys = jwt.PyJWKSet.from_dict(document).keys
        except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
            log.warning("auth.jwks_unavailable", url=self.location, error=str(exc))
            if self._keys:
                # Keep serving the keys we have (the provider may be down briefly); try
                # again in a few seconds rather than on every request.
                self._fetched_at = time.monotonic() - self.cache_seconds + _REFETCH_AFTER_SECONDS
                return
            raise ServiceUnavailable("The identity provider's keys cannot be fetched") from exc
        self._keys = {str(key.key_id or ""): key for key in keys}
        self._fetched_at = time.monotonic()
