"""A running Dispatch (embedded worker on) whose providers all point at one fake server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from dispatch.config import Settings
from dispatch.db.engine import Database
from dispatch.demo.providers import FakeProviders, provider_settings
from tests.support import admin_headers, make_settings, running_app

ADMIN = admin_headers()
V1 = "/api/v1"

CATALOG_TEST_SETTINGS: dict[str, Any] = {
    "worker_enabled": True,
    "worker_poll_interval_seconds": 0.1,
    "sync_schedule": "",  # tests sync on demand; one test turns the schedule on
}


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with FakeProviders() as server:
        yield server


@pytest.fixture
def catalog_settings(db_settings: dict[str, Any], fake: FakeProviders) -> Settings:
    return make_settings(**db_settings, **provider_settings(fake), **CATALOG_TEST_SETTINGS)


@pytest.fixture
async def http(catalog_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(catalog_settings) as client:
        yield client


@pytest.fixture
async def database(catalog_settings: Settings) -> AsyncIterator[Database]:
    db = Database(catalog_settings)
    yield db
    await db.dispose()


FINISHED = ("succeeded", "failed", "cancelled")


async def finished_job(
    http: httpx.AsyncClient, job_id: int, seconds: float = 20, *, retried: bool = False
) -> dict[str, Any]:
    """The job once it has finished (or, with ``retried``, once it waits for a retry)."""
    async with asyncio.timeout(seconds):
        while True:
            response = await http.get(f"{V1}/jobs/{job_id}", headers=ADMIN)
            assert response.status_code == 200, response.text
            job: dict[str, Any] = response.json()
            if job["state"] in FINISHED or (
                retried and job["last_error"] and job["state"] == "scheduled"
            ):
                return job
            await asyncio.sleep(0.05)


async def sync(http: httpx.AsyncClient, provider: str, *, retried: bool = False) -> dict[str, Any]:
    """Run a provider now and wait for its job."""
    response = await http.post(f"{V1}/providers/{provider}/sync", headers=ADMIN)
    assert response.status_code == 202, response.text
    return await finished_job(http, response.json()["job_id"], retried=retried)
