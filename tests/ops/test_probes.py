from __future__ import annotations

import httpx


async def test_health_is_public(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_root_keeps_seed_000_banner(client: httpx.AsyncClient) -> None:
    body = (await client.get("/")).json()
    assert body["service"] == "Dispatch"
    assert body["message"] == "Dispatch API is online."


async def test_ready_reports_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert "redis" not in body["checks"]


async def test_probes_answer_head_for_load_balancers(client: httpx.AsyncClient) -> None:
    for path in ("/", "/health", "/ready"):
        response = await client.head(path)
        assert response.status_code == 200, path
        assert response.content == b""
