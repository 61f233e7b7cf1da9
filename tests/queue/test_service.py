"""Queue statements against the real database (SQLite, or PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.errors import Conflict, NotFound
from dispatch.models import Job, JobAttempt
from dispatch.queue import service
from dispatch.queue.policy import Decision
from dispatch.queue.service import JobSpec


async def _job(database: Database, job_id: int) -> Job:
    async with database.session(write=False) as session:
        return await service.get_job(session, job_id)


async def test_a_rolled_back_enqueue_never_exists(database: Database) -> None:
    async def enqueue_then_fail() -> None:
        async with database.session() as session:
            await service.enqueue(session, JobSpec("noop"))
            raise RuntimeError("the caller's transaction fails")

    with pytest.raises(RuntimeError):
        await enqueue_then_fail()
    assert await service.claim(database, owner="w1") == []


async def test_committed_jobs_are_durable_and_batched(database: Database) -> None:
    async with database.session() as session:
        results = await service.enqueue_many(session, [JobSpec("noop", {"n": n}) for n in range(5)])
    assert [result.created for result in results] == [True] * 5
    claimed = await service.claim(database, owner="w1", limit=10)
    assert [job.args["n"] for job in claimed] == [0, 1, 2, 3, 4]
    assert {job.id for job in claimed} == {result.job_id for result in results}


async def test_dedupe_returns_the_live_job(database: Database) -> None:
    async with database.session() as session:
        first = await service.enqueue(session, JobSpec("sync", dedupe_key="provider:goat"))
        again = await service.enqueue(session, JobSpec("sync", dedupe_key="provider:goat"))
        other = await service.enqueue(session, JobSpec("sync", dedupe_key="provider:ebay"))
    assert first.created
    assert not again.created
    assert other.created
    assert again.job_id == first.job_id
    (job,) = [j for j in await service.claim(database, owner="w", limit=5) if j.id == first.job_id]
    assert await service.complete(database, job.id, job.lease_token)
    async with database.session() as session:  # finished jobs free the key
        later = await service.enqueue(session, JobSpec("sync", dedupe_key="provider:goat"))
    assert later.created
    assert later.job_id != first.job_id


async def test_claim_order_and_scheduling(database: Database) -> None:
    async with database.session() as session:
        low = await service.enqueue(session, JobSpec("noop", priority=200))
        high = await service.enqueue(session, JobSpec("noop", priority=10))
        later = await service.enqueue(session, JobSpec("noop", delay=3600))
        other_queue = await service.enqueue(session, JobSpec("noop", queue="slow"))
    claimed = await service.claim(database, owner="w1", limit=10)
    assert {job.id for job in claimed} == {low.job_id, high.job_id}
    first = await service.claim(database, owner="w1", queues=["slow"])
    assert [job.id for job in first] == [other_queue.job_id]
    assert (await _job(database, later.job_id)).state == "scheduled"


async def test_priority_decides_within_a_batch(database: Database) -> None:
    async with database.session() as session:
        low = await service.enqueue(session, JobSpec("noop", priority=200))
        high = await service.enqueue(session, JobSpec("noop", priority=10))
    (only,) = await service.claim(database, owner="w1", limit=1)
    assert only.id == high.job_id
    assert (await service.claim(database, owner="w1"))[0].id == low.job_id


async def test_concurrent_claims_never_share_a_job(database: Database) -> None:
    async with database.session() as session:
        await service.enqueue_many(session, [JobSpec("noop") for _ in range(60)])
    batches = await asyncio.gather(
        *(service.claim(database, owner=f"w{n}", limit=7) for n in range(12))
    )
    ids = [job.id for batch in batches for job in batch]
    assert len(ids) == 60
    assert len(set(ids)) == 60


async def test_a_stale_lease_token_cannot_overwrite_the_new_owner(database: Database) -> None:
    async with database.session() as session:
        await service.enqueue(session, JobSpec("noop", max_attempts=5))
    (old,) = await service.claim(database, owner="slow-worker", lease_seconds=30)
    # The lease runs out and the job goes back to the queue (what the reaper does).
    async with database.session() as session:
        await session.execute(
            update(Job).where(Job.id == old.id).values(state="available", lease_token=None)
        )
    (new,) = await service.claim(database, owner="fast-worker")
    assert new.id == old.id
    assert new.lease_token != old.lease_token
    assert new.attempt == old.attempt + 1

    assert not await service.complete(database, old.id, old.lease_token, {"from": "stale"})
    assert (await service.heartbeat(database, old.id, old.lease_token)).alive is False
    decision = Decision(retry=True, delay=10)
    assert await service.fail(database, old.id, old.lease_token, "late", decision) is None
    assert await service.complete(database, new.id, new.lease_token, {"from": "owner"})
    job = await _job(database, new.id)
    assert (job.state, job.result) == ("succeeded", {"from": "owner"})


async def test_complete_many_settles_held_leases_only(database: Database) -> None:
    async with database.session() as session:
        await service.enqueue_many(session, [JobSpec("noop", {"n": n}) for n in range(4)])
    first, second, third, fourth = await service.claim(database, owner="w", limit=4)
    await asyncio.sleep(0.05)  # so the attempts have a measurable duration
    settled = await service.complete_many(
        database,
        [
            service.Completion(first.id, first.lease_token, {"n": 0}),
            service.Completion(second.id, second.lease_token),
            service.Completion(third.id, "0" * 32, {"forged": True}),  # not its token
            service.Completion(fourth.id, fourth.lease_token, {"n": 3}),
        ],
    )
    assert settled == {first.id, second.id, fourth.id}
    assert await service.complete_many(database, []) == set()
    states = {job.id: (await _job(database, job.id)) for job in (first, second, third, fourth)}
    assert states[first.id].result == {"n": 0}
    assert states[second.id].result is None
    assert states[fourth.id].result == {"n": 3}
    assert [states[j.id].state for j in (first, second, third, fourth)] == [
        "succeeded",
        "succeeded",
        "running",
        "succeeded",
    ]
    assert states[first.id].lease_token is None
    async with database.session(write=False) as session:
        attempts = {a.job_id: a for a in (await session.scalars(select(JobAttempt))).all()}
    assert attempts[third.id].outcome == "running"
    for job in (first, second, fourth):
        assert attempts[job.id].outcome == "succeeded"
        duration = attempts[job.id].duration_ms
        assert duration is not None
        assert 40 <= duration < 10_000
    # Completing twice changes nothing the second time.
    assert (
        await service.complete_many(database, [service.Completion(first.id, first.lease_token)])
        == set()
    )


async def test_failures_retry_then_dead_letter_then_manual_retry(database: Database) -> None:
    async with database.session() as session:
        created = await service.enqueue(session, JobSpec("flaky", max_attempts=2))
    (first,) = await service.claim(database, owner="w1")
    state = await service.fail(database, first.id, first.lease_token, "boom", Decision(True, 0))
    assert state == "available"
    (second,) = await service.claim(database, owner="w1")
    assert second.attempt == 2
    state = await service.fail(database, second.id, second.lease_token, "boom", Decision(False))
    assert state == "failed"
    job = await _job(database, created.job_id)
    assert (job.state, job.last_error, job.finished_at is not None) == ("failed", "boom", True)

    async with database.session() as session:
        attempts = (
            await session.scalars(
                select(JobAttempt).where(JobAttempt.job_id == job.id).order_by(JobAttempt.attempt)
            )
        ).all()
    assert [(a.attempt, a.worker, a.outcome, a.error) for a in attempts] == [
        (1, "w1", "retried", "boom"),
        (2, "w1", "failed", "boom"),
    ]
    assert all(a.duration_ms is not None and a.duration_ms >= 0 for a in attempts)

    async with database.session() as session:
        await service.retry_now(session, job.id)
    (third,) = await service.claim(database, owner="w2")
    assert third.attempt == 3
    assert await service.complete(database, third.id, third.lease_token)


async def test_backoff_schedules_the_retry(database: Database) -> None:
    async with database.session() as session:
        await service.enqueue(session, JobSpec("flaky"))
    (job,) = await service.claim(database, owner="w1")
    before = utcnow()
    assert await service.fail(database, job.id, job.lease_token, "x", Decision(True, 120)) == (
        "scheduled"
    )
    stored = await _job(database, job.id)
    assert stored.run_at >= before + timedelta(seconds=119)
    assert await service.claim(database, owner="w1") == []


async def test_cancel_waiting_and_running_jobs(database: Database) -> None:
    async with database.session() as session:
        waiting = await service.enqueue(session, JobSpec("noop", delay=60))
        running = await service.enqueue(session, JobSpec("noop"))
    (job,) = await service.claim(database, owner="w1")
    assert job.id == running.job_id
    async with database.session() as session:
        assert (await service.cancel(session, waiting.job_id)).state == "cancelled"
        assert (await service.cancel(session, running.job_id)).state == "running"
    beat = await service.heartbeat(database, job.id, job.lease_token, progress={"done": 3})
    assert beat.alive
    assert beat.cancel_requested
    assert await service.acknowledge_cancel(database, job.id, job.lease_token)
    stored = await _job(database, job.id)
    assert (stored.state, stored.progress) == ("cancelled", {"done": 3})
    with pytest.raises(Conflict):
        async with database.session() as session:
            await service.cancel(session, job.id)
    with pytest.raises(NotFound):
        async with database.session() as session:
            await service.retry_now(session, running.job_id + 1000)


async def test_concurrency_key_caps_running_jobs(database: Database) -> None:
    async with database.session() as session:
        await service.enqueue_many(
            session,
            [JobSpec("fetch", concurrency_key="host:goat", concurrency_limit=2) for _ in range(5)]
            + [JobSpec("fetch", concurrency_key="host:ebay") for _ in range(2)]
            + [JobSpec("free")],
        )
    claimed = await service.claim(database, owner="w1", limit=10)
    keys = {job.id: (await _job(database, job.id)).concurrency_key for job in claimed}
    kinds = sorted((job.kind, keys[job.id]) for job in claimed)
    assert kinds == [
        ("fetch", "host:ebay"),
        ("fetch", "host:goat"),
        ("fetch", "host:goat"),
        ("free", None),
    ]
    async with database.session(write=False) as session:
        started = (await session.scalars(select(JobAttempt.job_id))).all()
    assert sorted(started) == sorted(job.id for job in claimed)  # none for the jobs put back
    assert await service.claim(database, owner="w2", limit=10) == []
    goat = [job for job in claimed if keys[job.id] == "host:goat"]
    assert await service.complete(database, goat[0].id, goat[0].lease_token)
    (next_goat,) = await service.claim(database, owner="w2", limit=10)
    assert (await _job(database, next_goat.id)).concurrency_key == "host:goat"
    assert next_goat.attempt == 1  # a job put back by the limit did not lose an attempt


async def test_concurrent_claimers_respect_the_key_limit(database: Database) -> None:
    async with database.session() as session:
        await service.enqueue_many(
            session,
            [JobSpec("fetch", concurrency_key="host:shop", concurrency_limit=3) for _ in range(30)],
        )
    batches = await asyncio.gather(
        *(service.claim(database, owner=f"w{n}", limit=5) for n in range(8))
    )
    assert sum(len(batch) for batch in batches) == 3
    async with database.session(write=False) as session:
        running = (await session.scalars(select(Job).where(Job.state == "running"))).all()
    assert len(running) == 3
