"""Every queue statement: enqueue, claim, heartbeat, complete, fail, retry, cancel.

Enqueueing happens in the caller's session, so a rollback discards the job and
a commit makes it durable. Claims and outcomes run in short transactions of
their own: no transaction stays open while a job runs. Every outcome presents
the lease token handed out by the claim (a fencing token): a worker whose lease
expired and was given to another cannot overwrite the new owner's job.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    JSON,
    BigInteger,
    ColumnElement,
    Integer,
    String,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    delete,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.base import UTCDateTime, utcnow
from dispatch.db.bulk import conflict_insert, insert_returning_ids
from dispatch.db.engine import Database
from dispatch.errors import Conflict, NotFound
from dispatch.models import Job, JobAttempt
from dispatch.models.job import LIVE_STATES
from dispatch.queue import notify
from dispatch.queue.policy import Decision

DEFAULT_QUEUE = "default"
_DIALECTS = ("postgresql", "sqlite")
# The hot statements (claim, heartbeat, outcomes) use the tables, not the ORM classes:
# an ORM-enabled UPDATE costs far more Python per call than the database spends on it.
_JOBS: Table = Job.__table__  # type: ignore[assignment]
_ATTEMPTS: Table = JobAttempt.__table__  # type: ignore[assignment]
J = _JOBS.c
A = _ATTEMPTS.c
_STORE_RESULT = (
    update(_JOBS).where(J.id == bindparam("settled_id")).values(result=bindparam("settled_result"))
)
_LIVE_DEDUPE = and_(Job.dedupe_key.is_not(None), Job.state.in_(LIVE_STATES))
# ON CONFLICT must name the partial index's predicate with literals, or SQLite cannot match it.
_DEDUPE_INDEX_WHERE = text(
    "dedupe_key IS NOT NULL AND state IN ('scheduled', 'available', 'running')"
)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job to enqueue. ``delay``/``run_at`` in the future make it ``scheduled``."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    priority: int = 100
    run_at: datetime | None = None
    delay: float = 0.0
    max_attempts: int = 20
    dedupe_key: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    timeout_seconds: int | None = None
    required_capacity: int = 0  # remote nodes: what the job needs of a node's capacity
    required_labels: tuple[str, ...] = ()  # remote nodes: labels a node must carry
    spread_key: str | None = None  # remote nodes: one job of this key per node

    def values(self, now: datetime) -> dict[str, Any]:
        run_at = self.run_at or now + timedelta(seconds=self.delay)
        return {
            "kind": self.kind,
            "args": self.args,
            "queue": self.queue,
            "priority": self.priority,
            "run_at": run_at,
            "state": "scheduled" if run_at > now else "available",
            "attempt": 0,
            "max_attempts": self.max_attempts,
            "dedupe_key": self.dedupe_key,
            "concurrency_key": self.concurrency_key,
            "concurrency_limit": self.concurrency_limit,
            "timeout_seconds": self.timeout_seconds,
            "required_capacity": self.required_capacity,
            "required_labels": sorted(set(self.required_labels)),
            "spread_key": self.spread_key,
            "cancel_requested": False,
            "created_at": now,
        }


@dataclass(frozen=True, slots=True)
class Enqueued:
    job_id: int
    created: bool  # False: a live job with the same dedupe key already existed


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    kind: str
    queue: str
    args: dict[str, Any]
    attempt: int
    max_attempts: int
    lease_token: str
    lease_expires_at: datetime
    deadline_at: datetime | None
    wait_seconds: float = 0.0  # from due (run_at) to claimed
    required_capacity: int = 0
    spread_key: str | None = None


async def enqueue(session: AsyncSession, spec: JobSpec) -> Enqueued:
    """Add a job in the caller's transaction; a live duplicate is returned instead."""
    return (await enqueue_many(session, [spec]))[0]


