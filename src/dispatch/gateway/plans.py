"""What a delivery needs, read in batches: the task, its failover sequence, rules, breakers.

Many deliveries start at once (a worker claims a batch), so their tasks are marked
``processing`` and read together, in one group-committed transaction. An endpoint's
routing (its active resources in order, their mapping rules, its dev rules) and a
client's dev rules change rarely: they are cached per process for
``GATEWAY_CONFIG_CACHE_SECONDS``, like ingress's endpoints, and dropped with them on an
edit. Breakers are always read fresh.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import UTCDateTime
from dispatch.gateway import breakers
from dispatch.gateway.breaker import Breaker
from dispatch.gateway.mapping import DevRule, MappingRule
from dispatch.gateway.resources import signing_secrets
from dispatch.models import (
    GatewayClient,
    GatewayDevRule,
    GatewayEndpoint,
    GatewayEndpointResource,
    GatewayMappingRule,
    GatewayResource,
    GatewayTask,
)

DELIVERABLE = ("pending", "processing")
# How one request of a delivery went (GatewayAttempt.outcome).
SUCCESS = "success"
RETRYABLE = "retryable"  # timeout, connection error, 5xx, 408, 429: try the next resource
PERMANENT = "permanent"  # other 4xx and 3xx: this resource refuses this request
GONE = "gone"  # 410: the resource asks to be disabled
BLOCKED = "blocked"  # the SSRF guard refused the address


@dataclass(frozen=True, slots=True)
class Target:
    """A resource as one delivery sees it."""

    id: int
    name: str
    url: str
    method: str
    headers: dict[str, str]
    timeout: float
    secrets: tuple[str, ...]
    required_params: tuple[str, ...]
    rate_per_second: float | None
    concurrency: int | None
    rules: tuple[MappingRule, ...]


@dataclass
class Plan:
    task_id: int
    message_id: str
    series: int
    source: dict[str, Any]
    client_rules: tuple[DevRule, ...]
    endpoint_rules: tuple[DevRule, ...]
    targets: list[Target]
    breakers: dict[int, Breaker]
    search_parts: tuple[Any, ...] = ()


@dataclass
class Hop:
    """One request of a delivery and how it went."""

    target: Target
    outcome: str
    started_at: datetime
    payload: dict[str, Any] | None = None
    status_code: int | None = None
    body: str | None = None
    error: str | None = None
    duration_ms: int | None = None
    headers_shown: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What becomes of the task after an attempt."""

    status: str  # success | pending | failed
    error: str | None
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Route:
    targets: tuple[Target, ...]
    dev_rules: tuple[DevRule, ...]  # empty unless the endpoint is in dev mode with dev rules on


@dataclass(frozen=True, slots=True)
class ClientRules:
    enabled: bool
    rules: tuple[tuple[int | None, DevRule], ...]  # (endpoint it is limited to, rule)

    def for_endpoint(self, endpoint_id: int | None) -> tuple[DevRule, ...]:
        if not self.enabled:
            return ()
        return tuple(rule for only, rule in self.rules if only is None or only == endpoint_id)


def _dev_rule(row: GatewayDevRule) -> DevRule:
    return DevRule(
        target_param=row.target_param,
        override_value=row.override_value,
        condition_param=row.condition_param,
        condition_value=row.condition_value,
        match=row.match,
    )


async def _load_route(session: AsyncSession, endpoint_id: int, now: datetime) -> Route:
    endpoint = await session.get(GatewayEndpoint, endpoint_id)
    if endpoint is None:
        return Route((), ())
    link = GatewayEndpointResource
    resources = await session.scalars(
        select(GatewayResource)
        .join(link, link.resource_id == GatewayResource.id)
        .where(link.endpoint_id == endpoint_id, GatewayResource.is_active.is_(True))
        .order_by(link.sequence, GatewayResource.id)
    )
    rule_rows = await session.scalars(
        select(GatewayMappingRule)
        .where(GatewayMappingRule.endpoint_id == endpoint_id)
        .order_by(GatewayMappingRule.position, GatewayMappingRule.id)
    )
    rules: dict[int, list[MappingRule]] = {}
    for row in rule_rows:
        rules.setdefault(row.resource_id, []).append(
            MappingRule(row.target_key, row.source_type, row.source_value)
        )
    dev: tuple[DevRule, ...] = ()
    if endpoint.is_development_mode and endpoint.dev_rules_enabled:
        rows = await session.scalars(
            select(GatewayDevRule)
            .where(GatewayDevRule.endpoint_id == endpoint_id, GatewayDevRule.client_id.is_(None))
            .where(GatewayDevRule.active.is_(True))
            .order_by(GatewayDevRule.position, GatewayDevRule.id)
        )
        dev = tuple(_dev_rule(row) for row in rows)
    targets = tuple(
        Target(
            id=r.id,
            name=r.name,
            url=r.url,
            method=r.method,
            headers=dict(r.headers),
            timeout=r.timeout_seconds,
            secrets=signing_secrets(r, now),
            required_params=tuple(r.required_params),
            rate_per_second=r.rate_limit_per_second,
            concurrency=r.concurrency_limit,
            rules=tuple(rules.get(r.id, ())),
        )
        for r in resources
    )
    return Route(targets, dev)


