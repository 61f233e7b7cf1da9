"""The gateway's per-process parts: settings, SSRF policy, the delivery HTTP client, limits."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.db.group_commit import GroupCommit
from dispatch.gateway import ingest
from dispatch.gateway.breaker import BreakerConfig
from dispatch.gateway.directory import Directory
from dispatch.gateway.ingest import Accepted, Request
from dispatch.gateway.outcomes import Outcome, record_outcomes
from dispatch.gateway.plans import Plan, load_plans
from dispatch.queue.policy import RetryPolicy
from dispatch.security.ssrf import AddressPolicy
from dispatch.telemetry.metrics import Metrics

if TYPE_CHECKING:
    import aiohttp


@dataclass
class _Bucket:
    """A token bucket of one resource's request rate (per process)."""

    rate: float
    tokens: float
    stamp: float

    def wait_for_token(self, now: float) -> float:
        """Take a token; the seconds to wait before using it (0 when one was there)."""
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def _ingest_batcher(settings: Settings, database: Database) -> GroupCommit[Request, Accepted]:
    """Ingress writes, group-committed; an Idempotency-Key race retries them one by one."""
    attempts, queue = settings.gateway_max_attempts, settings.gateway_queue

    async def work(session: AsyncSession, requests: list[Request]) -> list[Accepted]:
        return await ingest.store_many(session, requests, attempts, queue)

    async def alone(request: Request) -> Accepted:
        return await ingest.accept(
            database, request, default_max_attempts=attempts, queue_name=queue
        )

    return GroupCommit(
        database, work, name="gateway.ingest", alone=alone, alone_on=(IntegrityError,)
    )


@dataclass
class GatewayContext:
    settings: Settings
    database: Database
    directory: Directory
    addresses: AddressPolicy
    breaker: BreakerConfig
    retry: RetryPolicy
    batcher: GroupCommit[Request, Accepted]
    metrics: Metrics | None = None
    loader: GroupCommit[str, Plan | None] = field(init=False)
    recorder: GroupCommit[Outcome, None] = field(init=False)
    _http: aiohttp.ClientSession | None = None
    _buckets: dict[int, _Bucket] = field(default_factory=dict)
    _slots: dict[int, tuple[int, asyncio.Semaphore]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        routes = self.directory.routes

        async def load(session: AsyncSession, message_ids: list[str]) -> list[Plan | None]:
            return await load_plans(session, message_ids, routes, utcnow())

        async def store(session: AsyncSession, outcomes: list[Outcome]) -> list[None]:
            return await record_outcomes(session, self, outcomes)

        self.loader = GroupCommit(self.database, load, name="gateway.plans")
        self.recorder = GroupCommit(self.database, store, name="gateway.outcomes")

    @classmethod
    def build(
        cls, settings: Settings, database: Database, metrics: Metrics | None = None
    ) -> GatewayContext:
        return cls(
            metrics=metrics,
            settings=settings,
            database=database,
            directory=Directory(database, settings.gateway_config_cache_seconds),
            batcher=_ingest_batcher(settings, database),
            addresses=AddressPolicy.from_strings(settings.gateway_allowed_networks),
            breaker=BreakerConfig(
                consecutive_failures=settings.gateway_breaker_failures,
                window_seconds=settings.gateway_breaker_window_seconds,
                min_requests=settings.gateway_breaker_min_requests,
                failure_rate=settings.gateway_breaker_failure_rate,
                cool_down_seconds=settings.gateway_breaker_cool_down_seconds,
            ),
            retry=RetryPolicy(
                max_attempts=settings.gateway_max_attempts,
                base_seconds=min(
                    settings.gateway_retry_base_seconds, settings.gateway_retry_cap_seconds
                ),
                cap_seconds=settings.gateway_retry_cap_seconds,
                jitter=0.2,
                retry_after_cap_seconds=settings.gateway_retry_after_max_seconds,
            ),
        )

    @property
    def http(self) -> aiohttp.ClientSession:
        """The delivery client, created on first use inside the running loop.

        aiohttp, not httpx: on this class of machine it measured about six times faster at
        64 concurrent requests. Every connection goes through the SSRF-checking resolver.
        """
        if self._http is None or self._http.closed:
            # Imported here: a process that never delivers never loads aiohttp (~20 MB).
            import aiohttp

            from dispatch.security.ssrf_http import guarded_connector

            connector = guarded_connector(
                self.addresses, limit=0, limit_per_host=self.settings.max_connections * 10
            )
            self._http = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self.settings.user_agent},
                auto_decompress=True,
            )
        return self._http

    def rate_wait(self, resource_id: int, per_second: float | None) -> float:
        """Seconds to wait before the next request to a rate-limited resource (this process)."""
        if not per_second:
            self._buckets.pop(resource_id, None)
            return 0.0
        now = time.monotonic()
        bucket = self._buckets.get(resource_id)
        if bucket is None or bucket.rate != per_second:
            bucket = self._buckets[resource_id] = _Bucket(per_second, per_second, now)
        return bucket.wait_for_token(now)

    def slots(self, resource_id: int, limit: int | None) -> asyncio.Semaphore | None:
        """The semaphore bounding in-flight requests to one resource (this process)."""
        if not limit:
            return None
        held = self._slots.get(resource_id)
        if held is None or held[0] != limit:
            held = self._slots[resource_id] = (limit, asyncio.Semaphore(limit))
        return held[1]

    async def close(self) -> None:
        for batcher in (self.batcher, self.loader, self.recorder):
            await batcher.close()
        if self._http is not None and not self._http.closed:
            await self._http.close()
        self._http = None