async def enqueue_many(session: AsyncSession, specs: Sequence[JobSpec]) -> list[Enqueued]:
    """Add several jobs in the caller's transaction, in one statement where possible."""
    now = utcnow()
    plain = [spec for spec in specs if spec.dedupe_key is None]
    deduped = {spec.queue for spec in specs if spec.dedupe_key is not None}
    # The plain INSERT notifies other processes itself on PostgreSQL (in its RETURNING).
    if plain:
        await notify.note_enqueued(session, {spec.queue for spec in plain}, notified=True)
    if deduped:
        await notify.note_enqueued(session, deduped)
    ids = iter(await _insert_plain(session, plain, now)) if plain else iter(())
    results: list[Enqueued] = []
    for spec in specs:
        if spec.dedupe_key is None:
            results.append(Enqueued(next(ids), True))
        else:
            results.append(await _insert_deduped(session, spec, now))
    return results


async def _insert_plain(
    session: AsyncSession, specs: Sequence[JobSpec], now: datetime
) -> list[int]:
    rows = [spec.values(now) for spec in specs]
    notifies = (notify.notify_expression(J.queue),)
    return await insert_returning_ids(session, _JOBS, rows, postgres_also_returning=notifies)


async def _insert_deduped(session: AsyncSession, spec: JobSpec, now: datetime) -> Enqueued:
    statement = (
        conflict_insert(session, Job)
        .values(spec.values(now))
        .on_conflict_do_nothing(
            index_elements=["queue", "dedupe_key"], index_where=_DEDUPE_INDEX_WHERE
        )
        .returning(Job.id)
    )
    created = await session.scalar(statement)
    if created is not None:
        return Enqueued(created, True)
    existing = await session.scalar(
        select(Job.id).where(
            Job.queue == spec.queue, Job.dedupe_key == spec.dedupe_key, _LIVE_DEDUPE
        )
    )
    if existing is None:  # the live duplicate finished between the two statements
        return await _insert_deduped(session, spec, now)
    return Enqueued(existing, False)


def _random_token(dialect: str) -> ColumnElement[str]:
    if dialect == "postgresql":
        return func.replace(func.gen_random_uuid().cast(String), "-", "")
    return func.lower(func.hex(func.randomblob(16)))


_RUNNING = _JOBS.alias("running")
_CONCURRENCY_ALLOWS = J.concurrency_key.is_(None) | (
    select(func.count())
    .select_from(_RUNNING)
    .where(_RUNNING.c.state == "running", _RUNNING.c.concurrency_key == J.concurrency_key)
    .scalar_subquery()
    < func.coalesce(J.concurrency_limit, 1)
)


def concurrency_allows() -> ColumnElement[bool]:
    """The job has no concurrency key, or its key is below its running limit."""
    return _CONCURRENCY_ALLOWS


_NOW = bindparam("p_now", type_=UTCDateTime())
_LEASED = (
    J.id,
    J.kind,
    J.queue,
    J.args,
    J.attempt,
    J.max_attempts,
    J.lease_token,
    J.timeout_seconds,
    J.priority,
    J.run_at,
    J.concurrency_key,
    J.concurrency_limit,
    J.required_capacity,
    J.spread_key,
)


CHOSEN_IDS = bindparam("p_ids", type_=postgresql.ARRAY(BigInteger))


def _lease_values(dialect: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        "state": "running",
        "attempt": J.attempt + 1,
        "lease_owner": bindparam("p_owner"),
        "lease_token": _random_token(dialect),
        "lease_expires_at": bindparam("p_expires", type_=UTCDateTime()),
        "heartbeat_at": _NOW,
        "started_at": _NOW,
        "cancel_requested": False,
    }
    if dialect == "postgresql":
        values["deadline_at"] = case(
            (J.timeout_seconds.is_(None), None),
            else_=_NOW + literal_column("INTERVAL '1 second'") * J.timeout_seconds,
        )
    return values


def lease_ctes(target: ColumnElement[bool]) -> tuple[CTE, CTE]:
    """PostgreSQL's lease of the available jobs ``target`` picks: the ``leased`` UPDATE
    (returning the leased rows) and the ``started`` INSERT of their attempts, as CTEs a
    statement can build on. Binds ``p_owner``, ``p_now`` and ``p_expires``."""
    leased = (
        update(_JOBS)
        .where(target, J.state == "available")
        .values(_lease_values("postgresql"))
        .returning(*_LEASED)
        .cte("leased")
    )
    started = (
        insert(_ATTEMPTS)
        .from_select(
            ["job_id", "attempt", "worker", "lease_token", "outcome", "started_at", "spread_key"],
            select(
                leased.c.id,
                leased.c.attempt,
                cast(bindparam("p_owner"), String),
                leased.c.lease_token,
                literal("running"),
                _NOW,
                leased.c.spread_key,
            ),
        )
        .cte("started")
    )
    return leased, started


