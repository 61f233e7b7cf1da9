"""Workers as real processes: the embedded worker, kill -9 recovery, SIGTERM shutdown."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from dispatch.db.engine import Database
from dispatch.models import Job, JobAttempt
from dispatch.queue import service
from dispatch.queue.service import JobSpec
from tests.support import admin_headers, make_settings, running_app, start_worker


async def _state(database: Database, job_id: int) -> Job:
    async with database.session(write=False) as session:
        return await service.get_job(session, job_id)


async def _wait_for(database: Database, job_id: int, *states: str, seconds: float = 30) -> Job:
    async with asyncio.timeout(seconds):
        while (job := await _state(database, job_id)).state not in states:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return job


async def test_the_embedded_worker_runs_jobs(db_settings: dict[str, Any]) -> None:
    settings = make_settings(**db_settings, worker_enabled=True, worker_poll_interval_seconds=0.05)
    database = Database(settings)
    try:
        async with running_app(settings) as client:
            async with database.session() as session:
                created = await service.enqueue(session, JobSpec("queue.sleep", {"seconds": 0}))
                await service.enqueue(session, JobSpec("unknown.kind", delay=3600))
            job = await _wait_for(database, created.job_id, "succeeded")
            text = (await client.get("/metrics", headers=admin_headers())).text
    finally:
        await database.dispose()
    assert job.result == {"slept": 0.0}
    assert 'dispatch_queue_attempts_total{kind="queue.sleep",outcome="succeeded"} 1.0' in text
    assert "dispatch_queue_claim_wait_seconds_count 1.0" in text
    assert 'dispatch_queue_jobs{kind="queue.sleep",state="succeeded"} 1.0' in text
    assert 'dispatch_queue_jobs{kind="unknown.kind",state="scheduled"} 1.0' in text
    assert "dispatch_queue_oldest_available_seconds 0.0" in text


async def test_kill_9_mid_job_and_the_job_still_completes(
    database: Database, db_settings: dict[str, Any], tmp_path: Path
) -> None:
    async with database.session() as session:
        created = await service.enqueue(
            session, JobSpec("queue.sleep", {"seconds": 1.5}, max_attempts=3)
        )
    doomed = start_worker(db_settings, tmp_path)
    try:
        running = await _wait_for(database, created.job_id, "running")
        assert running.lease_owner is not None
        assert f":{doomed.pid}:" in running.lease_owner
        doomed.kill()  # SIGKILL: no shutdown code runs, the lease is simply abandoned
        doomed.wait(timeout=10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    rescuer = start_worker(db_settings, tmp_path)
    try:
        done = await _wait_for(database, created.job_id, "succeeded", seconds=60)
    finally:
        rescuer.terminate()
        rescuer.communicate(timeout=30)
    assert done.attempt == 2
    assert done.result == {"slept": 1.5}
    async with database.session(write=False) as session:
        attempts = (await session.scalars(select(JobAttempt).order_by(JobAttempt.attempt))).all()
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "lease_expired"), (2, "succeeded")]
    assert attempts[0].worker != attempts[1].worker


async def test_sigterm_releases_the_job_and_exits_cleanly(
    database: Database, db_settings: dict[str, Any], tmp_path: Path
) -> None:
    async with database.session() as session:
        created = await service.enqueue(session, JobSpec("queue.sleep", {"seconds": 60}))
    worker = start_worker(db_settings, tmp_path, WORKER_SHUTDOWN_GRACE_SECONDS="0.5")
    try:
        await _wait_for(database, created.job_id, "running")
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, output
    job = await _state(database, created.job_id)
    assert (job.state, job.attempt) == ("available", 0)


async def test_two_worker_processes_drain_2000_jobs_exactly_once(
    database: Database, db_settings: dict[str, Any], tmp_path: Path
) -> None:
    async with database.session() as session:
        await service.enqueue_many(session, [JobSpec("queue.noop") for _ in range(2000)])
    env = {"WORKER_CONCURRENCY": "16", "JOB_LEASE_SECONDS": "30"}
    workers = [start_worker(db_settings, tmp_path, **env) for _ in range(2)]
    try:
        async with asyncio.timeout(180):
            while True:
                async with database.session(write=False) as session:
                    left = await session.scalar(
                        select(func.count()).select_from(Job).where(Job.state != "succeeded")
                    )
                if left == 0:
                    break
                await asyncio.sleep(0.2)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.communicate(timeout=30)
    async with database.session(write=False) as session:
        attempts = (await session.execute(select(JobAttempt.job_id, JobAttempt.worker))).all()
        max_attempt = await session.scalar(select(func.max(Job.attempt)))
    assert len(attempts) == 2000
    assert len({job_id for job_id, _ in attempts}) == 2000
    assert max_attempt == 1
    assert len({worker for _, worker in attempts}) == 2, "both processes took work"


async def test_enqueue_wakes_an_idle_worker_in_another_process(
    database: Database, db_settings: dict[str, Any], tmp_path: Path
) -> None:
    """With a one-minute poll, only a wake-up (NOTIFY, or SQLite's data_version) starts it."""
    worker = start_worker(
        db_settings,
        tmp_path,
        WORKER_POLL_INTERVAL_SECONDS="60",
        QUEUE_UPKEEP_INTERVAL_SECONDS="600",
    )
    try:
        await asyncio.sleep(2)  # let it start, claim nothing and go idle
        async with database.session() as session:
            created = await service.enqueue(session, JobSpec("queue.noop"))
        state = (await _wait_for(database, created.job_id, "succeeded", "failed", seconds=30)).state
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
    assert state == "succeeded", output


async def test_workers_show_up_with_their_running_jobs(
    database: Database, db_settings: dict[str, Any], tmp_path: Path
) -> None:
    settings = make_settings(**db_settings)
    async with database.session() as session:
        created = await service.enqueue(session, JobSpec("queue.sleep", {"seconds": 30}))
    worker = start_worker(db_settings, tmp_path, WORKER_SHUTDOWN_GRACE_SECONDS="0.2")
    try:
        await _wait_for(database, created.job_id, "running")
        async with running_app(settings) as client:
            listed: list[dict[str, Any]] = []
            async with asyncio.timeout(20):  # the row shows the job at the next heartbeat
                while not any(created.job_id in w["running_job_ids"] for w in listed):
                    response = await client.get("/api/v1/workers", headers=admin_headers())
                    listed = response.json()["items"]
                    await asyncio.sleep(0.1)
        (row,) = listed
        assert row["pid"] == worker.pid
        assert row["queues"] == ["default"]
    finally:
        worker.terminate()
        worker.communicate(timeout=30)
    async with running_app(settings) as client:
        after = await client.get("/api/v1/workers", headers=admin_headers())
    assert after.json()["items"] == []  # a worker that stops cleanly leaves the table
