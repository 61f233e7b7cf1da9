"""Accepting a request: the token, the checks, and the task stored with its delivery job.

The task row and its ``gateway.deliver`` job are written in one transaction, so a task
is either durable with its job or not there at all; the 202 is sent after the commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import utcnow
from dispatch.db.bulk import insert_returning_ids
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


@dataclass(frozen=True, slots=True)
class Request:
    """One accepted request on its way into the database."""

    endpoint: EndpointView
    client: ClientView | None
    payload: dict[str, Any]
    idempotency_key: str | None = None

    @property
    def client_id(self) -> int | None:
        return self.client.id if self.client else None

    @property
    def held(self) -> bool:
        return self.endpoint.holds or (self.client is not None and self.client.dev_hold_tasks)


def _task_row(
    request: Request, message_id: str, job_id: int | None, max_attempts: int, now: datetime
) -> dict[str, Any]:
    payload = request.payload
    client_name = request.client.name if request.client else "admin"
    return {
        "message_id": message_id,
        "endpoint_id": request.endpoint.id,
        "endpoint_path": request.endpoint.path,
        "client_id": request.client_id,
        "client_name": client_name,
        "ref": _short(payload.get("ref")),
        "scope": _short(payload.get("scope")),
        "status": "held" if request.held else "pending",
        "idempotency_key": request.idempotency_key,
        "source_payload": payload,
        "job_id": job_id,
        "series": 1,
        "attempts": 0,
        "max_attempts": max_attempts,
        "created_at": now,
        "updated_at": now,
        "search_text": search_text(
            (
                payload.get("ref"),
                payload.get("scope"),
                client_name,
                request.endpoint.path,
                message_id,
                payload,
            )
        ),
    }


async def _replays(
    session: AsyncSession, requests: Sequence[Request]
) -> dict[tuple[int | None, str], Accepted]:
    keys = {r.idempotency_key for r in requests if r.idempotency_key}
    if not keys:
        return {}
    rows = await session.execute(
        select(
            GatewayTask.id, GatewayTask.status, GatewayTask.client_id, GatewayTask.idempotency_key
        ).where(GatewayTask.idempotency_key.in_(keys))
    )
    return {
        (row.client_id, row.idempotency_key): Accepted(row.id, row.status, True) for row in rows
    }


async def store_many(
    session: AsyncSession, requests: Sequence[Request], default_max_attempts: int, queue_name: str
) -> list[Accepted]:
    """Insert the tasks (and the jobs of those not held) in the caller's transaction.

    A request whose Idempotency-Key was already used by its client, earlier or earlier in
    this batch, gets the first task back. Raises IntegrityError when another transaction
    took a key meanwhile; the caller then retries the requests one by one.
    """
    now = utcnow()
    replays = await _replays(session, requests)
    fresh: list[tuple[int, Request, str, int]] = []  # index, request, message id, attempts
    claimed: dict[tuple[int | None, str], int] = {}  # key -> index of its first request
    duplicates: dict[int, int] = {}
    for index, request in enumerate(requests):
        key = request.idempotency_key
        if key and (request.client_id, key) in replays:
            continue
        if key and (request.client_id, key) in claimed:
            duplicates[index] = claimed[(request.client_id, key)]
            continue
        if key:
            claimed[(request.client_id, key)] = index
        attempts = request.endpoint.max_attempts or default_max_attempts
        fresh.append((index, request, new_message_id(), attempts))
    to_queue = [(i, mid, att) for i, r, mid, att in fresh if not r.held]
    jobs = (
        await queue.enqueue_many(
            session, [deliver_spec(mid, att, queue_name) for _, mid, att in to_queue]
        )
        if to_queue
        else []
    )
    job_ids = {i: job.job_id for (i, _, _), job in zip(to_queue, jobs, strict=True)}
    rows = [_task_row(r, mid, job_ids.get(i), att, now) for i, r, mid, att in fresh]
    ids = await insert_returning_ids(session, _TASKS, rows)
    results: dict[int, Accepted] = {}
    for (index, request, _, _), task_id in zip(fresh, ids, strict=True):
        results[index] = Accepted(task_id, "held" if request.held else "pending", False)
    for index, request in enumerate(requests):
        key = request.idempotency_key
        if index in results:
            continue
        if index in duplicates:
            first = results[duplicates[index]]
            results[index] = Accepted(first.task_id, first.status, True)
        elif key:
            results[index] = replays[(request.client_id, key)]
    return [results[index] for index in range(len(requests))]


async def accept(
    database: Database, request: Request, *, default_max_attempts: int, queue_name: str
) -> Accepted:
    """Store one request in a transaction of its own (a replay returns the first task)."""
    try:
        async with database.session() as session:
            (accepted,) = await store_many(session, [request], default_max_attempts, queue_name)
        return accepted
    except IntegrityError:
        if not request.idempotency_key:
            raise
    # The same key raced in from another request: the first one's task is the answer.
    async with database.session(write=False) as session:
        found = await _replays(session, [request])
    first = found.get((request.client_id, request.idempotency_key))
    if first is None:
        raise RuntimeError("idempotency conflict without a first task")  # not reachable
    return first
