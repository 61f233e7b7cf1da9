from __future__ import annotations

from typing import Any

from tests.support import make_settings, running_app

PREFLIGHT = {
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "x-dispatch-key",
}


async def test_wildcard_origin_never_allows_credentials(db_settings: dict[str, Any]) -> None:
    async with running_app(make_settings(**db_settings, allowed_origins="*")) as client:
        response = await client.options(
            "/api/v1/system", headers={"Origin": "https://any.example", **PREFLIGHT}
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


async def test_listed_origins_get_credentials_and_others_nothing(
    db_settings: dict[str, Any],
) -> None:
    settings = make_settings(**db_settings, allowed_origins='["https://ops.example"]')
    async with running_app(settings) as client:
        allowed = await client.options(
            "/api/v1/system", headers={"Origin": "https://ops.example", **PREFLIGHT}
        )
        denied = await client.options(
            "/api/v1/system", headers={"Origin": "https://evil.example", **PREFLIGHT}
        )
    assert allowed.headers["access-control-allow-origin"] == "https://ops.example"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert denied.status_code == 400
    assert "access-control-allow-origin" not in denied.headers
    error = denied.json()["error"]
    assert error["code"] == "cors_refused"
    assert "origin" in error["message"]
    assert error["request_id"] == denied.headers["X-Request-ID"]


async def test_plain_requests_still_vary_on_origin(db_settings: dict[str, Any]) -> None:
    settings = make_settings(**db_settings, allowed_origins='["https://ops.example"]')
    async with running_app(settings) as client:
        plain = await client.get("/health")
        simple = await client.get("/health", headers={"Origin": "https://ops.example"})
    assert plain.headers["vary"] == "Origin"
    assert "access-control-allow-origin" not in plain.headers
    assert simple.headers["access-control-allow-origin"] == "https://ops.example"
    assert "Origin" in simple.headers["vary"]