def _lease_statement(dialect: str, *, chosen: bool) -> Any:
    """The UPDATE that leases jobs: the due ones of some queues, or ``chosen`` ids.

    Built once per dialect and shape; each call only binds values. On PostgreSQL the
    due jobs come from a CTE joined by ``UPDATE … FROM`` and evaluated once: as
    ``IN (subquery)`` the planner may rescan a ``LIMIT … SKIP LOCKED`` subquery and so
    take more rows than the limit. There the same statement also sets each job's deadline
    and inserts its attempt rows (a data-modifying CTE), so a claim is one round trip.
    """
    if chosen:
        target: ColumnElement[bool] = (
            J.id == any_(CHOSEN_IDS)
            if dialect == "postgresql"
            else J.id.in_(bindparam("p_ids", expanding=True))
        )
    else:
        due = (
            select(J.id)
            .where(
                J.queue.in_(bindparam("p_queues", expanding=True)),
                J.state == "available",
                J.run_at <= _NOW,
                _CONCURRENCY_ALLOWS,
            )
            .order_by(J.priority, J.run_at, J.id)
            .limit(bindparam("p_limit", type_=Integer))
        )
        if dialect == "postgresql":
            picked = due.with_for_update(skip_locked=True).cte("due").prefix_with("MATERIALIZED")
            target = J.id == picked.c.id
        else:
            target = J.id.in_(due.scalar_subquery())
    if dialect != "postgresql":
        return update(_JOBS).where(target).values(_lease_values(dialect)).returning(*_LEASED)
    leased, started = lease_ctes(target)
    return select(*leased.c).add_cte(started)


_LEASE_STATEMENTS = {
    (dialect, chosen): _lease_statement(dialect, chosen=chosen)
    for dialect in _DIALECTS
    for chosen in (False, True)
}


async def claim(
    database: Database,
    *,
    owner: str,
    queues: Sequence[str] = (DEFAULT_QUEUE,),
    limit: int = 1,
    lease_seconds: float = 60.0,
) -> list[ClaimedJob]:
    """Lease up to ``limit`` due jobs to ``owner`` in one short transaction.

    PostgreSQL skips rows other claimers hold (``FOR UPDATE SKIP LOCKED``); SQLite
    serialises claimers with ``BEGIN IMMEDIATE``. Either way a job goes to one owner.
    On PostgreSQL the lease statement (which also writes the attempt rows) is atomic on its
    own and runs without BEGIN/COMMIT round trips; only when it took jobs with concurrency
    keys does a transaction follow, to give back any over their key's limit.
    """
    if database.kind != "postgresql":
        async with database.session() as session:
            return await _lease(session, owner, lease_seconds, queues=list(queues), limit=limit)
    async with database.one_statement() as session:
        rows, now, expires = await _lease_rows(
            session, owner, lease_seconds, queues=list(queues), limit=limit
        )
    if any(row.concurrency_key is not None for row in rows):
        async with database.session() as session:
            rows = await _within_limits(session, rows, "postgresql")
    return _claimed(rows, now, expires)


async def lease(
    session: AsyncSession,
    job_ids: Sequence[int],
    owner: str,
    lease_seconds: float,
) -> list[ClaimedJob]:
    """Hand ``job_ids`` (available jobs the caller chose and holds) to ``owner``."""
    return await _lease(session, owner, lease_seconds, ids=list(job_ids))


async def _lease_rows(
    session: AsyncSession,
    owner: str,
    lease_seconds: float,
    *,
    queues: list[str] | None = None,
    limit: int = 0,
    ids: list[int] | None = None,
) -> tuple[list[Any], datetime, datetime]:
    """Run the lease statement; the leased rows, the time of the lease and its expiry."""
    dialect = session.get_bind().dialect.name
    now = utcnow()
    lease_expires_at = now + timedelta(seconds=lease_seconds)
    params: dict[str, Any] = {"p_now": now, "p_owner": owner, "p_expires": lease_expires_at}
    if ids is not None:
        params["p_ids"] = ids
    else:
        params |= {"p_queues": queues, "p_limit": limit}
    statement = _LEASE_STATEMENTS[(dialect, ids is not None)]
    rows = list((await session.execute(statement, params)).all())
    return rows, now, lease_expires_at


