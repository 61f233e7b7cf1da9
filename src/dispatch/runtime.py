"""The objects one running app shares: built in the lifespan, reached through ``app.state``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dispatch.background import Supervisor
from dispatch.catalog.context import CatalogContext
from dispatch.config import Settings
from dispatch.db.engine import Database
from dispatch.gateway.context import GatewayContext
from dispatch.queue.registry import Registry
from dispatch.queue.worker import Worker
from dispatch.security.jwt_auth import JwtVerifier
from dispatch.security.ratelimit import RateLimiter
from dispatch.security.sessions import SessionSigner
from dispatch.security.usage import KeyUsage
from dispatch.telemetry.events import Telemetry
from dispatch.telemetry.metrics import Metrics

if TYPE_CHECKING:  # redis is imported only when REDIS_URL is set (about 6 MB of modules)
    import httpx
    from redis.asyncio import Redis


@dataclass
class Runtime:
    settings: Settings
    database: Database
    limiter: RateLimiter
    telemetry: Telemetry
    metrics: Metrics
    signer: SessionSigner
    http: httpx.AsyncClient | None
    gateway: GatewayContext
    catalog: CatalogContext
    redis: Redis | None = None
    jwt: JwtVerifier | None = None  # bearer JWTs from an identity provider, when configured
    supervisor: Supervisor = field(default_factory=Supervisor)
    key_usage: KeyUsage = field(default_factory=KeyUsage)
    registry: Registry = field(default_factory=Registry)
    worker: Worker | None = None
    started_at: float = field(default_factory=time.time)

    async def close(self) -> None:
        """Release connections; safe to call once the supervisor has stopped."""
        if self.http is not None:
            await self.http.aclose()
        await self.gateway.close()
        await self.catalog.close()
        if self.jwt is not None:
            await self.jwt.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.database.dispose()
