"""Endpoints: paths clients POST to, their failover order, clients and rules."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.errors import NotFound, ValidationFailed
from dispatch.gateway import mapping
from dispatch.gateway.resources import breaker_rows, flush_unique
from dispatch.gateway.schemas import (
    DevRuleIn,
    DevRuleOut,
    EndpointCreate,
    EndpointOut,
    EndpointResourceOut,
    EndpointRules,
    EndpointRulesOut,
    EndpointUpdate,
    MappingRuleIn,
    MappingRuleOut,
    MappingTestIn,
    MappingTestOut,
    MappingTestResult,
)
from dispatch.models import (
    GatewayClient,
    GatewayDevRule,
    GatewayEndpoint,
    GatewayEndpointClient,
    GatewayEndpointResource,
    GatewayMappingRule,
    GatewayResource,
)

DEFAULT_REQUIRED = ("ref", "scope")
_PATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.~]*(/[A-Za-z0-9_\-.~]+)*$")


def check_path(path: str, reserved: Sequence[str]) -> str:
    """A clean endpoint path that cannot shadow the service's own routes under /api/."""
    path = path.strip().strip("/")
    if not _PATH.match(path) or ".." in path:
        raise ValidationFailed(
            "Endpoint paths are letters, digits, '-', '_', '.', '~' in '/'-separated segments",
            details={"path": path},
        )
    first = path.split("/", 1)[0].lower()
    if first in reserved:
        raise ValidationFailed(
            f"Paths starting with {first!r}/ are the service's own routes",
            details={"path": path, "reserved": sorted(reserved)},
        )
    return path


async def get_endpoint(session: AsyncSession, endpoint_id: int) -> GatewayEndpoint:
    endpoint = await session.get(GatewayEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"Endpoint {endpoint_id} not found")
    return endpoint


async def _require_ids(session: AsyncSession, model: Any, ids: Sequence[int], what: str) -> None:
    if len(set(ids)) != len(ids):
        raise ValidationFailed(f"{what} ids repeat", details={"ids": list(ids)})
    found = set(await session.scalars(select(model.id).where(model.id.in_(list(ids)))))
    unknown = sorted(set(ids) - found)
    if unknown:
        raise ValidationFailed(f"Unknown {what} ids", details={"ids": unknown})


async def _set_links(
    session: AsyncSession, endpoint_id: int, data: EndpointCreate | EndpointUpdate
) -> None:
    if data.resource_ids is not None:
        await _require_ids(session, GatewayResource, data.resource_ids, "resource")
        await session.execute(
            delete(GatewayEndpointResource).where(
                GatewayEndpointResource.endpoint_id == endpoint_id
            )
        )
        # Rules for resources no longer in the sequence would never be used again.
        await session.execute(
            delete(GatewayMappingRule).where(
                GatewayMappingRule.endpoint_id == endpoint_id,
                GatewayMappingRule.resource_id.not_in(data.resource_ids),
            )
        )
        for sequence, resource_id in enumerate(data.resource_ids):
            session.add(
                GatewayEndpointResource(
                    endpoint_id=endpoint_id, resource_id=resource_id, sequence=sequence
                )
            )
    if data.client_ids is not None:
        await _require_ids(session, GatewayClient, data.client_ids, "client")
        await session.execute(
            delete(GatewayEndpointClient).where(GatewayEndpointClient.endpoint_id == endpoint_id)
        )
        for client_id in data.client_ids:
            session.add(GatewayEndpointClient(endpoint_id=endpoint_id, client_id=client_id))


_LINK_FIELDS = {"resource_ids", "client_ids", "path"}


async def create_endpoint(
    session: AsyncSession, data: EndpointCreate, reserved: Sequence[str], now: datetime
) -> GatewayEndpoint:
    values = data.model_dump(exclude_unset=True, exclude=_LINK_FIELDS)
    values.setdefault("required_params", list(DEFAULT_REQUIRED))
    values = {k: v for k, v in values.items() if v is not None or k == "max_attempts"}
    endpoint = GatewayEndpoint(
        path=check_path(data.path, reserved), created_at=now, updated_at=now, **values
    )
    session.add(endpoint)
    await flush_unique(session, f"An endpoint with path {endpoint.path!r}")
    await _set_links(session, endpoint.id, data)
    return endpoint


async def update_endpoint(
    session: AsyncSession,
    endpoint_id: int,
    data: EndpointUpdate,
    reserved: Sequence[str],
    now: datetime,
) -> GatewayEndpoint:
    endpoint = await get_endpoint(session, endpoint_id)
    if data.path is not None:
        endpoint.path = check_path(data.path, reserved)
    for name, value in data.model_dump(exclude_unset=True, exclude=_LINK_FIELDS).items():
        if value is not None or name in ("max_attempts", "description"):
            setattr(endpoint, name, value)
    endpoint.updated_at = now
    await flush_unique(session, f"An endpoint with path {endpoint.path!r}")
    await _set_links(session, endpoint.id, data)
    return endpoint


