"""Clients: who may call which endpoint, with a token shown once and stored hashed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.errors import NotFound, ValidationFailed
from dispatch.gateway.endpoints import dev_rule_out, dev_rule_row
from dispatch.gateway.schemas import ClientCreate, ClientOut, ClientUpdate
from dispatch.models import GatewayClient, GatewayDevRule, GatewayEndpoint, GatewayEndpointClient
from dispatch.security.api_keys import generate_token, hash_key

TOKEN_PREFIX = "dpy_"  # noqa: S105 (a prefix, not a secret); seed 002's prefix, so existing client tooling recognises the tokens
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8


async def get_client(session: AsyncSession, client_id: int) -> GatewayClient:
    client = await session.get(GatewayClient, client_id)
    if client is None:
        raise NotFound(f"Client {client_id} not found")
    return client


async def _set_endpoints(session: AsyncSession, client_id: int, endpoint_ids: list[int]) -> None:
    found = set(
        await session.scalars(
            select(GatewayEndpoint.id).where(GatewayEndpoint.id.in_(endpoint_ids))
        )
    )
    unknown = sorted(set(endpoint_ids) - found)
    if unknown:
        raise ValidationFailed("Unknown endpoint ids", details={"ids": unknown})
    await session.execute(
        delete(GatewayEndpointClient).where(GatewayEndpointClient.client_id == client_id)
    )
    for endpoint_id in sorted(set(endpoint_ids)):
        session.add(GatewayEndpointClient(endpoint_id=endpoint_id, client_id=client_id))


async def _set_rules(
    session: AsyncSession, client: GatewayClient, data: ClientCreate | ClientUpdate
) -> None:
    if data.dev_rules is None:
        return
    endpoint_ids = [r.endpoint_id for r in data.dev_rules if r.endpoint_id is not None]
    if endpoint_ids:
        found = set(
            await session.scalars(
                select(GatewayEndpoint.id).where(GatewayEndpoint.id.in_(endpoint_ids))
            )
        )
        unknown = sorted(set(endpoint_ids) - found)
        if unknown:
            raise ValidationFailed("Unknown endpoint ids in dev rules", details={"ids": unknown})
    await session.execute(delete(GatewayDevRule).where(GatewayDevRule.client_id == client.id))
    for position, rule in enumerate(data.dev_rules):
        session.add(dev_rule_row(rule, position, client_id=client.id, endpoint_id=rule.endpoint_id))


_EXCLUDE = {"endpoint_ids", "dev_rules"}


async def create_client(
    session: AsyncSession, data: ClientCreate, now: datetime
) -> tuple[GatewayClient, str]:
    token = generate_token(TOKEN_PREFIX)
    values = {
        k: v
        for k, v in data.model_dump(exclude_unset=True, exclude=_EXCLUDE).items()
        if v is not None
    }
    client = GatewayClient(
        token_hash=hash_key(token),
        token_prefix=token[:PREFIX_LENGTH],
        created_at=now,
        updated_at=now,
        **values,
    )
    session.add(client)
    await session.flush()
    if data.endpoint_ids is not None:
        await _set_endpoints(session, client.id, data.endpoint_ids)
    await _set_rules(session, client, data)
    return client, token


async def update_client(
    session: AsyncSession, client_id: int, data: ClientUpdate, now: datetime
) -> GatewayClient:
    client = await get_client(session, client_id)
    for name, value in data.model_dump(exclude_unset=True, exclude=_EXCLUDE).items():
        if value is not None or name == "description":
            setattr(client, name, value)
    client.updated_at = now
    if data.endpoint_ids is not None:
        await _set_endpoints(session, client.id, data.endpoint_ids)
    await _set_rules(session, client, data)
    return client


async def rotate_token(
    session: AsyncSession, client_id: int, now: datetime
) -> tuple[GatewayClient, str]:
    """A new token; the old one stops working at once."""
    client = await get_client(session, client_id)
    token = generate_token(TOKEN_PREFIX)
    client.token_hash = hash_key(token)
    client.token_prefix = token[:PREFIX_LENGTH]
    client.token_rotated_at = now
    client.updated_at = now
    return client, token


async def delete_client(session: AsyncSession, client_id: int) -> None:
    await session.delete(await get_client(session, client_id))


async def authenticate(session: AsyncSession, token: str) -> GatewayClient | None:
    """The active client holding this token, for UI logins."""
    client = await session.scalar(
        select(GatewayClient).where(GatewayClient.token_hash == hash_key(token))
    )
    return client if client is not None and client.is_active else None


async def client_out(session: AsyncSession, client: GatewayClient) -> ClientOut:
    endpoint_ids = list(
        await session.scalars(
            select(GatewayEndpointClient.endpoint_id)
            .where(GatewayEndpointClient.client_id == client.id)
            .order_by(GatewayEndpointClient.endpoint_id)
        )
    )
    rules = await session.scalars(
        select(GatewayDevRule)
        .where(GatewayDevRule.client_id == client.id)
        .order_by(GatewayDevRule.position, GatewayDevRule.id)
    )
    return ClientOut(
        id=client.id,
        name=client.name,
        description=client.description,
        token_prefix=client.token_prefix,
        endpoint_ids=endpoint_ids,
        is_active=client.is_active,
        is_dev_client=client.is_dev_client,
        dev_hold_tasks=client.dev_hold_tasks,
        dev_rules_enabled=client.dev_rules_enabled,
        dev_rules=[dev_rule_out(rule) for rule in rules],
        token_rotated_at=client.token_rotated_at,
        created_at=client.created_at,
        updated_at=client.updated_at,
    )


async def list_clients(session: AsyncSession) -> list[ClientOut]:
    clients = await session.scalars(select(GatewayClient).order_by(GatewayClient.name))
    return [await client_out(session, client) for client in clients]
