"""Accepting a request: the token, the checks, and the task stored with its delivery job.

The task row and its ``gateway.deliver`` job are written in one transaction, so a task
is either durable with its job or not there at all; the 202 is sent after the commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.gateway.directory import ClientView, EndpointView
from dispatch.gateway.search import search_text
from dispatch.gateway.signing import new_message_id
from dispatch.models import GatewayTask
from dispatch.queue import service as queue
from dispatch.queue.service import JobSpec

DELIVER_KIND = "gateway.deliver"
# Seed 002 read the token from these headers, in this order, after X-API-Token.
TOKEN_HEADERS = ("x-api-token", "token", "access_token", "access-token", "x_api_token")
# Dispatch's own key header, so an admin key works here as on every other route.
ADMIN_KEY_HEADER = "x-dispatch-key"
_TASKS: Table = GatewayTask.__table__  # type: ignore[assignment]


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The client token from ``X-API-Token``, the seed's alternatives or a bearer token."""
    for name in (*TOKEN_HEADERS, ADMIN_KEY_HEADER):
        value = headers.get(name)
        if value and value.strip():
            return value.strip()
    authorization = headers.get("authorization", "").strip()
    if not authorization:
        return None
    scheme, _, rest = authorization.partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" else authorization
    return token or None


def missing_params(payload: Mapping[str, Any], required: tuple[str, ...]) -> list[str]:
    """Required keys absent from the payload; ``ref`` and ``scope`` must also be non-empty."""
    missing = []
    for name in required:
        value = payload.get(name)
        if name not in payload or (name in ("ref", "scope") and value in (None, "")):
            missing.append(name)
    return missing


def _short(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)[:200]


@dataclass(frozen=True, slots=True)
class Accepted:
    task_id: int
    status: str  # the task's status now
    replayed: bool  # an earlier request with the same Idempotency-Key made this task


def deliver_spec(message_id: str, max_attempts: int, queue_name: str) -> JobSpec:
    return JobSpec(
        kind=DELIVER_KIND,
        args={"message_id": message_id},
        queue=queue_name,
        max_attempts=max_attempts,
    )


async def _existing(session: AsyncSession, client_id: int | None, key: str) -> Accepted | None:
    row = (
        await session.execute(
            select(GatewayTask.id, GatewayTask.status).where(
                GatewayTask.client_id == client_id
                if client_id is not None
                else GatewayTask.client_id.is_(None),
                GatewayTask.idempotency_key == key,
            )
        )
    ).first()
    return Accepted(row.id, row.status, True) if row is not None else None


async def accept(
    database: Database,
    *,
    endpoint: EndpointView,
    client: ClientView | None,
    payload: dict[str, Any],
    idempotency_key: str | None,
    default_max_attempts: int,
    queue_name: str,
) -> Accepted:
    """Store the task (and its job unless held); an Idempotency-Key replay returns the first."""
    client_id = client.id if client else None
    if idempotency_key:
        async with database.session(write=False) as session:
            found = await _existing(session, client_id, idempotency_key)
        if found is not None:
            return found
    held = endpoint.holds or (client is not None and client.dev_hold_tasks)
    max_attempts = endpoint.max_attempts or default_max_attempts
    message_id = new_message_id()
    now = utcnow()
    client_name = client.name if client else "admin"
    try:
        async with database.session() as session:
            job_id = None
            if not held:
                spec = deliver_spec(message_id, max_attempts, queue_name)
                job_id = (await queue.enqueue(session, spec)).job_id
            task_id = await session.scalar(
                insert(_TASKS)
                .values(
                    message_id=message_id,
                    endpoint_id=endpoint.id,
                    endpoint_path=endpoint.path,
                    client_id=client_id,
                    client_name=client_name,
                    ref=_short(payload.get("ref")),
                    scope=_short(payload.get("scope")),
                    status="held" if held else "pending",
                    idempotency_key=idempotency_key,
                    source_payload=payload,
                    job_id=job_id,
                    series=1,
                    attempts=0,
                    max_attempts=max_attempts,
                    created_at=now,
                    updated_at=now,
                    search_text=search_text(
                        (
                            payload.get("ref"),
                            payload.get("scope"),
                            client_name,
                            endpoint.path,
                            message_id,
                            payload,
                        )
                    ),
                )
                .returning(_TASKS.c.id)
            )
    except IntegrityError:
        if not idempotency_key:
            raise
        # The same key raced in from another request: the first one's task is the answer.
        async with database.session(write=False) as session:
            found = await _existing(session, client_id, idempotency_key)
        if found is None:
            raise
        return found
    assert task_id is not None
    return Accepted(task_id, "held" if held else "pending", False)
