"""The worker against the real database: handlers, retries, leases, cancellation, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, update

from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import Job, JobAttempt
from dispatch.queue import maintenance, service
from dispatch.queue.errors import PermanentFailure, RetryAfter
from dispatch.queue.policy import RetryPolicy
from dispatch.queue.registry import JobContext, Registry
from dispatch.queue.schedules import ScheduleSpec
from dispatch.queue.service import JobSpec
from dispatch.queue.worker import Worker, WorkerConfig

FAST = RetryPolicy(base_seconds=0, cap_seconds=0, jitter=0)


class Add(BaseModel):
    a: int
    b: int


def config(**overrides: Any) -> WorkerConfig:
    values: dict[str, Any] = {"poll_interval": 0.05, "lease_seconds": 30, "upkeep_interval": 0.1}
    values.update(overrides)
    return WorkerConfig(**values)


async def enqueue(database: Database, *specs: JobSpec) -> list[int]:
    async with database.session() as session:
        return [result.job_id for result in await service.enqueue_many(session, list(specs))]


async def job(database: Database, job_id: int) -> Job:
    async with database.session(write=False) as session:
        return await service.get_job(session, job_id)


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110 - the condition lives in the database
            await asyncio.sleep(0.02)


async def states(database: Database, ids: list[int]) -> list[str]:
    return [(await job(database, job_id)).state for job_id in ids]


async def run_until(worker: Worker, done: Callable[[], Awaitable[bool]]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await until(done)
    finally:
        stop.set()
        await task


async def test_handlers_run_with_typed_args(database: Database) -> None:
    registry = Registry()

    @registry.register("math.add", args=Add)
    async def add(context: JobContext, args: Add) -> dict[str, Any]:
        return {"sum": args.a + args.b, "attempt": context.job.attempt}

    ids = await enqueue(
        database,
        *(JobSpec("math.add", {"a": n, "b": 1}) for n in range(10)),
        JobSpec("math.add", {"a": "not a number"}),
        JobSpec("no.such.kind"),
    )
    worker = Worker(database, registry, config(concurrency=3))

    async def finished() -> bool:
        return all(s in ("succeeded", "failed") for s in await states(database, ids))

    await run_until(worker, finished)
    results = [(await job(database, job_id)) for job_id in ids]
    assert [r.result for r in results[:10]] == [{"sum": n + 1, "attempt": 1} for n in range(10)]
    assert results[10].state == "failed"
    assert "invalid arguments" in (results[10].last_error or "")
    assert results[11].state == "failed"
    assert "no handler" in (results[11].last_error or "")


async def test_failures_follow_the_policy(database: Database) -> None:
    registry = Registry()
    calls: dict[str, int] = {"flaky": 0}

    @registry.register("flaky", policy=FAST)
    async def flaky(context: JobContext, args: dict[str, Any]) -> None:
        calls["flaky"] += 1
        if context.job.attempt < 3:
            raise ConnectionError("provider down")

    @registry.register("broken", policy=FAST)
    async def broken(context: JobContext, args: dict[str, Any]) -> None:
        raise PermanentFailure("the request can never succeed")

    @registry.register("later", policy=FAST)
    async def later(context: JobContext, args: dict[str, Any]) -> None:
        raise RetryAfter(3600, "Retry-After: 3600")

    ids = await enqueue(
        database, JobSpec("flaky", max_attempts=5), JobSpec("broken"), JobSpec("later")
    )

    async def settled() -> bool:
        return await states(database, ids) == ["succeeded", "failed", "scheduled"]

    await run_until(Worker(database, registry, config()), settled)
    assert calls["flaky"] == 3
    assert (await job(database, ids[1])).attempt == 1
    delayed = await job(database, ids[2])
    assert delayed.last_error == "RetryAfter: Retry-After: 3600"
    assert delayed.run_at > delayed.created_at + timedelta(minutes=59)


async def test_timeouts_count_as_failures(database: Database) -> None:
    registry = Registry()

    @registry.register("slow", policy=RetryPolicy(max_attempts=1), timeout_seconds=0.05)
    async def slow(context: JobContext, args: dict[str, Any]) -> None:
        await asyncio.sleep(5)

    (job_id,) = await enqueue(database, JobSpec("slow", max_attempts=1))

    async def failed() -> bool:
        return (await job(database, job_id)).state == "failed"

    await run_until(Worker(database, registry, config()), failed)
    assert "timed out" in ((await job(database, job_id)).last_error or "")


async def test_running_jobs_are_cancelled_cooperatively(database: Database) -> None:
    registry = Registry()
    started = asyncio.Event()

    @registry.register("long")
    async def long(context: JobContext, args: dict[str, Any]) -> None:
        context.report_progress({"step": 1})
        started.set()
        await asyncio.sleep(30)

    (job_id,) = await enqueue(database, JobSpec("long"))
    worker = Worker(database, registry, config(lease_seconds=0.3))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(started.wait(), 10)
        async with database.session() as session:
            await service.cancel(session, job_id)

        async def cancelled() -> bool:
            return (await job(database, job_id)).state == "cancelled"

        await until(cancelled)
    finally:
        stop.set()
        await task
    assert (await job(database, job_id)).progress == {"step": 1}


async def test_a_lost_lease_stops_the_handler_and_writes_nothing(database: Database) -> None:
    registry = Registry()
    started, stopped = asyncio.Event(), asyncio.Event()

    @registry.register("long")
    async def long(context: JobContext, args: dict[str, Any]) -> dict[str, Any]:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            stopped.set()
        return {"written": True}

    (job_id,) = await enqueue(database, JobSpec("long"))
    worker = Worker(database, registry, config(lease_seconds=0.3))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(started.wait(), 10)
        async with database.session() as session:  # another owner took the job over
            await session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    lease_token="f" * 32,
                    lease_owner="x",
                    lease_expires_at=utcnow() + timedelta(minutes=5),
                )
            )
        await asyncio.wait_for(stopped.wait(), 10)
    finally:
        stop.set()
        await task
    stored = await job(database, job_id)
    assert (stored.state, stored.lease_owner, stored.result) == ("running", "x", None)


async def test_shutdown_releases_jobs_that_outlive_the_grace(database: Database) -> None:
    registry = Registry()
    started = asyncio.Event()

    @registry.register("long")
    async def long(context: JobContext, args: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(30)

    (job_id,) = await enqueue(database, JobSpec("long"))
    stop = asyncio.Event()
    task = asyncio.create_task(Worker(database, registry, config(shutdown_grace=0.1)).run(stop))
    await asyncio.wait_for(started.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 10)
    stored = await job(database, job_id)
    assert (stored.state, stored.attempt, stored.lease_token) == ("available", 0, None)
    async with database.session(write=False) as session:
        outcomes = (await session.scalars(select(JobAttempt.outcome))).all()
    assert outcomes == ["released"]


async def test_expired_leases_are_requeued_and_poison_jobs_end(database: Database) -> None:
    ids = await enqueue(database, JobSpec("a", max_attempts=3), JobSpec("b", max_attempts=1))
    claimed = await service.claim(database, owner="dead-worker", limit=2, lease_seconds=0.05)
    assert len(claimed) == 2
    await asyncio.sleep(0.1)
    assert await maintenance.expire_leases(database) == 2
    assert await states(database, ids) == ["available", "failed"]
    async with database.session(write=False) as session:
        outcomes = (await session.scalars(select(JobAttempt.outcome))).all()
    assert sorted(outcomes) == ["lease_expired", "lease_expired"]


async def test_promotion_and_pruning(database: Database) -> None:
    ids = await enqueue(database, JobSpec("a", delay=0.05), JobSpec("b"))
    await asyncio.sleep(0.1)
    assert await maintenance.promote_scheduled(database) == 1
    (first, second) = await service.claim(database, owner="w", limit=2)
    assert await service.complete(database, first.id, first.lease_token)
    assert await maintenance.prune_finished(database, timedelta(days=1)) == 0
    assert await maintenance.prune_finished(database, timedelta(seconds=-1)) == 1
    async with database.session(write=False) as session:
        remaining = (await session.scalars(select(Job.id))).all()
    assert remaining == [second.id]
    assert set(ids) == {first.id, second.id}


async def test_an_enqueue_in_this_process_wakes_the_worker(database: Database) -> None:
    registry = Registry()

    @registry.register("quick")
    async def quick(context: JobContext, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    worker = Worker(database, registry, config(poll_interval=600, upkeep_interval=600))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(0.3)  # idle now, waiting out its ten-minute poll
        (job_id,) = await enqueue(database, JobSpec("quick"))

        async def done() -> bool:
            return (await job(database, job_id)).state == "succeeded"

        await until(done, seconds=20)
    finally:
        stop.set()
        await task


async def test_the_worker_runs_its_schedules(database: Database) -> None:
    registry = Registry()
    ran: list[int] = []

    @registry.register("tick")
    async def tick(context: JobContext, args: dict[str, Any]) -> None:
        ran.append(context.job.id)

    registry.schedule(ScheduleSpec("ticker", "@every 1s", "tick"))
    worker = Worker(database, registry, config(poll_interval=0.05))

    async def ran_twice() -> bool:
        return len(ran) >= 2

    await run_until(worker, ran_twice)
    assert len(set(ran)) == len(ran)  # every slot is a job of its own


async def test_successes_that_finish_together_are_written_together(
    database: Database, monkeypatch: Any
) -> None:
    batches: list[int] = []
    real_complete_many = service.complete_many

    async def counting(db: Database, completions: Any) -> set[int]:
        batches.append(len(completions))
        return await real_complete_many(db, completions)

    monkeypatch.setattr(service, "complete_many", counting)
    registry = Registry()
    release = asyncio.Event()

    @registry.register("gate")
    async def gate(context: JobContext, args: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"n": args["n"]}

    ids = await enqueue(database, *(JobSpec("gate", {"n": n}) for n in range(12)))
    worker = Worker(database, registry, config(concurrency=12))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def all_running() -> bool:
        return await states(database, ids) == ["running"] * 12

    await until(all_running)
    release.set()  # twelve handlers return in the same turn of the event loop

    async def all_done() -> bool:
        return await states(database, ids) == ["succeeded"] * 12

    await until(all_done)
    stop.set()
    await task
    assert batches == [12]
    assert [(await job(database, job_id)).result for job_id in ids] == [{"n": n} for n in range(12)]
