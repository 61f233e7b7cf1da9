"""What ingress needs to know about endpoints and clients, cached for a moment per process.

Ingress must answer in a few milliseconds, so the endpoint and the client of a request
are read from the database at most once per ``GATEWAY_CONFIG_CACHE_SECONDS`` per
process. An edit made through this process drops the cache at once; other processes
see it within that many seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select

from dispatch.db.engine import Database
from dispatch.gateway.plans import RouteCache
from dispatch.models import GatewayClient, GatewayEndpoint, GatewayEndpointClient
from dispatch.security.api_keys import hash_key

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class EndpointView:
    id: int
    path: str
    required_params: tuple[str, ...]
    is_active: bool
    holds: bool  # development mode with hold: tasks wait for a release
    max_attempts: int | None
    client_ids: frozenset[int]


@dataclass(frozen=True, slots=True)
class ClientView:
    id: int
    name: str
    is_active: bool
    dev_hold_tasks: bool


class Directory:
    def __init__(self, database: Database, ttl_seconds: float) -> None:
        self.database = database
        self.ttl = ttl_seconds
        self._endpoints: dict[str, tuple[float, EndpointView | None]] = {}
        self._clients: dict[str, tuple[float, ClientView | None]] = {}
        self._loading: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._generation = 0
        self.routes = RouteCache(ttl_seconds)  # what deliveries read about endpoints and clients

    def invalidate(self) -> None:
        """Forget everything: called after every edit of endpoints or clients."""
        self._endpoints.clear()
        self._clients.clear()
        self._loading.clear()
        self._generation += 1  # a load that started before the edit must not be cached
        self.routes.clear()

    async def endpoint(self, path: str) -> EndpointView | None:
        now = time.monotonic()
        cached = self._endpoints.get(path)
        if cached is not None and cached[0] > now:
            return cached[1]
        generation = self._generation
        view = await self._once(("endpoint", path), lambda: self._load_endpoint(path))
        if generation == self._generation:
            self._endpoints[path] = (now + self.ttl, view)
        return view

    async def client(self, token: str) -> ClientView | None:
        digest = hash_key(token)
        now = time.monotonic()
        cached = self._clients.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        generation = self._generation
        view = await self._once(("client", digest), lambda: self._load_client(digest))
        if len(self._clients) > 10_000:  # unknown tokens must not grow the cache without bound
            self._clients.clear()
        if generation == self._generation:
            self._clients[digest] = (now + self.ttl, view)
        return view

    async def _once(self, key: tuple[str, str], load: Callable[[], Awaitable[V]]) -> V:
        """One load per key at a time: requests that miss together share it (no stampede
        when an entry expires under load)."""
        running = self._loading.get(key)
        if running is None:
            running = asyncio.ensure_future(load())
            self._loading[key] = running
            running.add_done_callback(
                lambda done: self._loading.pop(key) if self._loading.get(key) is done else None
            )
        result: V = await asyncio.shield(running)
        return result

    async def _load_endpoint(self, path: str) -> EndpointView | None:
        async with self.database.session(write=False) as session:
            endpoint = await session.scalar(
                select(GatewayEndpoint).where(GatewayEndpoint.path == path)
            )
            if endpoint is None:
                return None
            client_ids = await session.scalars(
                select(GatewayEndpointClient.client_id).where(
                    GatewayEndpointClient.endpoint_id == endpoint.id
                )
            )
            return EndpointView(
                id=endpoint.id,
                path=endpoint.path,
                required_params=tuple(endpoint.required_params),
                is_active=endpoint.is_active,
                holds=endpoint.is_development_mode and endpoint.dev_hold_tasks,
                max_attempts=endpoint.max_attempts,
                client_ids=frozenset(client_ids),
            )

    async def _load_client(self, digest: str) -> ClientView | None:
        async with self.database.session(write=False) as session:
            client = await session.scalar(
                select(GatewayClient).where(GatewayClient.token_hash == digest)
            )
        if client is None:
            return None
        return ClientView(client.id, client.name, client.is_active, client.dev_hold_tasks)
