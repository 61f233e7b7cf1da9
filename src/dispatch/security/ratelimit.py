"""Rate limits per principal and route group, in memory or shared through Redis.

Budgets are sliding-window counters from the ``limits`` library. With ``REDIS_URL``
set, every process and machine draws from one budget. ``X-Forwarded-For`` is read
only when the direct peer is one of ``TRUSTED_PROXIES``.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.requests import HTTPConnection

from dispatch.config import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis
from dispatch.errors import RateLimited

log = structlog.get_logger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class LimitState:
    limit: int
    remaining: int
    reset_after: int  # seconds until the window frees capacity

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after),
        }


def parse_networks(values: Sequence[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def _is_trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_ip(connection: HTTPConnection, trusted: Sequence[IPNetwork]) -> str:
    """The caller's address, honouring X-Forwarded-For only from trusted proxies."""
    peer = connection.client.host if connection.client else "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded = connection.headers.get("x-forwarded-for", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    # Walk from the nearest hop outwards; the first untrusted address is the client.
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _storage_for(settings: Settings, redis: Redis | None) -> Storage:
    if settings.redis_url and redis is not None:
        return RedisStorage(
            "async+" + settings.redis_url,
            implementation="redispy",
            key_prefix=f"{settings.redis_key_prefix}:rl",
            wrap_exceptions=True,
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]
        )
    return MemoryStorage()


class RateLimiter:
    """Budgets by route group: ``group -> requests per minute``."""

    def __init__(
        self, settings: Settings, budgets: Mapping[str, int], redis: Redis | None = None
    ) -> None:
        self.enabled = settings.rate_limit_enabled
        self.storage = _storage_for(settings, redis)
        self.strategy = SlidingWindowCounterRateLimiter(self.storage)
        self.items: dict[str, RateLimitItem] = {
            group: RateLimitItemPerMinute(amount) for group, amount in budgets.items()
        }
        self.trusted = parse_networks(settings.trusted_proxies)
        self.shared = settings.redis_url is not None
        self.on_reject: Callable[[str], None] | None = None

    async def hit(self, group: str, identity: str) -> LimitState | None:
        """Count one request; raise RateLimited over budget. None when limits are off."""
        item = self.items.get(group)
        if not self.enabled or item is None:
            return None
        try:
            allowed = await self.strategy.hit(item, group, identity)
            stats = await self.strategy.get_window_stats(item, group, identity)
        except Exception as exc:  # a limiter outage must not take the API down
            log.warning("ratelimit.storage_error", error=str(exc), group=group)
            return None
        reset_after = max(0, math.ceil(stats.reset_time - time.time()))
        state = LimitState(item.amount, max(0, stats.remaining), reset_after)
        if not allowed:
            if self.on_reject is not None:
                self.on_reject(group)
            headers = state.headers() | {"Retry-After": str(max(1, reset_after))}
            raise RateLimited(
                f"Rate limit of {item.amount} requests per minute exceeded for {group} routes",
                details={
                    "group": group,
                    "limit": item.amount,
                    "retry_after": max(1, reset_after),
                    # Seed 003's names for the same two facts.
                    "scope": group,
                    "retry_after_seconds": max(1, reset_after),
                },
                headers=headers,
            )
        return state
