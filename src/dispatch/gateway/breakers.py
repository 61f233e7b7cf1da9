"""Breaker rows: one per resource, read and updated under a row lock so processes agree.

The state machine itself is pure (``dispatch.gateway.breaker``); this module only loads
a row into it and stores what it returns. Outcomes are applied to the row as it is at
commit time (locked on PostgreSQL, serialised by ``BEGIN IMMEDIATE`` on SQLite), never to
a copy read before a slow request, so concurrent deliveries do not overwrite each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, fields
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.gateway.breaker import Breaker, State, Transition
from dispatch.models import GatewayBreaker

_FIELDS = tuple(f.name for f in fields(Breaker))


def to_breaker(row: GatewayBreaker | None) -> Breaker:
    if row is None:
        return Breaker()
    values = {name: getattr(row, name) for name in _FIELDS}
    values["state"] = State(row.state)
    return Breaker(**values)


def row_values(breaker: Breaker) -> dict[str, object]:
    values = asdict(breaker)
    values["state"] = str(breaker.state)
    return values


async def load(session: AsyncSession, resource_ids: Iterable[int]) -> dict[int, Breaker]:
    ids = list(resource_ids)
    rows = await session.scalars(select(GatewayBreaker).where(GatewayBreaker.resource_id.in_(ids)))
    found = {row.resource_id: to_breaker(row) for row in rows}
    return {rid: found.get(rid, Breaker()) for rid in ids}


async def store_if_unchanged(
    session: AsyncSession, resource_id: int, seen: Breaker, new: Breaker, now: datetime
) -> bool:
    """Store ``new`` only if the row still holds ``seen`` (a half-open trial is taken once)."""
    result = await session.execute(
        update(GatewayBreaker)
        .where(
            GatewayBreaker.resource_id == resource_id,
            GatewayBreaker.state == str(seen.state),
            GatewayBreaker.opened_at.is_(None)
            if seen.opened_at is None
            else GatewayBreaker.opened_at == seen.opened_at,
            GatewayBreaker.trial_started_at.is_(None)
            if seen.trial_started_at is None
            else GatewayBreaker.trial_started_at == seen.trial_started_at,
        )
        .values(**row_values(new), changed_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def apply(
    session: AsyncSession,
    resource_id: int,
    change: Callable[[Breaker], tuple[Breaker, Transition | None]],
    now: datetime,
) -> tuple[Breaker, Transition | None]:
    """Apply one outcome to the current row (locked), creating the row if needed."""
    row = await session.scalar(
        select(GatewayBreaker).where(GatewayBreaker.resource_id == resource_id).with_for_update()
    )
    if row is None:
        row = GatewayBreaker(resource_id=resource_id, **row_values(Breaker()), changed_at=now)
        session.add(row)
    breaker, transition = change(to_breaker(row))
    for name, value in row_values(breaker).items():
        setattr(row, name, value)
    if transition is not None:
        row.changed_at = now
    return breaker, transition
