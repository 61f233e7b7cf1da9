"""Users with personal keys on a running Dispatch, for the watch API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from dispatch.config import Settings
from dispatch.demo.providers import FakeProviders, provider_settings
from tests.support import admin_headers, make_settings, running_app

ADMIN = admin_headers()
V1 = "/api/v1"
# With a worker running, rules poll their sources: point every provider at a closed
# loopback port (refused at once) so no test reaches a real provider.
NOWHERE = "http://127.0.0.1:9"
OFFLINE_PROVIDERS: dict[str, Any] = {
    f"{name}_base_url": NOWHERE
    for name in ("complexshop", "universalstore", "goat", "discogs", "ebay")
} | {"catalog_provider_retries": 0}


@dataclass(frozen=True)
class WatchUser:
    id: int
    email: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Dispatch-Key": self.key}


async def new_user(
    http: httpx.AsyncClient, email: str, password: str = "a long password", **extra: Any
) -> WatchUser:
    """An admin-created user with a personal key."""
    created = await http.post(
        f"{V1}/users", json={"email": email, "password": password, **extra}, headers=ADMIN
    )
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    key = await http.post(f"{V1}/users/{user_id}/keys", json={"name": "tests"}, headers=ADMIN)
    assert key.status_code == 201, key.text
    return WatchUser(user_id, email, key.json()["key"])


@pytest.fixture
def watch_settings(db_settings: dict[str, Any]) -> Settings:
    return make_settings(**db_settings)


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    """Every provider on one loopback server serving the recorded fixtures."""
    with FakeProviders() as server:
        yield server


@pytest.fixture
def fake_watch_settings(db_settings: dict[str, Any], fake: FakeProviders) -> Settings:
    """Settings whose providers all point at the fake server: a test never calls a real one."""
    return make_settings(**db_settings, **provider_settings(fake))


@pytest.fixture
async def http(watch_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(watch_settings) as client:
        yield client


@pytest.fixture
async def alice(http: httpx.AsyncClient) -> WatchUser:
    return await new_user(http, "alice@example.com")


@pytest.fixture
async def bob(http: httpx.AsyncClient) -> WatchUser:
    return await new_user(http, "bob@example.com")
