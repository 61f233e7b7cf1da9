"""Handing copies to nodes and recording what they report (seed 004's two calls).

``assign`` is seed 004's ``/dispatch``: the node says how much disk it has free; it gets
the most urgent copies (lowest priority number first, then the oldest) that fit that
space, at most one copy of any asset, none it failed before, within its in-flight and
daily caps. Each comes with the lease token and deadline of its queue job: heartbeats
extend them, and a node that falls silent loses them to the reaper, which puts the copies
back for others.

``report`` is seed 004's ``/assets-downloaded``: every asset is settled on its own (a bad
one never spoils the others, and never answers 500). A success needs the job's current
lease token and the asset's URL, records the magnet link, checksum and size, and is
idempotent; a failure frees the copy for another node (never the same one again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import BigInteger, Select, String, Text, any_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.config import Settings
from dispatch.db.base import UTCDateTime, utcnow
from dispatch.db.engine import Database
from dispatch.db.prepared import Prepared
from dispatch.errors import Forbidden, NotFound
from dispatch.fleet.assets import COPY_KIND, MAGNET
from dispatch.models import Job, JobAttempt, Node, RescueAsset, RescueCopy
from dispatch.models.node import lease_owner
from dispatch.queue import nodes, service
from dispatch.queue.policy import RetryPolicy

DAY = timedelta(days=1)
# A failed copy is offered to the other nodes at once (the node that failed it is excluded).
REASSIGN_AT_ONCE = RetryPolicy(max_attempts=100, base_seconds=0.0, cap_seconds=0.0)


@dataclass(frozen=True, slots=True)
class Assigned:
    """One copy handed to a node: the asset, the copy slot and its lease."""

    asset_id: int
    ds_id: str
    res_id: str
    name: str
    path: str
    url: str
    size_mb: float | None
    priority: int
    checksum: str | None
    copy_id: int
    replica: int
    job_id: int
    lease_token: str
    lease_expires_at: datetime


_ASSET_FIELDS = ("ds_id", "res_id", "name", "path", "url", "size_mb", "priority", "checksum")


def _assigned(
    asset: Any, copy_id: int, replica: int, job_id: int, token: str, expires: datetime
) -> Assigned:
    """``asset`` is a ``RescueAsset`` or a row of its columns."""
    return Assigned(
        asset_id=asset.id,
        ds_id=asset.ds_id,
        res_id=asset.res_id,
        name=asset.name,
        path=asset.path,
        url=asset.url,
        size_mb=asset.size_mb,
        priority=asset.priority,
        checksum=asset.checksum,
        copy_id=copy_id,
        replica=replica,
        job_id=job_id,
        lease_token=token,
        lease_expires_at=expires,
    )


def _handed(node_id: Any, now: Any) -> dict[str, Any]:
    """A copy's columns once it is handed to the node ``node_id``."""
    return {
        "state": "assigned",
        "node_id": node_id,
        "assigned_at": now,
        "assignments": RescueCopy.assignments + 1,
    }


async def assigned_today(session: AsyncSession, node_id: str, now: datetime) -> int:
    count = await session.scalar(_today(lease_owner(node_id), now - DAY))
    return int(count or 0)


def _today(owner: Any, since: Any) -> Select[int]:
    """How many jobs the lease owner started since ``since`` (the daily cap). A rescue node
    serves the rescue queue only, so these are its copies; no join to the jobs, whose
    statistics lag behind a large import and then mislead the planner."""
    return (
        select(func.count())
        .select_from(JobAttempt)
        .where(JobAttempt.worker == owner, JobAttempt.started_at > since)
    )