async def delete_endpoint(session: AsyncSession, endpoint_id: int) -> None:
    await session.delete(await get_endpoint(session, endpoint_id))


async def duplicate_endpoint(
    session: AsyncSession, endpoint_id: int, reserved: Sequence[str], now: datetime
) -> GatewayEndpoint:
    """A copy with its resources, clients and rules; path + ``-copy`` (seed: `` copy``)."""
    source = await get_endpoint(session, endpoint_id)
    paths = set(await session.scalars(select(GatewayEndpoint.path)))
    path, counter = f"{source.path}-copy", 2
    while path in paths:
        path, counter = f"{source.path}-copy{counter}", counter + 1
    rules = await get_rules(session, endpoint_id)
    resource_ids, client_ids = await _links(session, endpoint_id)
    copy = await create_endpoint(
        session,
        EndpointCreate(
            path=path,
            description=source.description,
            required_params=list(source.required_params),
            resource_ids=resource_ids,
            client_ids=client_ids,
            is_active=source.is_active,
            is_development_mode=source.is_development_mode,
            dev_hold_tasks=source.dev_hold_tasks,
            dev_rules_enabled=source.dev_rules_enabled,
            max_attempts=source.max_attempts,
        ),
        reserved,
        now,
    )
    await replace_rules(
        session,
        copy.id,
        EndpointRules(
            mapping=[MappingRuleIn(**r.model_dump(exclude={"id"})) for r in rules.mapping],
            dev_rules=[DevRuleIn(**r.model_dump(exclude={"id"})) for r in rules.dev_rules],
        ),
    )
    return copy


async def _links(session: AsyncSession, endpoint_id: int) -> tuple[list[int], list[int]]:
    resource_ids = list(
        await session.scalars(
            select(GatewayEndpointResource.resource_id)
            .where(GatewayEndpointResource.endpoint_id == endpoint_id)
            .order_by(GatewayEndpointResource.sequence)
        )
    )
    client_ids = list(
        await session.scalars(
            select(GatewayEndpointClient.client_id)
            .where(GatewayEndpointClient.endpoint_id == endpoint_id)
            .order_by(GatewayEndpointClient.client_id)
        )
    )
    return resource_ids, client_ids


