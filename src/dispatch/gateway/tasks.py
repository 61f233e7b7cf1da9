"""Tasks: search, detail and the lifecycle actions (stop, retry, release, delete).

Every action is one conditional UPDATE or DELETE on the task's status, so the guards
(nothing is stopped, retried or deleted while it is processing) hold however many
processes act at once. ``owner`` is the client a caller acts as; None is an admin.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import utcnow
from dispatch.errors import BadRequest, Conflict, NotFound
from dispatch.gateway.ingest import deliver_spec
from dispatch.gateway.schemas import AttemptOut, TaskDetail, TaskOut, TaskPage
from dispatch.gateway.search import matches as search_matches
from dispatch.models import GatewayAttempt, GatewayTask, Job
from dispatch.queue import service as queue

ACTIONS: dict[str, tuple[str, ...]] = {
    "stop": ("pending", "held"),
    "retry": ("failed", "stopped"),
    "release": ("held",),
    "delete": ("pending", "success", "failed", "held", "stopped"),
}
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class TaskQuery:
    status: str | None = None
    search: str | None = None
    endpoint_id: int | None = None
    client_id: int | None = None
    resource_id: int | None = None
    ref: str | None = None
    scope: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = None
    limit: int = 50


def encode_cursor(task_id: int) -> str:
    return base64.urlsafe_b64encode(str(task_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return int(base64.urlsafe_b64decode(padded.encode()).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("Invalid cursor", details={"cursor": cursor}) from exc


def _filtered(query: TaskQuery, owner: int | None, dialect: str) -> Select[Any]:
    t = GatewayTask
    stmt = select(t)
    if owner is not None:
        stmt = stmt.where(t.client_id == owner)
    exact = {
        t.status: query.status,
        t.endpoint_id: query.endpoint_id,
        t.client_id: query.client_id,
        t.resource_id: query.resource_id,
        t.ref: query.ref,
        t.scope: query.scope,
    }
    for column, value in exact.items():
        if value is not None:
            stmt = stmt.where(column == value)
    if query.since is not None:
        stmt = stmt.where(t.created_at >= query.since)
    if query.until is not None:
        stmt = stmt.where(t.created_at < query.until)
    if query.search:
        stmt = stmt.where(search_matches(query.search, dialect))
    return stmt


async def search(session: AsyncSession, query: TaskQuery, owner: int | None) -> TaskPage:
    """Newest first, ``limit`` per page; ``next_cursor`` continues after the last one."""
    limit = max(1, min(query.limit, MAX_PAGE))
    stmt = _filtered(query, owner, session.get_bind().dialect.name)
    if query.cursor:
        stmt = stmt.where(GatewayTask.id < decode_cursor(query.cursor))
    rows = list(await session.scalars(stmt.order_by(GatewayTask.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return TaskPage(
        items=[TaskOut.model_validate(row) for row in rows],
        next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
    )


async def counts(session: AsyncSession, owner: int | None) -> dict[str, int]:
    """Tasks by status (the dashboard's figures)."""
    stmt = select(GatewayTask.status, func.count()).group_by(GatewayTask.status)
    if owner is not None:
        stmt = stmt.where(GatewayTask.client_id == owner)
    found: dict[str, int] = {status: count for status, count in await session.execute(stmt)}
    return {status: int(found.get(status, 0)) for status in ACTIONS["delete"] + ("processing",)}


async def get_task(session: AsyncSession, task_id: int, owner: int | None) -> GatewayTask:
    """The task, if the caller may see it (another client's task is 'not found')."""
    task = await session.get(GatewayTask, task_id)
    if task is None or (owner is not None and task.client_id != owner):
        raise NotFound(f"Task {task_id} not found")
    return task


async def detail(session: AsyncSession, task_id: int, owner: int | None) -> TaskDetail:
    task = await get_task(session, task_id, owner)
    attempts = await session.scalars(
        select(GatewayAttempt).where(GatewayAttempt.task_id == task.id).order_by(GatewayAttempt.id)
    )
    base = TaskOut.model_validate(task).model_dump()
    return TaskDetail(
        **base,
        source_payload=task.source_payload,
        target_payload=task.target_payload,
        idempotency_key=task.idempotency_key,
        attempt_log=[AttemptOut.model_validate(a) for a in attempts],
    )


async def _cancel_waiting_job(session: AsyncSession, job_id: int | None) -> None:
    """Cancel the task's job if it is waiting; a running one sees the task's status and skips."""
    if job_id is None:
        return
    await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_(("scheduled", "available")))
        .values(state="cancelled", finished_at=utcnow())
    )


def _refusal(action: str, status: str) -> str:
    allowed = " or ".join(ACTIONS[action])
    return f"cannot {action} a {status} task (only {allowed})"


async def act(
    session: AsyncSession, task_id: int, action: str, owner: int | None, queue_name: str
) -> GatewayTask | None:
    """Apply one action; raises Conflict when the task's status does not allow it."""
    task = await get_task(session, task_id, owner)
    allowed = ACTIONS[action]
    now = utcnow()
    t = GatewayTask
    guard = (t.id == task.id) & t.status.in_(allowed)
    if action == "delete":
        result = await session.execute(delete(t).where(guard))
        if not result.rowcount:  # type: ignore[attr-defined]
            raise Conflict(_refusal(action, task.status), details={"status": task.status})
        await _cancel_waiting_job(session, task.job_id)
        return None
    values: dict[str, object] = {"updated_at": now}
    if action == "stop":
        values.update(status="stopped", next_attempt_at=None)
    else:
        values.update(status="pending", last_error=None, next_attempt_at=None)
        if action == "retry":
            values["series"] = t.series + 1
    # The guard comes first: a refused action must leave no delivery job behind, even when
    # its caller goes on to commit the transaction.
    result = await session.execute(update(t).where(guard).values(**values))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise Conflict(_refusal(action, task.status), details={"status": task.status})
    if action == "stop":
        await _cancel_waiting_job(session, task.job_id)
    else:
        job = await queue.enqueue(
            session, deliver_spec(task.message_id, task.max_attempts, queue_name)
        )
        await session.execute(update(t).where(t.id == task.id).values(job_id=job.job_id))
    await session.refresh(task)
    return task


async def act_many(
    session: AsyncSession,
    task_ids: Sequence[int],
    action: str,
    owner: int | None,
    queue_name: str,
) -> tuple[list[int], dict[str, str]]:
    """Apply one action to many tasks; those it does not fit are reported, not touched."""
    done: list[int] = []
    refused: dict[str, str] = {}
    for task_id in dict.fromkeys(task_ids):
        try:
            async with session.begin_nested():
                await act(session, task_id, action, owner, queue_name)
        except (Conflict, NotFound) as exc:
            refused[str(task_id)] = exc.message
        else:
            done.append(task_id)
    return done, refused
