from __future__ import annotations

import asyncio
from typing import Any

import httpx

from dispatch.telemetry.events import Telemetry
from dispatch.telemetry.metrics import Metrics
from tests.support import HttpSink, admin_headers, make_settings, running_app


def _telemetry(url: str | None, client: httpx.AsyncClient | None, **options: Any) -> Telemetry:
    return Telemetry(url, client, Metrics(), backoff_base=0.01, **options)


async def test_buffer_is_bounded_and_counts_drops() -> None:
    async with httpx.AsyncClient() as client:
        telemetry = _telemetry("http://127.0.0.1:1/never", client, capacity=5, batch_size=100)
        for index in range(12):
            telemetry.emit("api.usage", index=index)
    assert len(telemetry) == 5
    assert telemetry.counters.dropped == 7
    assert telemetry.counters.queued == 12


async def test_without_endpoint_nothing_is_buffered() -> None:
    telemetry = _telemetry(None, None)
    for _ in range(1000):
        telemetry.emit("api.usage")
    assert len(telemetry) == 0
    assert not telemetry.enabled


async def test_batches_are_posted_with_retries() -> None:
    with HttpSink(fail_first=1) as sink:
        async with httpx.AsyncClient() as client:
            telemetry = _telemetry(sink.url, client, batch_size=3)
            for index in range(7):
                telemetry.emit("scraper.cycle", stored=index)
            await telemetry.flush()
            telemetry.max_attempts = 3
            assert await telemetry.send_batch()  # nothing left: a no-op success
    sizes = [len(batch["events"]) for batch in sink.received]
    names = {event["name"] for batch in sink.received for event in batch["events"]}
    assert names == {"scraper.cycle"}
    # flush makes one attempt per batch: the first batch hit the 503 and was dropped
    assert sizes == [3, 1]
    assert telemetry.counters.failed == 3
    assert telemetry.counters.sent == 4


async def test_a_failing_batch_is_retried_with_backoff() -> None:
    with HttpSink(fail_first=2) as sink:
        async with httpx.AsyncClient() as client:
            telemetry = _telemetry(sink.url, client, max_attempts=3)
            telemetry.emit("scraper.error", provider="goat")
            assert await telemetry.send_batch()
    assert sink.calls == 3
    assert sink.received[0]["events"][0]["attributes"] == {"provider": "goat"}


async def test_app_forwards_startup_and_login_events(db_settings: dict[str, Any]) -> None:
    with HttpSink() as sink:
        settings = make_settings(
            **db_settings, telemetry_endpoint=sink.url, telemetry_flush_interval_seconds=0.05
        )
        async with running_app(settings) as client:
            await client.get("/health")
            await client.get("/api/v1/system", headers=admin_headers())
            for _ in range(100):
                if sink.received:
                    break
                await asyncio.sleep(0.02)
        events = [event for batch in sink.received for event in batch["events"]]
    names = [event["name"] for event in events]
    assert "app.startup" in names
    assert "app.shutdown" in names  # flushed on the way out
    usage = [event["attributes"] for event in events if event["name"] == "api.usage"]
    assert usage == [
        {
            "method": "GET",
            "route": "/api/v1/system",
            "status": 200,
            "client": "env:MASTER_KEY",
            "duration_ms": usage[0]["duration_ms"],
        }
    ]
