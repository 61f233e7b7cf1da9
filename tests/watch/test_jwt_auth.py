"""Bearer JWTs from an identity provider, verified against a real JWKS server on loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from dispatch.security.jwt_auth import claims_admin
from tests.support import make_settings, running_app
from tests.watch.conftest import ADMIN, V1

SUBJECT = "5f0c2a47-8a7e-4b43-9d0e-3c2b1a0f9e11"


class IdentityProvider:
    """Signs tokens and serves its JWKS; keys can be rotated and the server can fail."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.failing = False
        self.fetches = 0
        self.rotate("k1")
        self.url = ""

    def rotate(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    async def jwks(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.failing:
            return web.Response(status=500)
        keys = []
        for kid, key in self.keys.items():
            public: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**public, "kid": kid, "alg": "RS256", "use": "sig"})
        return web.json_response({"keys": keys})

    def token(self, kid: str = "k1", **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "sub": SUBJECT,
            "iss": self.url,
            "aud": "authenticated",
            "iat": now,
            "exp": now + 600,
            "email": "jwt.user@example.com",
            **claims,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider()
    app = web.Application()
    app.router.add_get("/auth/v1/.well-known/jwks.json", provider.jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    provider.url = f"http://127.0.0.1:{port}/auth/v1"
    yield provider
    await runner.cleanup()


@pytest.fixture
async def http(
    db_settings: dict[str, Any], idp: IdentityProvider
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(**db_settings, auth_issuer=idp.url, auth_auto_create_users=True)
    async with running_app(settings) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_valid_token_provisions_its_user_once(
    http: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    first = await http.get(f"{V1}/me", headers=bearer(idp.token()))
    assert first.status_code == 200, first.text
    again = await http.get(f"{V1}/me", headers=bearer(idp.token()))
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["email"] == "jwt.user@example.com"
    users = (await http.get(f"{V1}/users", headers=ADMIN)).json()
    assert len(users) == 1
    # A rule made with the token belongs to that user.
    rule = await http.post(
        f"{V1}/watch-rules",
        json={"name": "r", "query": {"sources": ["goat"], "keywords": ["dunk"]}},
        headers=bearer(idp.token()),
    )
    assert rule.status_code == 201
    assert rule.json()["user_id"] == first.json()["id"]


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "http://127.0.0.1:1/elsewhere"}, "issuer"),
        ({"sub": None}, "sub"),
    ],
)
async def test_bad_tokens_are_401(
    http: httpx.AsyncClient, idp: IdentityProvider, claims: dict[str, Any], message: str
) -> None:
    response = await http.get(f"{V1}/me", headers=bearer(idp.token(**claims)))
    assert response.status_code == 401, response.text
    assert message in response.json()["error"]["message"].lower()


async def test_a_token_signed_by_another_key_or_algorithm_is_refused(
    http: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        {"sub": SUBJECT, "iss": idp.url, "aud": "authenticated", "exp": int(time.time()) + 60},
        stranger,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    assert (await http.get(f"{V1}/me", headers=bearer(forged))).status_code == 401
    hmac_token = jwt.encode(
        {"sub": SUBJECT, "iss": idp.url, "aud": "authenticated", "exp": int(time.time()) + 60},
        "a shared secret of at least thirty-two bytes",
        algorithm="HS256",
        headers={"kid": "k1"},
    )
    response = await http.get(f"{V1}/me", headers=bearer(hmac_token))
    assert response.status_code == 401
    assert "algorithm" in response.json()["error"]["message"]


async def test_a_rotated_key_is_fetched_when_a_token_names_it(
    http: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    assert (await http.get(f"{V1}/me", headers=bearer(idp.token()))).status_code == 200
    fetches = idp.fetches
    idp.rotate("k2")
    response = await http.get(f"{V1}/me", headers=bearer(idp.token(kid="k2")))
    assert response.status_code == 200, response.text
    assert idp.fetches == fetches + 1


async def test_an_unreachable_jwks_is_503_not_401(
    http: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    idp.failing = True
    response = await http.get(f"{V1}/me", headers=bearer(idp.token()))
    assert response.status_code == 503, response.text


async def test_logout_refuses_tokens_issued_before_it(
    http: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    old = idp.token(iat=int(time.time()) - 5)
    assert (await http.get(f"{V1}/me", headers=bearer(old))).status_code == 200
    assert (await http.post(f"{V1}/me/logout", headers=bearer(old))).status_code == 200
    assert (await http.get(f"{V1}/me", headers=bearer(old))).status_code == 401
    fresh = idp.token(iat=int(time.time()) + 1)
    assert (await http.get(f"{V1}/me", headers=bearer(fresh))).status_code == 200


async def test_unknown_subjects_are_refused_unless_provisioning_is_on(
    db_settings: dict[str, Any], idp: IdentityProvider
) -> None:
    settings = make_settings(**db_settings, auth_issuer=idp.url)
    async with running_app(settings) as http:
        response = await http.get(f"{V1}/me", headers=bearer(idp.token()))
        assert response.status_code == 401
        assert "provisioned" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("claims", "admin"),
    [
        ({"role": "authenticated"}, False),
        ({"role": "service_role"}, True),
        ({"user_role": "admin"}, True),
        ({"app_metadata": {"roles": ["editor", "admin"]}}, True),
        ({"scope": "openid provider_requests:read_all"}, True),
        ({"permissions": ["read"]}, False),
    ],
)
def test_admin_claims_follow_seed_003(claims: dict[str, Any], admin: bool) -> None:
    assert claims_admin(claims) is admin


async def test_a_deleted_user_is_not_provisioned_again(
    http: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    """Seed 003 re-created a hard-deleted user on the next request with a valid token."""
    token = idp.token()
    assert (await http.get(f"{V1}/me", headers=bearer(token))).status_code == 200
    assert (await http.delete(f"{V1}/me/hard-delete", headers=bearer(token))).status_code == 204
    again = await http.get(f"{V1}/me", headers=bearer(idp.token()))
    assert again.status_code == 401
    assert "deleted" in again.json()["error"]["message"]
    assert (await http.get(f"{V1}/users", headers=ADMIN)).json() == []
