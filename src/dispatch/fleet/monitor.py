"""What the fleet has done: progress per asset and per node, bytes, throughput, risk."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.config import Settings
from dispatch.db.base import utcnow
from dispatch.models import Job, JobAttempt, Node, RescueAsset, RescueCopy
from dispatch.models.node import lease_owner
from dispatch.queue import nodes

HOUR = timedelta(hours=1)


def copy_bytes() -> ColumnElement[Any]:
    """A rescued copy's bytes: as its node reported, else its asset's size."""
    return func.coalesce(RescueCopy.bytes, func.coalesce(RescueAsset.size_mb, 0) * 1_048_576)


@dataclass(frozen=True, slots=True)
class CopyState:
    """One copy as the API and the UI show it."""

    copy: RescueCopy
    state: str  # rescued | failed | assigned | waiting
    node_id: str | None
    job_state: str | None


async def asset_copies(session: AsyncSession, asset_id: int) -> list[CopyState]:
    """Each copy of an asset: one neither rescued nor failed is assigned while its job runs
    (to the job's lease holder), else waiting."""
    found = await session.execute(
        select(RescueCopy, Job.state, Job.lease_owner)
        .outerjoin(Job, Job.id == RescueCopy.job_id)
        .where(RescueCopy.asset_id == asset_id)
        .order_by(RescueCopy.replica)
    )
    copies = []
    for copy, job_state, owner in found:
        state, holder = copy.state, copy.node_id
        if state not in ("rescued", "failed"):
            running = job_state == "running"
            state = "assigned" if running else "waiting"
            holder = owner.removeprefix("node:") if running and owner else None
        copies.append(CopyState(copy, state, holder, job_state))
    return copies


@dataclass
class Overview:
    assets: int = 0
    copies_wanted: int = 0
    copies_rescued: int = 0
    copies_in_flight: int = 0
    assets_complete: int = 0
    assets_at_risk: int = 0
    assets_without_copy: int = 0
    bytes_rescued: int = 0
    bytes_last_hour: int = 0
    nodes: dict[str, int] = field(default_factory=dict)
    nodes_silent: int = 0


async def asset_rows(
    session: AsyncSession, *, at_risk: bool = False, limit: int = 100, offset: int = 0
) -> list[tuple[RescueAsset, int, int, list[str]]]:
    """Active assets by priority with (copies rescued, copies in flight, nodes holding)."""
    rescued = func.sum(case((RescueCopy.state == "rescued", 1), else_=0))
    flying = func.sum(case((Job.state == "running", 1), else_=0))
    query = (
        select(RescueAsset, func.coalesce(rescued, 0), func.coalesce(flying, 0))
        .outerjoin(RescueCopy, RescueCopy.asset_id == RescueAsset.id)
        .outerjoin(Job, Job.id == RescueCopy.job_id)
        .where(RescueAsset.status == "active")
        .group_by(RescueAsset.id)
        .order_by(RescueAsset.priority, RescueAsset.id)
        .limit(limit)
        .offset(offset)
    )
    if at_risk:
        query = query.having(func.coalesce(rescued, 0) < RescueAsset.replication_target)
    rows = [(asset, int(done), int(busy)) for asset, done, busy in await session.execute(query)]
    holders: dict[int, list[str]] = {asset.id: [] for asset, _, _ in rows}
    if holders:
        found = await session.execute(
            select(RescueCopy.asset_id, RescueCopy.node_id).where(
                RescueCopy.asset_id.in_(holders),
                RescueCopy.state.in_(("rescued", "assigned")),
                RescueCopy.node_id.is_not(None),
            )
        )
        for asset_id, node_id in found:
            holders[asset_id].append(str(node_id))
    return [(asset, done, busy, sorted(set(holders[asset.id]))) for asset, done, busy in rows]


async def overview(session: AsyncSession, settings: Settings) -> Overview:
    now = utcnow()
    result = Overview()
    per_asset = (
        select(
            RescueAsset.id,
            RescueAsset.replication_target.label("target"),
            func.coalesce(func.sum(case((RescueCopy.state == "rescued", 1), else_=0)), 0).label(
                "done"
            ),
        )
        .outerjoin(RescueCopy, RescueCopy.asset_id == RescueAsset.id)
        .where(RescueAsset.status == "active")
        .group_by(RescueAsset.id, RescueAsset.replication_target)
        .subquery()
    )
    row = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(per_asset.c.target), 0),
                func.coalesce(func.sum(per_asset.c.done), 0),
                func.coalesce(
                    func.sum(case((per_asset.c.done >= per_asset.c.target, 1), else_=0)), 0
                ),
                func.coalesce(
                    func.sum(case((per_asset.c.done < per_asset.c.target, 1), else_=0)), 0
                ),
                func.coalesce(func.sum(case((per_asset.c.done == 0, 1), else_=0)), 0),
            ).select_from(per_asset)
        )
    ).one()
    (
        result.assets,
        result.copies_wanted,
        result.copies_rescued,
        result.assets_complete,
        result.assets_at_risk,
        result.assets_without_copy,
    ) = (int(value) for value in row)
    result.copies_in_flight = int(
        await session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.queue == settings.rescue_queue, Job.state == "running")
        )
        or 0
    )
    sizes = (
        select(func.coalesce(func.sum(copy_bytes()), 0))
        .join(RescueAsset, RescueAsset.id == RescueCopy.asset_id)
        .where(RescueCopy.state == "rescued")
    )
    result.bytes_rescued = int(await session.scalar(sizes) or 0)
    result.bytes_last_hour = int(
        await session.scalar(sizes.where(RescueCopy.rescued_at > now - HOUR)) or 0
    )
    by_status, _, _ = await nodes.census(session)
    result.nodes = by_status
    silent_after = timedelta(seconds=settings.node_silent_seconds)
    result.nodes_silent = int(
        await session.scalar(
            select(func.count())
            .select_from(Node)
            .where(Node.status == "active", Node.last_seen_at < now - silent_after)
        )
        or 0
    )
    return result