async def _load_client_rules(session: AsyncSession, client_id: int) -> ClientRules:
    client = await session.get(GatewayClient, client_id)
    if client is None or not client.dev_rules_enabled:
        return ClientRules(False, ())
    rows = await session.scalars(
        select(GatewayDevRule)
        .where(GatewayDevRule.client_id == client_id, GatewayDevRule.active.is_(True))
        .order_by(GatewayDevRule.position, GatewayDevRule.id)
    )
    return ClientRules(True, tuple((row.endpoint_id, _dev_rule(row)) for row in rows))


class RouteCache:
    """Endpoint routes and client dev rules, cached ``ttl`` seconds per process."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._routes: dict[int, tuple[float, Route]] = {}
        self._clients: dict[int, tuple[float, ClientRules]] = {}

    def clear(self) -> None:
        self._routes.clear()
        self._clients.clear()

    async def route(self, session: AsyncSession, endpoint_id: int, now: datetime) -> Route:
        cached = self._routes.get(endpoint_id)
        clock = time.monotonic()
        if cached is not None and cached[0] > clock:
            return cached[1]
        route = await _load_route(session, endpoint_id, now)
        self._routes[endpoint_id] = (clock + self.ttl, route)
        return route

    async def client_rules(self, session: AsyncSession, client_id: int) -> ClientRules:
        cached = self._clients.get(client_id)
        clock = time.monotonic()
        if cached is not None and cached[0] > clock:
            return cached[1]
        rules = await _load_client_rules(session, client_id)
        self._clients[client_id] = (clock + self.ttl, rules)
        return rules


_TASKS: Table = GatewayTask.__table__  # type: ignore[assignment]
T = _TASKS.c
# The columns a plan needs, straight from the UPDATE: no ORM objects on the delivery path.
_PLANNED = (
    T.id,
    T.message_id,
    T.series,
    T.source_payload,
    T.endpoint_id,
    T.client_id,
    T.ref,
    T.scope,
    T.client_name,
    T.endpoint_path,
)
# One statement marks the deliverable tasks processing and returns them. The subquery locks
# them in id order first (FOR UPDATE on PostgreSQL), so two transactions touching several
# of the same tasks cannot deadlock.
_START = (
    update(_TASKS)
    .where(
        T.id.in_(
            select(T.id)
            .where(
                T.message_id.in_(bindparam("p_messages", expanding=True)),
                T.status.in_(DELIVERABLE),
            )
            .order_by(T.id)
            .with_for_update()
            .scalar_subquery()
        )
    )
    .values(status="processing", updated_at=bindparam("p_now", type_=UTCDateTime()))
    .returning(*_PLANNED)
)


async def load_plans(
    session: AsyncSession, message_ids: Sequence[str], routes: RouteCache, now: datetime
) -> list[Plan | None]:
    """Mark the deliverable tasks processing and plan each; None for a task to skip
    (deleted, stopped, held or already delivered)."""
    result = await session.execute(_START, {"p_messages": list(message_ids), "p_now": now})
    tasks = {row.message_id: row for row in result}
    if not tasks:
        return [None] * len(message_ids)
    planned: dict[str, tuple[Any, Route, tuple[DevRule, ...]]] = {}
    for message_id, task in tasks.items():
        route = (
            await routes.route(session, task.endpoint_id, now)
            if task.endpoint_id is not None
            else Route((), ())
        )
        client_rules: tuple[DevRule, ...] = ()
        if task.client_id is not None:
            client = await routes.client_rules(session, task.client_id)
            client_rules = client.for_endpoint(task.endpoint_id)
        planned[message_id] = (task, route, client_rules)
    resource_ids = {t.id for _, route, _ in planned.values() for t in route.targets}
    states = await breakers.load(session, sorted(resource_ids))
    return [
        _plan(*planned[message_id], states) if message_id in planned else None
        for message_id in message_ids
    ]


def _plan(
    task: Any, route: Route, client_rules: tuple[DevRule, ...], states: dict[int, Breaker]
) -> Plan:
    return Plan(
        task_id=task.id,
        message_id=task.message_id,
        series=task.series,
        source=dict(task.source_payload),
        client_rules=client_rules,
        endpoint_rules=route.dev_rules,
        targets=list(route.targets),
        breakers={t.id: states.get(t.id, Breaker()) for t in route.targets},
        search_parts=(
            task.ref,
            task.scope,
            task.client_name,
            task.endpoint_path,
            task.message_id,
            task.source_payload,
        ),
    )