async def endpoint_out(session: AsyncSession, endpoint: GatewayEndpoint) -> EndpointOut:
    link = GatewayEndpointResource
    rows = (
        await session.execute(
            select(GatewayResource, link.sequence)
            .join(link, link.resource_id == GatewayResource.id)
            .where(link.endpoint_id == endpoint.id)
            .order_by(link.sequence)
        )
    ).all()
    states = await breaker_rows(session, [resource.id for resource, _ in rows])
    _, client_ids = await _links(session, endpoint.id)
    return EndpointOut(
        id=endpoint.id,
        path=endpoint.path,
        url=f"/api/{endpoint.path}",
        description=endpoint.description,
        required_params=list(endpoint.required_params),
        resources=[
            EndpointResourceOut(
                id=resource.id,
                name=resource.name,
                sequence=sequence,
                is_active=resource.is_active,
                breaker_state=states[resource.id].state if resource.id in states else "closed",
            )
            for resource, sequence in rows
        ],
        client_ids=client_ids,
        is_active=endpoint.is_active,
        is_development_mode=endpoint.is_development_mode,
        dev_hold_tasks=endpoint.dev_hold_tasks,
        dev_rules_enabled=endpoint.dev_rules_enabled,
        max_attempts=endpoint.max_attempts,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


async def list_endpoints(session: AsyncSession) -> list[EndpointOut]:
    endpoints = await session.scalars(select(GatewayEndpoint).order_by(GatewayEndpoint.path))
    return [await endpoint_out(session, endpoint) for endpoint in endpoints]


def dev_rule_out(row: GatewayDevRule) -> DevRuleOut:
    return DevRuleOut(
        id=row.id,
        condition_param=row.condition_param,
        condition_value=row.condition_value,
        match=row.match,
        target_param=row.target_param,
        override_value=row.override_value,
        active=row.active,
        endpoint_id=row.endpoint_id if row.client_id is not None else None,
    )


async def get_rules(session: AsyncSession, endpoint_id: int) -> EndpointRulesOut:
    await get_endpoint(session, endpoint_id)
    maps = await session.scalars(
        select(GatewayMappingRule)
        .where(GatewayMappingRule.endpoint_id == endpoint_id)
        .order_by(GatewayMappingRule.position, GatewayMappingRule.id)
    )
    devs = await session.scalars(
        select(GatewayDevRule)
        .where(GatewayDevRule.endpoint_id == endpoint_id, GatewayDevRule.client_id.is_(None))
        .order_by(GatewayDevRule.position, GatewayDevRule.id)
    )
    return EndpointRulesOut(
        mapping=[
            MappingRuleOut(
                id=row.id,
                resource_id=row.resource_id,
                target_key=row.target_key,
                source_type=row.source_type,
                source_value=row.source_value,
            )
            for row in maps
        ],
        dev_rules=[dev_rule_out(row) for row in devs],
    )


def dev_rule_row(rule: DevRuleIn, position: int, **owner: int | None) -> GatewayDevRule:
    return GatewayDevRule(
        position=position,
        condition_param=rule.condition_param or None,
        condition_value=rule.condition_value or None,
        match=rule.match,
        target_param=rule.target_param,
        override_value=rule.override_value,
        active=rule.active,
        **owner,
    )


async def replace_rules(session: AsyncSession, endpoint_id: int, rules: EndpointRules) -> None:
    """Replace the mapping and dev rules of an endpoint in one go."""
    await get_endpoint(session, endpoint_id)
    resource_ids, _ = await _links(session, endpoint_id)
    strangers = sorted({r.resource_id for r in rules.mapping} - set(resource_ids))
    if strangers:
        raise ValidationFailed(
            "Mapping rules may only name resources of this endpoint", details={"ids": strangers}
        )
    await session.execute(
        delete(GatewayMappingRule).where(GatewayMappingRule.endpoint_id == endpoint_id)
    )
    await session.execute(
        delete(GatewayDevRule).where(
            GatewayDevRule.endpoint_id == endpoint_id, GatewayDevRule.client_id.is_(None)
        )
    )
    for position, rule in enumerate(rules.mapping):
        session.add(
            GatewayMappingRule(
                endpoint_id=endpoint_id,
                resource_id=rule.resource_id,
                position=position,
                target_key=rule.target_key,
                source_type=rule.source_type,
                source_value=rule.source_value,
            )
        )
    for position, dev in enumerate(rules.dev_rules):
        session.add(dev_rule_row(dev, position, endpoint_id=endpoint_id, client_id=None))


def _as_rules(
    rules: EndpointRules,
) -> tuple[dict[int, list[mapping.MappingRule]], list[mapping.DevRule]]:
    maps: dict[int, list[mapping.MappingRule]] = {}
    for rule in rules.mapping:
        maps.setdefault(rule.resource_id, []).append(
            mapping.MappingRule(rule.target_key, rule.source_type, rule.source_value)
        )
    devs = [
        mapping.DevRule(
            d.target_param, d.override_value, d.condition_param, d.condition_value, d.match
        )
        for d in rules.dev_rules
        if d.active
    ]
    return maps, devs


async def try_mapping(
    session: AsyncSession, endpoint_id: int, data: MappingTestIn, now: datetime
) -> MappingTestOut:
    """The target payload each resource would receive for a sample, as a delivery builds it.

    Dev rules count as they would at delivery: the endpoint's only in development mode with
    dev rules on, the client's only when that client has dev rules on.
    """
    endpoint = await get_endpoint(session, endpoint_id)
    stored = await get_rules(session, endpoint_id)
    rules = data.rules or EndpointRules(
        mapping=[MappingRuleIn(**r.model_dump(exclude={"id"})) for r in stored.mapping],
        dev_rules=[DevRuleIn(**r.model_dump(exclude={"id"})) for r in stored.dev_rules],
    )
    maps, endpoint_devs = _as_rules(rules)
    if not (endpoint.is_development_mode and endpoint.dev_rules_enabled):
        endpoint_devs = []
    client_devs: list[mapping.DevRule] = []
    client = await session.get(GatewayClient, data.client_id) if data.client_id else None
    if data.client_id is not None and client is None:
        raise NotFound(f"Client {data.client_id} not found")
    if client is not None and client.dev_rules_enabled:
        rows = await session.scalars(
            select(GatewayDevRule)
            .where(GatewayDevRule.client_id == client.id, GatewayDevRule.active.is_(True))
            .where(
                GatewayDevRule.endpoint_id.is_(None) | (GatewayDevRule.endpoint_id == endpoint.id)
            )
            .order_by(GatewayDevRule.position, GatewayDevRule.id)
        )
        client_devs = [
            mapping.DevRule(
                r.target_param, r.override_value, r.condition_param, r.condition_value, r.match
            )
            for r in rows
        ]
    link = GatewayEndpointResource
    query = (
        select(GatewayResource)
        .join(link, link.resource_id == GatewayResource.id)
        .where(link.endpoint_id == endpoint.id)
        .order_by(link.sequence)
    )
    if data.resource_id is not None:
        query = query.where(GatewayResource.id == data.resource_id)
    results = []
    first: mapping.MappingResult | None = None
    for resource in await session.scalars(query):
        result = mapping.map_payload(
            data.payload,
            client_rules=client_devs,
            endpoint_rules=endpoint_devs,
            mapping_rules=maps.get(resource.id, []),
            now=now,
        )
        first = first or result
        results.append(
            MappingTestResult(
                resource_id=resource.id,
                resource_name=resource.name,
                target=result.target,
                missing=list(result.missing),
                missing_required=[p for p in resource.required_params if p not in result.target],
            )
        )
    if first is None:
        first = mapping.map_payload(
            data.payload, client_rules=client_devs, endpoint_rules=endpoint_devs, now=now
        )
    return MappingTestOut(working=first.working, overrides=first.overrides, results=results)