async def assign(
    database: Database,
    settings: Settings,
    node_id: str,
    free_mb: int,
    limit: int,
    *,
    name: str | None = None,
    description: str | None = None,
) -> list[Assigned]:
    """Lease copies that fit ``free_mb`` to the node (empty when nothing fits or is due),
    all in one transaction: the node's lock, its daily count, the claim and the copies."""
    if database.kind == "postgresql":
        return await _assign_postgresql(
            database, settings, node_id, free_mb, limit, name, description
        )
    now = utcnow()
    async with database.session() as session:
        node = await nodes.get_node(session, node_id, lock=True)
        if name and node.name != name:
            node.name = name
        if description and node.description != description:
            node.description = description
        if settings.rescue_node_daily_assets:
            left = settings.rescue_node_daily_assets - await assigned_today(session, node_id, now)
            limit = min(limit, left)
        if limit <= 0:
            return []
        claimed = await nodes.claim_in(
            session,
            node,
            postgresql=False,
            limit=limit,
            lease_seconds=settings.node_lease_seconds,
            free=free_mb,
            queues=[settings.rescue_queue],
        )
        if not claimed:
            return []
        leases = {job.id: job for job in claimed}
        await session.execute(
            update(RescueCopy)
            .where(RescueCopy.job_id.in_(leases))
            .values(_handed(node_id, now))
            .execution_options(synchronize_session=False)
        )
        rows = (
            await session.execute(
                select(RescueCopy, RescueAsset)
                .join(RescueAsset, RescueAsset.id == RescueCopy.asset_id)
                .where(RescueCopy.job_id.in_(leases))
            )
        ).all()
    found = [
        _assigned(
            asset,
            copy.id,
            copy.replica,
            copy.job_id,
            leases[copy.job_id].lease_token,
            leases[copy.job_id].lease_expires_at,
        )
        for copy, asset in rows
        if copy.job_id is not None
    ]
    order = {job.id: index for index, job in enumerate(claimed)}
    return sorted(found, key=lambda item: order[item.job_id])


# PostgreSQL's dispatch: three statements compiled once (see dispatch.db.prepared), in one
# transaction. The first locks and touches the node's row; the second reads what the node
# holds and the candidates, so it sees every dispatch of that node committed before the lock
# was granted; the third leases the chosen copies, records the attempts and the copies, and
# returns the assets.
# Candidates read and locked per copy asked for. Copies need no labels and the statement
# already drops what does not fit or is the node's; a sibling of a chosen copy is the only
# reason pick() refuses one. Every row locked here is one that concurrent dispatches skip.
COPY_SCAN_PER_SLOT = 2
_NODE = bindparam("p_node", type_=String)
_OWNER = bindparam("p_owner", type_=String)
_HELD_CAPACITY = (
    select(func.coalesce(func.sum(Job.required_capacity), 0))
    .where(Job.state == "running", Job.lease_owner == _OWNER)
    .scalar_subquery()
)
_TOUCH = Prepared(
    update(Node)
    .where(Node.id == _NODE)
    .values(
        last_seen_at=bindparam("p_now", type_=UTCDateTime()),
        status="active",
        name=func.coalesce(bindparam("p_name", type_=String), Node.name),
        description=func.coalesce(bindparam("p_description", type_=Text), Node.description),
        # What it offers: its free space and what its leases take (for the overview only).
        capacity=bindparam("p_free", type_=BigInteger) + _HELD_CAPACITY,
    )
    .returning(Node.enabled, Node.max_in_flight, Node.labels, Node.queues)
)
_IN_FLIGHT = (
    select(func.count()).where(Job.state == "running", Job.lease_owner == _OWNER).scalar_subquery()
)
_COPY_CANDIDATES = Prepared(
    nodes.candidates(postgresql=True, kind=COPY_KIND).add_columns(
        _IN_FLIGHT.label("in_flight"),
        _today(_OWNER, bindparam("p_since", type_=UTCDateTime())).scalar_subquery().label("today"),
    )
)
_LEASED, _STARTED = service.lease_ctes(Job.id == any_(service.CHOSEN_IDS))
_HANDED = (
    update(RescueCopy)
    .where(RescueCopy.job_id == _LEASED.c.id)
    .values(_handed(_NODE, bindparam("p_now", type_=UTCDateTime())))
    .returning(RescueCopy.id, RescueCopy.replica, RescueCopy.job_id, RescueCopy.asset_id)
    .cte("handed")
)
_LEASE_COPIES = Prepared(
    select(
        RescueAsset.id,
        *(getattr(RescueAsset, name) for name in _ASSET_FIELDS),
        _HANDED.c.id.label("copy_id"),
        _HANDED.c.replica,
        _HANDED.c.job_id,
        _LEASED.c.lease_token,
    )
    .select_from(_HANDED)
    .join(_LEASED, _LEASED.c.id == _HANDED.c.job_id)
    .join(RescueAsset, RescueAsset.id == _HANDED.c.asset_id)
    .add_cte(_STARTED)
)


