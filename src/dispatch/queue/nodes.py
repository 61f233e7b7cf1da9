"""Remote nodes: registration, capacity-aware claims, one heartbeat for all leases.

A node is a machine outside the service (a data-rescue volunteer, say) that
leases jobs over HTTP. It registers with a capacity (free disk in MB, for
instance), labels and the queues it serves, and gets a token stored only as a
hash. A claim hands it due jobs that fit what is left of its capacity and its
``max_in_flight``, carry only labels it has, and that it has not already failed
(ArchiveTeam's redo rule, BOINC's one result per host). Its leases run
``NODE_LEASE_SECONDS``; one heartbeat extends all of them and names the jobs that
were cancelled. A node that stays silent past ``NODE_SILENT_SECONDS`` is marked
offline by the reaper and its jobs go back to the queue for others.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter

from dispatch.db.base import UTCDateTime, utcnow
from dispatch.db.engine import Database
from dispatch.errors import Forbidden, NotFound
from dispatch.models import Job, JobAttempt, Node
from dispatch.models.node import lease_owner
from dispatch.queue import service
from dispatch.queue.service import ClaimedJob
from dispatch.security.api_keys import generate_token, hash_key

TOKEN_PREFIX = "dnode_"  # noqa: S105 - a prefix that makes node tokens recognisable, not a secret
# Attempts that count as "this node failed the job": it is not offered to that node again.
FAILED_OUTCOMES = ("failed", "retried", "lease_expired")
# Candidates read (and, on PostgreSQL, locked) per claim before fitting them to the node:
# a few per free slot, as the query already drops what cannot fit or is not the node's.
SCAN_PER_SLOT = 4
SCAN_MIN = 16
SCAN_WINDOW = 200


def new_node_id() -> str:
    return "node-" + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Registration:
    name: str
    capacity: int
    labels: Sequence[str] = ()
    queues: Sequence[str] = ()
    max_in_flight: int = 4
    version: str | None = None


async def register(session: AsyncSession, spec: Registration) -> tuple[Node, str]:
    """Create a node; returns it with its token (the only time the token is seen)."""
    token = generate_token(TOKEN_PREFIX)
    now = utcnow()
    node = Node(
        id=new_node_id(),
        name=spec.name,
        token_hash=hash_key(token),
        token_prefix=token[: len(TOKEN_PREFIX) + 6],
        capacity=spec.capacity,
        labels=sorted(set(spec.labels)),
        queues=list(dict.fromkeys(spec.queues)),
        max_in_flight=spec.max_in_flight,
        enabled=True,
        status="active",
        version=spec.version,
        registered_at=now,
        last_seen_at=now,
    )
    session.add(node)
    await session.flush()
    return node, token


async def authenticate(session: AsyncSession, token: str) -> Node | None:
    """The node a token belongs to; the lookup is by hash, the final check constant-time."""
    digest = hash_key(token)
    node = await session.scalar(select(Node).where(Node.token_hash == digest))
    if node is None or not hmac.compare_digest(node.token_hash, digest):
        return None
    return node


async def get_node(session: AsyncSession, node_id: str, *, lock: bool = False) -> Node:
    query = select(Node).where(Node.id == node_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()  # one node's claims and beats take turns
    node = await session.scalar(query)
    if node is None:
        raise NotFound(f"node {node_id} does not exist")
    return node


@dataclass(frozen=True, slots=True)
class Load:
    """What a node holds right now."""

    in_flight: int = 0
    capacity_used: int = 0


async def loads(session: AsyncSession, node_ids: Sequence[str]) -> dict[str, Load]:
    owners = {lease_owner(node_id): node_id for node_id in node_ids}
    if not owners:
        return {}
    rows = await session.execute(
        select(Job.lease_owner, func.count(), func.coalesce(func.sum(Job.required_capacity), 0))
        .where(Job.state == "running", Job.lease_owner.in_(owners))
        .group_by(Job.lease_owner)
    )
    found = {owners[str(owner)]: Load(int(count), int(used)) for owner, count, used in rows.all()}
    return {node_id: found.get(node_id, Load()) for node_id in node_ids}


async def list_nodes(session: AsyncSession) -> list[tuple[Node, Load]]:
    nodes = list((await session.scalars(select(Node).order_by(Node.registered_at))).all())
    held = await loads(session, [node.id for node in nodes])
    return [(node, held[node.id]) for node in nodes]


async def census(session: AsyncSession) -> tuple[dict[str, int], int, int]:
    """Nodes by status, and the capacity active nodes offer and have in use (for metrics)."""
    rows = await session.execute(
        select(Node.status, func.count(), func.coalesce(func.sum(Node.capacity), 0)).group_by(
            Node.status
        )
    )
    by_status: dict[str, int] = {}
    offered = 0
    for status, count, capacity in rows.all():
        by_status[status] = int(count)
        if status == "active":
            offered = int(capacity)
    in_use = await session.scalar(
        select(func.coalesce(func.sum(Job.required_capacity), 0)).where(
            Job.state == "running", Job.lease_owner.like("node:%")
        )
    )
    return by_status, offered, int(in_use or 0)


def _seen(node: Node, now: datetime, capacity: int | None) -> None:
    node.last_seen_at = now
    node.status = "active"
    if capacity is not None:
        node.capacity = capacity


def fits(labels: Sequence[str], required: Sequence[str]) -> bool:
    return set(required).issubset(labels)


def pick(
    candidates: Sequence[tuple[int, int, Sequence[str], str | None]],
    labels: Sequence[str],
    budget: int,
    slots: int,
) -> list[int]:
    """Greedy first fit in queue order: ids of (id, need, labels, spread key) that fit
    ``budget``, at most one per spread key."""
    chosen: list[int] = []
    spread: set[str] = set()
    for job_id, need, required, key in candidates:
        if len(chosen) >= slots:
            break
        if need <= budget and fits(labels, required) and (key is None or key not in spread):
            chosen.append(job_id)
            budget -= need
            if key is not None:
                spread.add(key)
    return chosen


def spread_allows(owner: str | BindParameter[str]) -> Any:
    """``owner`` holds, made or failed no other job of the candidate's spread key (one it
    handed back unfinished does not count): each copy of an asset lands on a different
    node, and a node that could not make one copy is not given another. Attempts carry
    their job's spread key, so this is one index probe (worker, spread key) per candidate."""
    return or_(
        Job.spread_key.is_(None),
        ~exists()
        .where(
            JobAttempt.worker == owner,
            JobAttempt.spread_key == Job.spread_key,
            JobAttempt.job_id != Job.id,
            JobAttempt.outcome != "released",
        )
        .correlate(Job),
    )