@dataclass(frozen=True, slots=True)
class NodeRow:
    node: Node
    in_flight: int
    capacity_used: int
    rescued: int
    bytes_rescued: int
    bytes_last_hour: int
    bytes_last_day: int
    failed: int
    silent: bool


async def node_rows(session: AsyncSession, settings: Settings, now: datetime) -> list[NodeRow]:
    """Every node with what it holds, what it rescued and how fast (bytes per hour and day)."""
    listed = await nodes.list_nodes(session)
    size = copy_bytes()
    stats = {
        node_id: (int(count), int(total), int(hour), int(day))
        for node_id, count, total, hour, day in await session.execute(
            select(
                RescueCopy.node_id,
                func.count(),
                func.coalesce(func.sum(size), 0),
                func.coalesce(
                    func.sum(case((RescueCopy.rescued_at > now - HOUR, size), else_=0)), 0
                ),
                func.coalesce(
                    func.sum(
                        case((RescueCopy.rescued_at > now - timedelta(days=1), size), else_=0)
                    ),
                    0,
                ),
            )
            .join(RescueAsset, RescueAsset.id == RescueCopy.asset_id)
            .where(RescueCopy.state == "rescued")
            .group_by(RescueCopy.node_id)
        )
    }
    failures = {
        str(worker): int(count)
        for worker, count in await session.execute(
            select(JobAttempt.worker, func.count())
            .join(Job, Job.id == JobAttempt.job_id)
            .where(
                Job.queue == settings.rescue_queue, JobAttempt.outcome.in_(nodes.FAILED_OUTCOMES)
            )
            .group_by(JobAttempt.worker)
        )
    }
    silent_after = timedelta(seconds=settings.node_silent_seconds)
    rows = []
    for node, load in listed:
        count, total, hour, day = stats.get(node.id, (0, 0, 0, 0))
        rows.append(
            NodeRow(
                node=node,
                in_flight=load.in_flight,
                capacity_used=load.capacity_used,
                rescued=count,
                bytes_rescued=total,
                bytes_last_hour=hour,
                bytes_last_day=day,
                failed=failures.get(lease_owner(node.id), 0),
                silent=node.status != "active" or node.last_seen_at < now - silent_after,
            )
        )
    return rows