async def _assign_postgresql(
    database: Database,
    settings: Settings,
    node_id: str,
    free_mb: int,
    limit: int,
    name: str | None,
    description: str | None,
) -> list[Assigned]:
    now = utcnow()
    owner = lease_owner(node_id)
    free = max(0, free_mb)
    async with database.engine.begin() as connection:
        touched = await _TOUCH.run(
            connection,
            p_node=node_id,
            p_owner=owner,
            p_now=now,
            p_name=name,
            p_description=description,
            p_free=free,
        )
        node = touched.first()
        if node is None:
            raise NotFound(f"node {node_id} does not exist")
        if not node.enabled:
            raise Forbidden(f"node {node_id} is disabled", code="node_disabled")
        if settings.rescue_queue not in node.queues:
            return []
        found = (
            await _COPY_CANDIDATES.run(
                connection,
                p_queue=settings.rescue_queue,
                p_now=now,
                p_budget=free,
                p_owner=owner,
                p_since=now - DAY,
                p_window=min(
                    nodes.SCAN_WINDOW, COPY_SCAN_PER_SLOT * min(limit, node.max_in_flight)
                ),
            )
        ).all()
        if not found:
            return []
        slots = min(limit, node.max_in_flight - found[0].in_flight)
        if settings.rescue_node_daily_assets:
            slots = min(slots, settings.rescue_node_daily_assets - found[0].today)
        candidates = [
            (row.id, row.required_capacity, row.required_labels, row.spread_key) for row in found
        ]
        chosen = nodes.pick(candidates, node.labels, free, slots)
        if not chosen:
            return []
        expires = now + timedelta(seconds=settings.node_lease_seconds)
        rows = (
            await _LEASE_COPIES.run(
                connection,
                p_ids=chosen,
                p_owner=owner,
                p_node=node_id,
                p_now=now,
                p_expires=expires,
            )
        ).all()
    order = {job_id: index for index, job_id in enumerate(chosen)}
    handed = [
        _assigned(
            row,
            row.copy_id,
            row.replica,
            row.job_id,
            row.lease_token,
            expires,
        )
        for row in rows
    ]
    return sorted(handed, key=lambda item: order[item.job_id])


Outcome = Literal["recorded", "already_recorded", "failure_recorded", "rejected"]


@dataclass(frozen=True, slots=True)
class Reported:
    """One asset of a completion report, as the node sent it."""

    index: int
    status: Literal["SUCCESS", "FAIL"]
    asset_id: int | None = None
    job_id: int | None = None
    lease_token: str | None = None
    url: str | None = None
    magnet_link: str | None = None
    checksum: str | None = None
    bytes: int | None = None
    message: str | None = None


@dataclass
class Settled:
    index: int
    outcome: Outcome
    asset_id: int | None
    job_id: int | None
    reason: str | None = None
    copy: RescueCopy | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def _find(
    database: Database, node_id: str, item: Reported
) -> tuple[RescueCopy | None, RescueAsset | None, Job | None]:
    """The copy a report is about: by its job, else the node's live copy of the asset."""
    async with database.session(write=False) as session:
        query = (
            select(RescueCopy, RescueAsset, Job)
            .join(RescueAsset, RescueAsset.id == RescueCopy.asset_id)
            .outerjoin(Job, Job.id == RescueCopy.job_id)
        )
        if item.job_id is not None:
            query = query.where(RescueCopy.job_id == item.job_id)
        elif item.asset_id is not None:
            query = query.where(
                RescueCopy.asset_id == item.asset_id, RescueCopy.node_id == node_id
            ).order_by(RescueCopy.assigned_at.desc())
        else:
            return None, None, None
        row = (await session.execute(query.limit(1))).first()
    if row is None:
        return None, None, None
    return row[0], row[1], row[2]