def scan_window(slots: int) -> int:
    """How many candidates a claim of ``slots`` jobs reads (and, on PostgreSQL, locks)."""
    return min(SCAN_WINDOW, max(SCAN_MIN, slots * SCAN_PER_SLOT))


def candidates(
    *, postgresql: bool, kind: str | None = None
) -> Select[int, int, list[str], str | None]:
    """The due jobs a node may take, in queue order, built once with bind parameters:
    ``p_queues`` (a list), ``p_now``, ``p_budget`` (the capacity left), ``p_owner`` (the
    node's lease owner) and ``p_window`` (how many to read). On PostgreSQL the rows are
    locked, skipping those another claim holds. With ``kind``, only jobs of that kind of
    the one queue ``p_queue`` (so the statement can be prepared: ``dispatch.db.prepared``)."""
    owner = bindparam("p_owner", type_=String)
    in_queues: ColumnElement[bool]
    if kind is None:
        in_queues = Job.queue.in_(bindparam("p_queues", expanding=True))
    else:
        in_queues = and_(Job.queue == bindparam("p_queue", type_=String), Job.kind == kind)
    failed_here = exists().where(
        JobAttempt.job_id == Job.id,
        JobAttempt.worker == owner,
        or_(*(JobAttempt.outcome == outcome for outcome in FAILED_OUTCOMES)),
    )
    query = (
        select(Job.id, Job.required_capacity, Job.required_labels, Job.spread_key)
        .where(
            in_queues,
            Job.state == "available",
            Job.run_at <= bindparam("p_now", type_=UTCDateTime()),
            Job.required_capacity <= bindparam("p_budget", type_=BigInteger),
            ~failed_here,
            service.concurrency_allows(),
            spread_allows(owner),
        )
        .order_by(Job.priority, Job.run_at, Job.id)
        .limit(bindparam("p_window", type_=Integer))
    )
    if postgresql:
        query = query.with_for_update(of=Job, skip_locked=True)
    return query