async def _within_limits(session: AsyncSession, rows: list[Any], dialect: str) -> list[Any]:
    """Give back the leased rows that put a concurrency key over its limit; the rest."""
    over = await _over_concurrency(session, rows, dialect)
    if over:
        await _unclaim(session, {row.id: row.lease_token for row in rows if row.id in over})
    return [row for row in rows if row.id not in over]


def _claimed(rows: Sequence[Any], now: datetime, lease_expires_at: datetime) -> list[ClaimedJob]:
    claimed = [
        ClaimedJob(
            id=row.id,
            kind=row.kind,
            queue=row.queue,
            args=row.args,
            attempt=row.attempt,
            max_attempts=row.max_attempts,
            lease_token=row.lease_token,
            lease_expires_at=lease_expires_at,
            deadline_at=now + timedelta(seconds=row.timeout_seconds)
            if row.timeout_seconds
            else None,
            wait_seconds=max(0.0, (now - row.run_at).total_seconds()),
            required_capacity=row.required_capacity,
            spread_key=row.spread_key,
        )
        for row in rows
    ]
    return sorted(claimed, key=lambda job: job.id)


async def _lease(
    session: AsyncSession,
    owner: str,
    lease_seconds: float,
    *,
    queues: list[str] | None = None,
    limit: int = 0,
    ids: list[int] | None = None,
) -> list[ClaimedJob]:
    """Run the lease statement inside the claimer's transaction.

    Records an attempt per job, and gives back any job that would put its
    concurrency key over the limit.
    """
    dialect = session.get_bind().dialect.name
    rows, now, expires = await _lease_rows(
        session, owner, lease_seconds, queues=queues, limit=limit, ids=ids
    )
    claimed = _claimed(await _within_limits(session, rows, dialect), now, expires)
    if claimed and dialect != "postgresql":  # PostgreSQL's lease statement did this
        await _record_starts(session, claimed, owner, now)
    return claimed


async def _over_concurrency(session: AsyncSession, rows: Sequence[Any], dialect: str) -> set[int]:
    """Ids of just-claimed jobs that would put a concurrency key over its limit.

    The claim's filter counts running jobs, but one batch (or, on PostgreSQL, a
    concurrent claimer) can still take several jobs of one key. Per-key advisory
    locks on PostgreSQL make the recount below see every committed claim.
    """
    keys = sorted({row.concurrency_key for row in rows if row.concurrency_key is not None})
    if not keys:
        return set()
    if dialect == "postgresql":
        for key in keys:  # sorted: two claimers always lock in the same order
            await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
    counts: dict[str, int] = dict(
        (
            await session.execute(
                select(J.concurrency_key, func.count())
                .where(J.state == "running", J.concurrency_key.in_(keys))
                .group_by(J.concurrency_key)
            )
        ).all()
    )
    over: set[int] = set()
    for key in keys:
        mine = sorted(
            (row for row in rows if row.concurrency_key == key),
            key=lambda row: (row.priority, row.run_at, row.id),
        )
        excess = counts.get(key, 0) - (mine[0].concurrency_limit or 1)
        if excess > 0:
            over.update(row.id for row in mine[-excess:])
    return over


async def _unclaim(session: AsyncSession, tokens: dict[int, str]) -> None:
    """Give back just-leased jobs (id -> lease token), with any attempt rows already written."""
    await session.execute(
        delete(_ATTEMPTS).where(A.job_id.in_(tokens), A.lease_token.in_(tokens.values()))
    )
    await session.execute(
        update(_JOBS)
        .where(J.id.in_(tokens), J.lease_token.in_(tokens.values()))
        .values(
            state="available",
            attempt=J.attempt - 1,
            lease_token=None,
            lease_owner=None,
            lease_expires_at=None,
            heartbeat_at=None,
            started_at=None,
        )
    )


