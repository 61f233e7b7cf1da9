"""Telemetry events (seed 000's API-usage, scraper and lifecycle events).

Events wait in a bounded buffer and are POSTed in batches to TELEMETRY_ENDPOINT
with retries. When the buffer is full the oldest event is dropped and counted,
so memory stays bounded whatever the endpoint does (seed 000's queue grew forever).
Without an endpoint nothing is buffered; events are only logged at debug level.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from dispatch.telemetry.metrics import Metrics

if TYPE_CHECKING:
    import httpx

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TelemetryEvent:
    name: str
    attributes: dict[str, Any]
    timestamp: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "attributes": self.attributes, "timestamp": self.timestamp}


@dataclass
class TelemetryCounters:
    queued: int = 0
    sent: int = 0
    dropped: int = 0
    failed: int = 0


class Telemetry:
    """Bounded buffer plus a batching sender task."""

    def __init__(
        self,
        endpoint: str | None,
        client: httpx.AsyncClient | None,
        metrics: Metrics,
        *,
        capacity: int = 10_000,
        batch_size: int = 100,
        flush_interval: float = 5.0,
        max_attempts: int = 3,
        backoff_base: float = 0.5,
    ) -> None:
        self.endpoint = endpoint
        self._client = client
        self._metrics = metrics
        self._buffer: deque[TelemetryEvent] = deque()
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.counters = TelemetryCounters()
        self._wake = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return self.endpoint is not None and self._client is not None

    def __len__(self) -> int:
        return len(self._buffer)

    def emit(self, name: str, **attributes: Any) -> None:
        """Record an event; never blocks and never grows past the capacity."""
        log.debug("telemetry.event", event_name=name, **attributes)
        if not self.enabled:
            return
        if len(self._buffer) >= self.capacity:
            self._buffer.popleft()
            self._count("dropped")
        self._buffer.append(TelemetryEvent(name, attributes))
        self._count("queued")
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    def _count(self, outcome: str, amount: int = 1) -> None:
        setattr(self.counters, outcome, getattr(self.counters, outcome) + amount)
        self._metrics.telemetry_events.labels(outcome).inc(amount)

    async def run(self) -> None:
        """Send batches until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.flush_interval)
            self._wake.clear()
            while self._buffer:
                await self.send_batch()
                if len(self._buffer) < self.batch_size:
                    break

    async def send_batch(self) -> bool:
        """POST one batch, retrying with backoff; a batch that never gets through is dropped."""
        if not self.enabled or not self._buffer:
            return True
        import httpx  # loaded with the client (only when TELEMETRY_ENDPOINT is set)

        assert self._client is not None
        assert self.endpoint is not None
        batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
        payload = {"events": [event.as_json() for event in batch]}
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = await self._client.post(self.endpoint, json=payload)
                if response.status_code < 300:
                    self._count("sent", len(batch))
                    return True
                error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            if attempt < self.max_attempts:
                delay = self.backoff_base * 2 ** (attempt - 1)
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311
        log.warning("telemetry.batch_failed", events=len(batch), error=error)
        self._count("failed", len(batch))
        return False

    async def flush(self) -> None:
        """Send what is buffered, one attempt per batch (used at shutdown)."""
        attempts, self.max_attempts = self.max_attempts, 1
        try:
            while self._buffer:
                await self.send_batch()
        finally:
            self.max_attempts = attempts