_CANDIDATES = {postgresql: candidates(postgresql=postgresql) for postgresql in (False, True)}


async def claim(
    database: Database,
    node_id: str,
    *,
    limit: int,
    lease_seconds: float,
    capacity: int | None = None,
    free: int | None = None,
    queues: Sequence[str] | None = None,
) -> list[ClaimedJob]:
    """Lease due jobs that fit the node's remaining capacity, slots and labels.

    ``capacity`` is what the node offers in all; ``free`` is what it has free now, besides
    what its leases already take (seed 004's ``free_space_gb``). ``queues`` narrows the
    node's queues for this claim.
    """
    async with database.session() as session:
        node = await get_node(session, node_id, lock=True)
        return await claim_in(
            session,
            node,
            postgresql=database.kind == "postgresql",
            limit=limit,
            lease_seconds=lease_seconds,
            capacity=capacity,
            free=free,
            queues=queues,
        )


async def claim_in(
    session: AsyncSession,
    node: Node,
    *,
    postgresql: bool,
    limit: int,
    lease_seconds: float,
    capacity: int | None = None,
    free: int | None = None,
    queues: Sequence[str] | None = None,
) -> list[ClaimedJob]:
    """``claim`` inside the caller's transaction, for a node it has locked (``get_node``
    with ``lock=True``), so a domain can record what the node got in the same commit."""
    if not node.enabled:
        raise Forbidden(f"node {node.id} is disabled", code="node_disabled")
    now = utcnow()
    owner = lease_owner(node.id)
    held = (await loads(session, [node.id]))[node.id]
    if free is not None:
        capacity = max(0, free) + held.capacity_used
    _seen(node, now, capacity)
    slots = min(limit, node.max_in_flight - held.in_flight)
    budget = node.capacity - held.capacity_used
    served = [queue for queue in node.queues if queues is None or queue in queues]
    if slots <= 0 or budget < 0 or not served:
        return []
    params = {
        "p_queues": served,
        "p_now": now,
        "p_budget": budget,
        "p_owner": owner,
        "p_window": scan_window(slots),
    }
    found = await session.execute(_CANDIDATES[postgresql], params)
    candidates = [
        (row.id, row.required_capacity, row.required_labels, row.spread_key) for row in found
    ]
    chosen = pick(candidates, node.labels, budget, slots)
    if not chosen:
        return []
    return await service.lease(session, chosen, owner, lease_seconds)


@dataclass(frozen=True, slots=True)
class Beat:
    extended: list[int] = field(default_factory=list)  # leases this node still holds
    cancelled: list[int] = field(default_factory=list)  # of those, jobs to stop
    lost: list[int] = field(default_factory=list)  # reported jobs that are no longer its own
    lease_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """A running job as the node sees it, with optional progress."""

    job_id: int
    token: str
    progress: dict[str, Any] | None = None