async def _record_starts(
    session: AsyncSession, claimed: Sequence[ClaimedJob], owner: str, now: datetime
) -> None:
    deadlines = [(job.id, job.deadline_at) for job in claimed if job.deadline_at is not None]
    for job_id, deadline in deadlines:
        await session.execute(update(_JOBS).where(J.id == job_id).values(deadline_at=deadline))
    await session.execute(
        insert(_ATTEMPTS),
        [
            {
                "job_id": job.id,
                "attempt": job.attempt,
                "worker": owner,
                "lease_token": job.lease_token,
                "outcome": "running",
                "started_at": now,
                "spread_key": job.spread_key,
            }
            for job in claimed
        ],
    )


def _fenced(job_id: int, token: str) -> ColumnElement[bool]:
    return and_(J.id == job_id, J.lease_token == token, J.state == "running")


@dataclass(frozen=True, slots=True)
class Heartbeat:
    alive: bool  # False: the lease is gone; stop and discard the work
    cancel_requested: bool = False


async def heartbeat(
    database: Database,
    job_id: int,
    token: str,
    *,
    lease_seconds: float = 60.0,
    progress: dict[str, Any] | None = None,
) -> Heartbeat:
    """Extend the lease (and record progress); tells the worker if the job was cancelled."""
    now = utcnow()
    values: dict[str, Any] = {
        "heartbeat_at": now,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
    }
    if progress is not None:
        values["progress"] = progress
    async with database.session() as session:
        row = (
            await session.execute(
                update(_JOBS)
                .where(_fenced(job_id, token))
                .values(**values)
                .returning(J.cancel_requested)
            )
        ).first()
    if row is None:
        return Heartbeat(alive=False)
    return Heartbeat(alive=True, cancel_requested=bool(row.cancel_requested))


def _elapsed_ms(dialect: str) -> ColumnElement[int]:
    """Milliseconds from an attempt's start to ``p_now``, computed where the row is."""
    if dialect == "postgresql":
        seconds: ColumnElement[Any] = func.extract("epoch", _NOW - A.started_at)
    else:
        seconds = (func.julianday(_NOW) - func.julianday(A.started_at)) * 86400
    return cast(func.round(seconds * 1000), Integer)


def _leases_match(dialect: str, job_id: Any, token: Any) -> tuple[ColumnElement[bool], Any]:
    """``(job_id, token)`` is one of the leases bound by ``_lease_params``; and a FROM, if any.

    PostgreSQL joins ``unnest(ids, tokens)``: the SQL text is the same for any number of
    leases (one prepared statement) and plans in microseconds, where a 50-pair ``IN`` list
    took a millisecond to plan. SQLite matches the row values, after ``job_id IN (…)`` so
    that the lookup goes through the index instead of scanning the table.
    """
    if dialect == "postgresql":
        leases = _unnested_leases()
        return and_(job_id == leases.c.id, token == leases.c.token), leases
    by_id = job_id.in_(bindparam("p_ids", expanding=True))
    return and_(by_id, tuple_(job_id, token).in_(bindparam("p_leases", expanding=True))), None


def _unnested_leases(*extra: tuple[str, Any]) -> Any:
    """PostgreSQL: ``unnest(p_ids, p_tokens, …)`` as a table ``leases(id, token, …)``."""
    columns = [("id", BigInteger), ("token", String), *extra]
    arrays = [bindparam(f"p_{name}s", type_=postgresql.ARRAY(kind)) for name, kind in columns]
    return (
        func.unnest(*arrays)
        .table_valued(*(column(name, kind) for name, kind in columns))
        .render_derived(name="leases")
    )


def _attempt_closed(dialect: str, outcome: Any, error: Any) -> dict[str, Any]:
    """The values that close an attempt row at ``p_now``."""
    return {
        "outcome": outcome,
        "error": error,
        "finished_at": _NOW,
        "duration_ms": _elapsed_ms(dialect),
    }


# A job that succeeded: its lease is over.
_SUCCEEDED = {
    "state": "succeeded",
    "finished_at": _NOW,
    "last_error": None,
    "lease_token": None,
    "lease_expires_at": None,
}


def _lease_params(dialect: str, leases: Sequence[tuple[int, str]]) -> dict[str, Any]:
    ids = [job_id for job_id, _ in leases]
    if dialect == "postgresql":
        return {"p_ids": ids, "p_tokens": [token for _, token in leases]}
    return {"p_ids": ids, "p_leases": list(leases)}