async def _already(database: Database, node_id: str, job_id: int, token: str) -> bool:
    """This node completed this job with this lease (a repeated report)."""
    async with database.session(write=False) as session:
        found = await session.scalar(
            select(func.count())
            .select_from(JobAttempt)
            .where(
                JobAttempt.job_id == job_id,
                JobAttempt.worker == lease_owner(node_id),
                JobAttempt.lease_token == token,
                JobAttempt.outcome == "succeeded",
            )
        )
    return bool(found)


def _rejected(item: Reported, reason: str, copy: RescueCopy | None = None) -> Settled:
    return Settled(item.index, "rejected", item.asset_id, item.job_id, reason, copy)


async def settle(database: Database, node_id: str, item: Reported) -> Settled:
    """One asset of a report: recorded, recorded again (idempotent), or refused with why."""
    copy, asset, job = await _find(database, node_id, item)
    if copy is None or asset is None:
        return _rejected(item, "unknown asset or job")
    item_job = copy.job_id
    if item.url is not None and item.url.strip() != asset.url:
        return _rejected(item, "the URL is not this asset's", copy)
    if item.lease_token is None:
        return _rejected(item, "lease_token is required", copy)
    if job is not None and job.state == "running" and job.lease_owner != lease_owner(node_id):
        return _rejected(item, "the copy is leased to another node", copy)
    if item.status == "SUCCESS":
        if not item.magnet_link or not MAGNET.match(item.magnet_link.strip()):
            return _rejected(item, "a SUCCESS needs a magnet link (magnet:?xt=urn:…)", copy)
        if asset.checksum and item.checksum and item.checksum.lower() != asset.checksum:
            return _rejected(item, f"checksum {item.checksum} is not {asset.checksum}", copy)
        if item_job is None:
            return _rejected(item, "this copy has no job", copy)
        done = await service.complete(
            database,
            item_job,
            item.lease_token,
            {"magnet_link": item.magnet_link, "checksum": item.checksum, "bytes": item.bytes},
        )
        if not done:
            if (
                copy.state == "rescued"
                and copy.node_id == node_id
                and await _already(database, node_id, item_job, item.lease_token)
            ):
                return Settled(item.index, "already_recorded", asset.id, item_job, None, copy)
            return _rejected(item, "stale lease: the copy is no longer this node's", copy)
        async with database.session() as session:
            row = await session.get(RescueCopy, copy.id)
            assert row is not None
            row.state, row.node_id, row.rescued_at = "rescued", node_id, utcnow()
            row.magnet_link = item.magnet_link.strip()
            row.checksum = item.checksum.lower() if item.checksum else asset.checksum
            row.bytes = item.bytes
            row.message = item.message
        return Settled(item.index, "recorded", asset.id, item_job, None, row)
    # FAIL: the attempt failed; the copy goes back for the other nodes.
    if item_job is None or job is None or job.lease_token != item.lease_token:
        return _rejected(item, "stale lease: the copy is no longer this node's", copy)
    decision = REASSIGN_AT_ONCE.decide(job.attempt, job.max_attempts, RuntimeError("failed"))
    state = await service.fail(
        database, item_job, item.lease_token, item.message or "the node failed it", decision
    )
    if state is None:
        return _rejected(item, "stale lease: the copy is no longer this node's", copy)
    async with database.session() as session:
        await session.execute(
            update(RescueCopy)
            .where(RescueCopy.id == copy.id)
            .values(state="failed" if state == "failed" else "waiting", message=item.message)
        )
    return Settled(item.index, "failure_recorded", asset.id, item_job, None, copy)