async def heartbeat(
    database: Database,
    node_id: str,
    *,
    lease_seconds: float,
    capacity: int | None = None,
    running: Sequence[Report] = (),
) -> Beat:
    """Extend every lease the node holds in one statement; record reported progress."""
    now = utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    owner = lease_owner(node_id)
    async with database.session() as session:
        node = await get_node(session, node_id, lock=True)
        _seen(node, now, capacity)
        rows = (
            await session.execute(
                update(Job)
                .where(Job.state == "running", Job.lease_owner == owner)
                .values(heartbeat_at=now, lease_expires_at=expires)
                .returning(Job.id, Job.lease_token, Job.cancel_requested)
            )
        ).all()
        tokens = {row.id: row.lease_token for row in rows}
        progress = [
            {"job_id": report.job_id, "token": report.token, "progress": report.progress}
            for report in running
            if report.progress is not None and tokens.get(report.job_id) == report.token
        ]
        for item in progress:
            await session.execute(
                update(Job)
                .where(and_(Job.id == item["job_id"], Job.lease_token == item["token"]))
                .values(progress=item["progress"])
            )
    return Beat(
        extended=sorted(tokens),
        cancelled=sorted(row.id for row in rows if row.cancel_requested),
        lost=sorted(r.job_id for r in running if tokens.get(r.job_id) != r.token),
        lease_expires_at=expires if rows else None,
    )


@dataclass(frozen=True, slots=True)
class NodeChanges:
    enabled: bool | None = None
    capacity: int | None = None
    max_in_flight: int | None = None
    labels: Sequence[str] | None = None
    queues: Sequence[str] | None = None


async def update_node(session: AsyncSession, node_id: str, changes: NodeChanges) -> Node:
    node = await get_node(session, node_id)
    values: Mapping[str, Any] = {
        "enabled": changes.enabled,
        "capacity": changes.capacity,
        "max_in_flight": changes.max_in_flight,
        "labels": sorted(set(changes.labels)) if changes.labels is not None else None,
        "queues": list(dict.fromkeys(changes.queues)) if changes.queues is not None else None,
    }
    for name, value in values.items():
        if value is not None:
            setattr(node, name, value)
    return node


async def _expire_leases_of(session: AsyncSession, owners: Sequence[str], now: datetime) -> int:
    """Make the owners' leases due now, so the reaper requeues them in this pass."""
    if not owners:
        return 0
    result = await session.execute(
        update(Job)
        .where(Job.state == "running", Job.lease_owner.in_(owners))
        .values(lease_expires_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def deregister(session: AsyncSession, node_id: str) -> int:
    """Remove a node; the jobs it held go back to the queue now. Returns how many.

    Leaving is not failing: the interrupted attempts do not count, as with a
    worker's release at shutdown.
    """
    node = await get_node(session, node_id)
    now = utcnow()
    held = (
        await session.execute(
            select(Job.id, Job.lease_token).where(
                Job.state == "running", Job.lease_owner == node.owner
            )
        )
    ).all()
    if held:
        await session.execute(
            update(Job)
            .where(Job.id.in_([row.id for row in held]), Job.state == "running")
            .values(
                state="available",
                attempt=Job.attempt - 1,
                run_at=now,
                lease_owner=None,
                lease_token=None,
                lease_expires_at=None,
            )
        )
        leases = [(row.id, str(row.lease_token)) for row in held]
        await service.close_attempts(session, leases, "released", "node deregistered", now)
    await session.delete(node)
    return len(held)


async def mark_silent(database: Database, silent_for: timedelta) -> int:
    """Mark nodes silent for ``silent_for`` offline and expire their leases at once.

    The reaper's next step (``expire_leases``) then hands their jobs to others,
    without waiting out the rest of each lease.
    """
    now = utcnow()
    async with database.session() as session:
        rows = await session.execute(
            update(Node)
            .where(Node.status == "active", Node.last_seen_at < now - silent_for)
            .values(status="offline")
            .returning(Node.id)
        )
        owners = [lease_owner(row.id) for row in rows]
        await _expire_leases_of(session, owners, now)
    return len(owners)
