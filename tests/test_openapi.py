from __future__ import annotations

import httpx

# Self-registration is public by design (its own budget, and 403 unless enabled); so is the
# page Discogs sends a user's browser back to (the temporary OAuth token names the request).
PUBLIC = {
    ("get", "/"),
    ("get", "/health"),
    ("get", "/ready"),
    ("post", "/api/v1/register"),
    ("get", "/api/v1/integrations/discogs/oauth/callback"),
}
KEY_SCHEMES = {"APIKeyHeader", "HTTPBearer"}


async def test_every_route_documents_auth_and_errors(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert {scheme["type"] for scheme in schemes.values()} == {"apiKey", "http"}
    header_names = {scheme.get("name") for scheme in schemes.values()}
    assert {"X-Dispatch-Key", "X-API-Token"} <= header_names

    operations = [
        (method, path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]
    assert len(operations) >= 9
    for method, path, operation in operations:
        if (method, path) in PUBLIC:
            assert "security" not in operation, path
            continue
        assert operation.get("security"), f"{method} {path} has no auth scheme"
        assert {"401", "403", "429"} <= set(operation["responses"]), f"{method} {path}"
        assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorEnvelope"
        }


async def test_new_routes_appear_without_restart(client: httpx.AsyncClient) -> None:
    first = (await client.get("/openapi.json")).json()
    assert "/api/v1/keys/{key_id}" in first["paths"]
    assert "/ui/login" not in first["paths"]


async def test_docs_use_local_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in page.text
    bundle = await client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert len(bundle.content) > 100_000