def _close_attempts_statement(dialect: str) -> Any:
    matches, _ = _leases_match(dialect, A.job_id, A.lease_token)
    closed = _attempt_closed(dialect, bindparam("p_outcome"), bindparam("p_error"))
    return update(_ATTEMPTS).where(matches).values(closed)


_CLOSE_ATTEMPTS = {dialect: _close_attempts_statement(dialect) for dialect in _DIALECTS}
# SQLite's completion; PostgreSQL's is the single statement below.
_SUCCEED_SQLITE = (
    update(_JOBS)
    .where(_leases_match("sqlite", J.id, J.lease_token)[0], J.state == "running")
    .values(_SUCCEEDED)
    .returning(J.id)
)


def _complete_postgres_statement() -> Any:
    """PostgreSQL: settle jobs, store their results and close their attempts in one statement.

    Atomic on its own, so it runs without BEGIN/COMMIT round trips (``one_statement``).
    """
    leases = _unnested_leases(("result", Text))
    done = (
        update(_JOBS)
        .where(J.id == leases.c.id, J.lease_token == leases.c.token, J.state == "running")
        .values({**_SUCCEEDED, "result": func.coalesce(cast(leases.c.result, JSON), J.result)})
        .returning(J.id, leases.c.token)
        .cte("done")
    )
    closed = (
        update(_ATTEMPTS)
        .where(A.job_id == done.c.id, A.lease_token == done.c.token)
        .values(_attempt_closed("postgresql", "succeeded", None))
        .cte("closed")
    )
    return select(done.c.id).add_cte(closed)


_COMPLETE_POSTGRES = _complete_postgres_statement()


async def close_attempts(
    session: AsyncSession,
    leases: Sequence[tuple[int, str]],
    outcome: str,
    error: str | None,
    now: datetime,
) -> None:
    """Record how the attempts holding ``leases`` (job id, token) ended, in one statement."""
    dialect = session.get_bind().dialect.name
    params = _lease_params(dialect, leases) | {"p_outcome": outcome, "p_error": error, "p_now": now}
    await session.execute(_CLOSE_ATTEMPTS[dialect], params)


async def _settle(
    database: Database,
    job_id: int,
    token: str,
    values: dict[str, Any],
    outcome: str,
    error: str | None = None,
) -> bool:
    """Apply a fenced outcome and close the attempt; False when the lease was lost."""
    now = utcnow()
    async with database.session() as session:
        done = await session.scalar(
            update(_JOBS)
            .where(_fenced(job_id, token))
            .values(**values, lease_token=None, lease_expires_at=None)
            .returning(J.id)
        )
        if done is not None:
            await close_attempts(session, [(job_id, token)], outcome, error, now)
    return done is not None


@dataclass(frozen=True, slots=True)
class Completion:
    """A job that succeeded, with the lease token its claim handed out."""

    job_id: int
    token: str
    result: dict[str, Any] | None = None


async def complete(
    database: Database, job_id: int, token: str, result: dict[str, Any] | None = None
) -> bool:
    """Mark a job succeeded; False when the lease was lost (the outcome is discarded)."""
    return job_id in await complete_many(database, [Completion(job_id, token, result)])


async def complete_many(database: Database, completions: Sequence[Completion]) -> set[int]:
    """Mark jobs succeeded in one short transaction; returns the ids whose lease still held.

    A completion whose token no longer matches (the lease expired and the job went
    to another worker, or it was released) changes nothing.
    """
    if not completions:
        return set()
    now = utcnow()
    if database.kind == "postgresql":
        params = {
            "p_ids": [done.job_id for done in completions],
            "p_tokens": [done.token for done in completions],
            "p_results": [
                None if done.result is None else json.dumps(done.result) for done in completions
            ],
            "p_now": now,
        }
        async with database.one_statement() as session:
            return {row.id for row in await session.execute(_COMPLETE_POSTGRES, params)}
    leases = [(done.job_id, done.token) for done in completions]
    async with database.session() as session:
        params = _lease_params("sqlite", leases) | {"p_now": now}
        rows = await session.execute(_SUCCEED_SQLITE, params)
        settled = {row.id for row in rows}
        if not settled:
            return settled
        results = [
            {"settled_id": done.job_id, "settled_result": done.result}
            for done in completions
            if done.result is not None and done.job_id in settled
        ]
        if results:
            await session.execute(_STORE_RESULT, results)
        held = [lease for lease in leases if lease[0] in settled]
        await close_attempts(session, held, "succeeded", None, now)
    return settled


