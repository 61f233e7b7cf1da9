"""A running Dispatch (embedded worker on) and a real HTTP sink on loopback, plus helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.gateway.sink import Sink
from tests.support import admin_headers, make_settings, running_app

ADMIN = admin_headers()
V1 = "/api/v1/gateway"

# Fast clocks: retries after a fraction of a second, breakers that cool down quickly.
GATEWAY_TEST_SETTINGS: dict[str, Any] = {
    "worker_enabled": True,
    "worker_poll_interval_seconds": 0.2,
    "gateway_allowed_networks": ["127.0.0.0/8"],
    "gateway_retry_base_seconds": 0.2,
    "gateway_retry_cap_seconds": 1.0,
    "gateway_breaker_failures": 2,
    "gateway_breaker_cool_down_seconds": 0.6,
    "gateway_config_cache_seconds": 0.0,
}


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    receiver = await Sink().start()
    yield receiver
    await receiver.stop()


@dataclass
class Gateway:
    http: httpx.AsyncClient

    async def resource(self, name: str, url: str, **fields: Any) -> dict[str, Any]:
        body = {"name": name, "url": url, "timeout_seconds": 2, **fields}
        response = await self.http.post(f"{V1}/resources", json=body, headers=ADMIN)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def endpoint(self, path: str, resource_ids: list[int], **fields: Any) -> dict[str, Any]:
        body = {"path": path, "resource_ids": resource_ids, **fields}
        response = await self.http.post(f"{V1}/endpoints", json=body, headers=ADMIN)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def client(self, name: str, endpoint_ids: list[int], **fields: Any) -> dict[str, Any]:
        body = {"name": name, "endpoint_ids": endpoint_ids, **fields}
        response = await self.http.post(f"{V1}/clients", json=body, headers=ADMIN)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def send(
        self, path: str, token: str, payload: dict[str, Any], **headers: str
    ) -> httpx.Response:
        return await self.http.post(
            f"/api/{path}", json=payload, headers={"X-API-Token": token, **headers}
        )

    async def task(self, task_id: int) -> dict[str, Any]:
        response = await self.http.get(f"{V1}/tasks/{task_id}", headers=ADMIN)
        assert response.status_code == 200, response.text
        task: dict[str, Any] = response.json()
        return task

    async def settled(
        self, task_id: int, statuses: tuple[str, ...] = ("success", "failed"), seconds: float = 15
    ) -> dict[str, Any]:
        """The task once its status is one of ``statuses``."""
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            task = await self.task(task_id)
            if task["status"] in statuses:
                return task
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"task {task_id} is still {task['status']}: {task}")
            await asyncio.sleep(0.05)

    async def setup(
        self, sink: Sink, paths: list[str], **endpoint_fields: Any
    ) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
        """Resources at ``paths`` of the sink (in failover order), an endpoint, a client token."""
        made = [await self.resource(f"r-{p}", sink.url(p)) for p in paths]
        endpoint = await self.endpoint("notify", [r["id"] for r in made], **endpoint_fields)
        client = await self.client("acme", [endpoint["id"]])
        return endpoint, made, client["token"]


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def gateway(db_settings: dict[str, Any]) -> AsyncIterator[Gateway]:
    settings = make_settings(**db_settings, **GATEWAY_TEST_SETTINGS)
    async with running_app(settings) as http:
        yield Gateway(http)
