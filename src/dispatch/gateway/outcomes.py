"""Storing what deliveries did, in batches: hops, breaker states, tasks, alerts.

Deliveries that finish together are written together, in one group-committed
transaction. Every breaker the batch touched is locked once (in id order, so two
processes never deadlock), all its outcomes are applied to it in order, and it is
written once; an unchanged breaker is not written at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Table, bindparam, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import utcnow
from dispatch.gateway import alerts, breakers
from dispatch.gateway.breaker import Breaker, Transition
from dispatch.gateway.breaker import record_failure as breaker_failure
from dispatch.gateway.breaker import record_success as breaker_success
from dispatch.gateway.plans import GONE, RETRYABLE, SUCCESS, Hop, Plan, Verdict
from dispatch.gateway.search import search_text
from dispatch.models import GatewayAttempt, GatewayBreaker, GatewayResource, GatewayTask

if TYPE_CHECKING:  # the context builds this module's batcher: no import at run time
    from dispatch.gateway.context import GatewayContext


_ATTEMPTS: Table = GatewayAttempt.__table__  # type: ignore[assignment]
_TASKS: Table = GatewayTask.__table__  # type: ignore[assignment]
T = _TASKS.c
# One statement for every task of a batch; a delivery without hops leaves the resource
# fields as they were (COALESCE with NULL).


def _param(name: str, column: str) -> Any:
    """A bound parameter typed like the task column it sets (asyncpg needs the types)."""
    return bindparam(name, type_=T[column].type)


_SETTLE = (
    update(_TASKS)
    .where(T.id == _param("b_id", "id"), T.status == "processing")
    .values(
        status=_param("b_status", "status"),
        last_error=_param("b_error", "last_error"),
        updated_at=_param("b_now", "updated_at"),
        attempts=T.attempts + _param("b_hops", "attempts"),
        next_attempt_at=_param("b_next", "next_attempt_at"),
        resource_id=func.coalesce(_param("b_resource_id", "resource_id"), T.resource_id),
        resource_name=func.coalesce(_param("b_resource_name", "resource_name"), T.resource_name),
        target_payload=case(
            (bindparam("b_has_hop", type_=Boolean), _param("b_target", "target_payload")),
            else_=T.target_payload,
        ),
        last_status_code=case(
            (bindparam("b_has_hop", type_=Boolean), _param("b_code", "last_status_code")),
            else_=T.last_status_code,
        ),
        search_text=func.coalesce(_param("b_search", "search_text"), T.search_text),
        delivered_at=func.coalesce(_param("b_delivered", "delivered_at"), T.delivered_at),
    )
)


@dataclass(frozen=True, slots=True)
class Outcome:
    plan: Plan
    hops: list[Hop]
    verdict: Verdict
    attempt: int
    worker: str


def counts_against_breaker(hop: Hop) -> bool | None:
    """True: a failure of the resource; False: a success; None: says nothing about it."""
    if hop.outcome == SUCCESS:
        return False
    if hop.outcome == RETRYABLE:
        return True
    return None


def _attempt_rows(outcome: Outcome) -> list[dict[str, Any]]:
    plan = outcome.plan
    return [
        {
            "task_id": plan.task_id,
            "series": plan.series,
            "attempt": outcome.attempt,
            "hop": index,
            "resource_id": hop.target.id,
            "resource_name": hop.target.name,
            "request_method": hop.target.method,
            "request_url": hop.target.url,
            "request_headers": hop.headers_shown,
            "status_code": hop.status_code,
            "response_body": hop.body,
            "outcome": hop.outcome,
            "error": hop.error,
            "duration_ms": hop.duration_ms,
            "worker": outcome.worker or None,
            "started_at": hop.started_at,
        }
        for index, hop in enumerate(outcome.hops)
    ]


async def _breakers(
    session: AsyncSession, ctx: GatewayContext, outcomes: list[Outcome], now: datetime
) -> list[tuple[int, Transition]]:
    touched = [
        (hop.target.id, failed)
        for outcome in outcomes
        for hop in outcome.hops
        if (failed := counts_against_breaker(hop)) is not None
    ]
    if not touched:
        return []
    ids = sorted({resource_id for resource_id, _ in touched})
    rows = {
        row.resource_id: row
        for row in await session.scalars(
            select(GatewayBreaker)
            .where(GatewayBreaker.resource_id.in_(ids))
            .order_by(GatewayBreaker.resource_id)
            .with_for_update()
        )
    }
    states: dict[int, Breaker] = {rid: breakers.to_breaker(rows.get(rid)) for rid in ids}
    before = dict(states)
    transitions: list[tuple[int, Transition]] = []
    for resource_id, failed in touched:
        record = breaker_failure if failed else breaker_success
        states[resource_id], transition = record(states[resource_id], now, ctx.breaker)
        if transition is not None:
            transitions.append((resource_id, transition))
    changed = {rid for rid in ids if states[rid] != before[rid]}
    for resource_id in sorted(changed):
        values = breakers.row_values(states[resource_id])
        row = rows.get(resource_id)
        if row is None:
            session.add(GatewayBreaker(resource_id=resource_id, changed_at=now, **values))
            continue
        for name, value in values.items():
            setattr(row, name, value)
        if any(rid == resource_id for rid, _ in transitions):
            row.changed_at = now
    return transitions


def _settle_params(outcome: Outcome, now: datetime) -> dict[str, Any]:
    verdict, hops, plan = outcome.verdict, outcome.hops, outcome.plan
    last = hops[-1] if hops else None
    pending = verdict.status == "pending"
    return {
        "b_id": plan.task_id,
        "b_status": verdict.status,
        "b_error": verdict.error,
        "b_now": now,
        "b_hops": len(hops),
        "b_next": now + timedelta(seconds=verdict.delay) if pending else None,
        "b_has_hop": last is not None,
        "b_resource_id": last.target.id if last else None,
        "b_resource_name": last.target.name if last else None,
        "b_target": last.payload if last else None,
        "b_code": last.status_code if last else None,
        "b_search": search_text((*plan.search_parts, last.target.name, last.payload))
        if last
        else None,
        "b_delivered": now if verdict.status == "success" else None,
    }


async def record_outcomes(
    session: AsyncSession, ctx: GatewayContext, outcomes: list[Outcome]
) -> list[None]:
    """Store a batch of deliveries' hops, breaker changes (and alerts) and task states."""
    now = utcnow()
    rows = [row for outcome in outcomes for row in _attempt_rows(outcome)]
    if rows:
        await session.execute(insert(_ATTEMPTS), rows)
    for resource_id, transition in await _breakers(session, ctx, outcomes, now):
        await alerts.note_transition(session, ctx, resource_id, transition, now)
    gone = sorted({h.target.id for o in outcomes for h in o.hops if h.outcome == GONE})
    if gone:
        await session.execute(
            update(GatewayResource)
            .where(GatewayResource.id.in_(gone))
            .values(
                is_active=False, disabled_reason=f"disabled: answered 410 Gone at {now.isoformat()}"
            )
        )
        ctx.directory.invalidate()  # this process must stop routing to them at once
    # Only tasks still processing: one stopped or deleted meanwhile is left as it is.
    await session.execute(
        _SETTLE.execution_options(synchronize_session=False),
        [_settle_params(outcome, now) for outcome in outcomes],
    )
    return [None] * len(outcomes)