async def fail(
    database: Database, job_id: int, token: str, error: str, decision: Decision
) -> str | None:
    """Record a failed attempt; returns the job's new state, or None when the lease was lost."""
    now = utcnow()
    values: dict[str, Any] = {"last_error": error[:10_000], "lease_owner": None}
    if decision.retry:
        values["state"] = "scheduled" if decision.delay > 0 else "available"
        values["run_at"] = now + timedelta(seconds=decision.delay)
    else:
        values["state"] = "failed"
        values["finished_at"] = now
    outcome = "retried" if decision.retry else "failed"
    settled = await _settle(database, job_id, token, values, outcome, error)
    return str(values["state"]) if settled else None


async def acknowledge_cancel(database: Database, job_id: int, token: str) -> bool:
    """A worker stopped a job whose cancellation was requested."""
    values = {"state": "cancelled", "finished_at": utcnow()}
    return await _settle(database, job_id, token, values, "cancelled")


async def get_job(session: AsyncSession, job_id: int) -> Job:
    job = await session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


async def retry_now(session: AsyncSession, job_id: int) -> Job:
    """Send a failed or cancelled job back to the queue by hand, with one more attempt."""
    job = await get_job(session, job_id)
    if job.state not in ("failed", "cancelled"):
        raise Conflict(f"job {job_id} is {job.state}; only failed or cancelled jobs are retried")
    job.state = "available"
    job.run_at = utcnow()
    job.finished_at = None
    job.max_attempts = max(job.max_attempts, job.attempt + 1)
    return job


async def cancel(session: AsyncSession, job_id: int) -> Job:
    """Cancel a waiting job now; ask a running one to stop (its worker acknowledges)."""
    job = await get_job(session, job_id)
    if job.state in ("scheduled", "available"):
        job.state = "cancelled"
        job.finished_at = utcnow()
    elif job.state == "running":
        job.cancel_requested = True
    else:
        raise Conflict(f"job {job_id} already finished ({job.state})")
    return job


async def release(database: Database, job_id: int, token: str) -> bool:
    """Hand an unfinished job back at shutdown; the interrupted attempt does not count."""
    values = {
        "state": "available",
        "attempt": J.attempt - 1,
        "run_at": utcnow(),
        "lease_owner": None,
    }
    return await _settle(database, job_id, token, values, "released", "worker shut down")


@dataclass(frozen=True, slots=True)
class JobFilter:
    states: Sequence[str] = ()
    kinds: Sequence[str] = ()
    queues: Sequence[str] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None


async def list_jobs(
    session: AsyncSession, filters: JobFilter, *, before_id: int | None, limit: int
) -> tuple[list[Job], int | None]:
    """Newest first; returns the page and the id to continue before (None at the end)."""
    query = select(Job).order_by(Job.id.desc()).limit(limit + 1)
    if filters.states:
        query = query.where(Job.state.in_(filters.states))
    if filters.kinds:
        query = query.where(Job.kind.in_(filters.kinds))
    if filters.queues:
        query = query.where(Job.queue.in_(filters.queues))
    if filters.created_from is not None:
        query = query.where(Job.created_at >= filters.created_from)
    if filters.created_to is not None:
        query = query.where(Job.created_at < filters.created_to)
    if before_id is not None:
        query = query.where(Job.id < before_id)
    jobs = list((await session.scalars(query)).all())
    if len(jobs) > limit:
        return jobs[:limit], jobs[limit - 1].id
    return jobs, None


async def attempts_of(session: AsyncSession, job_id: int) -> Sequence[JobAttempt]:
    query = select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(JobAttempt.attempt)
    return (await session.scalars(query)).all()


async def depth(session: AsyncSession) -> tuple[list[tuple[str, str, int]], datetime | None]:
    """Jobs per (state, kind), and the due time of the oldest available job."""
    counts = await session.execute(
        select(Job.state, Job.kind, func.count()).group_by(Job.state, Job.kind)
    )
    oldest = await session.scalar(select(func.min(Job.run_at)).where(Job.state == "available"))
    return [(state, kind, count) for state, kind, count in counts.all()], oldest
