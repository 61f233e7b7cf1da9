from __future__ import annotations

from typing import Any

import httpx

from tests.support import admin_headers, make_settings, running_app


async def test_metrics_need_a_key_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_metrics_by_route_template_status_and_pool(client: httpx.AsyncClient) -> None:
    await client.get("/api/v1/keys/41", headers=admin_headers())
    await client.get("/api/v1/keys/42", headers=admin_headers())
    await client.get("/does-not-exist")
    response = await client.get("/metrics", headers=admin_headers())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        'dispatch_http_requests_total{method="GET",route="/api/v1/keys/{key_id}",status="404"} 2.0'
        in text
    )
    assert 'route="<unmatched>",status="404"' in text
    assert "/api/v1/keys/41" not in text
    assert 'dispatch_http_request_duration_seconds_bucket{le="0.005",method="GET"' in text
    assert 'dispatch_db_pool_connections{state="checkedout"}' in text
    assert 'dispatch_build_info{database="' in text


async def test_metrics_can_be_public(db_settings: dict[str, Any]) -> None:
    async with running_app(make_settings(**db_settings, metrics_public=True)) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert "dispatch_http_requests_total" in response.text


async def test_rate_limit_refusals_are_counted(db_settings: dict[str, Any]) -> None:
    settings = make_settings(**db_settings, request_rate_per_minute=1, api_keys="metrics-only")
    async with running_app(settings) as client:
        await client.get("/api/v1/system", headers=admin_headers())
        await client.get("/api/v1/system", headers=admin_headers())
        text = (await client.get("/metrics", headers={"X-Dispatch-Key": "metrics-only"})).text
    assert 'dispatch_rate_limited_total{group="api"} 1.0' in text
