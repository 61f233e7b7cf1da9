"""/ready goes 503 when a dependency is cut and back to 200 when it returns."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.engine import make_url

from tests.support import TcpProxy, make_settings, running_app


async def _ready(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await client.get("/ready")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def test_ready_follows_the_database(db_settings: dict[str, Any], postgres_url: str) -> None:
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = make_settings(
        **(db_settings | {"database_url": proxied}), health_check_timeout_seconds=1.0
    )
    try:
        async with running_app(settings) as client:
            assert (await _ready(client))[0] == 200

            await proxy.stop()
            status, body = await _ready(client)
            assert status == 503
            assert body["status"] == "not_ready"
            assert body["checks"]["database"]["ok"] is False
            assert body["checks"]["database"]["error"]
            assert (await client.get("/health")).status_code == 200

            await proxy.start()
            status, body = await _ready(client)
            assert status == 200, body
            assert body["checks"]["database"]["ok"] is True
    finally:
        await proxy.stop()


async def test_ready_follows_redis(db_settings: dict[str, Any], redis_url: str) -> None:
    url = make_url(redis_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 6379)
    await proxy.start()
    settings = make_settings(
        **db_settings,
        redis_url=f"redis://127.0.0.1:{proxy.port}/0",
        health_check_timeout_seconds=1.0,
    )
    try:
        async with running_app(settings) as client:
            assert (await _ready(client))[0] == 200
            await proxy.stop()
            status, body = await _ready(client)
            assert status == 503
            assert body["checks"]["redis"]["ok"] is False
            assert body["checks"]["database"]["ok"] is True
            await proxy.start()
            status, body = await _ready(client)
            assert status == 200, body
    finally:
        await proxy.stop()
