"""The worker: a claim loop plus named side tasks (heartbeat, upkeep).

It claims up to ``concurrency`` jobs, runs each handler in its own task, and
heart-beats every running job at a third of the lease. A lost lease or a
cancellation request stops the handler. On shutdown it stops claiming, lets
running jobs finish within a grace period, then hands the rest back.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import random
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from pydantic import ValidationError

from dispatch.background import Supervisor
from dispatch.db.engine import Database
from dispatch.queue import maintenance, nodes, notify, scheduler, service, workers
from dispatch.queue.policy import Decision, RetryPolicy
from dispatch.queue.registry import JobContext, Registry
from dispatch.queue.service import ClaimedJob
from dispatch.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.randrange(16**6):06x}"  # noqa: S311


@dataclass
class WorkerConfig:
    queues: tuple[str, ...] = ("default",)
    concurrency: int = 4
    lease_seconds: float = 60.0
    poll_interval: float = 1.0
    shutdown_grace: float = 30.0
    upkeep_interval: float = 10.0
    retention: timedelta = timedelta(days=7)
    node_silent_after: timedelta = timedelta(minutes=3)
    name: str = field(default_factory=default_worker_name)


class _Completer:
    """Group commit for successes: those that finish while a write is in flight go out together.

    A lone completion is written at once (after one turn of the event loop); under
    load, completions pile up behind the write in progress and the next write
    settles them all in one transaction, as River's and Oban's batch completers do.
    """

    def __init__(self, database: Database, max_batch: int = 200) -> None:
        self.database = database
        self.max_batch = max_batch
        self._pending: list[tuple[service.Completion, asyncio.Future[bool]]] = []
        self._ready = asyncio.Event()

    async def complete(self, completion: service.Completion) -> bool:
        """Queue one success; True once it is durable, False when the lease was lost."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((completion, future))
        self._ready.set()
        return await future

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            await asyncio.sleep(0)  # handlers finishing in this turn of the loop join in
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            if not self._pending:
                self._ready.clear()
            try:
                settled = await service.complete_many(self.database, [item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for completion, future in batch:
                if not future.done():  # its handler's task may have been cancelled meanwhile
                    future.set_result(completion.job_id in settled)


@dataclass
class _Running:
    job: ClaimedJob
    context: JobContext
    task: asyncio.Task[None]
    lease_lost: bool = False


class Worker:
    def __init__(
        self,
        database: Database,
        registry: Registry,
        config: WorkerConfig,
        metrics: Metrics | None = None,
    ) -> None:
        self.database = database
        self.metrics = metrics
        self.registry = registry
        self.config = config
        self._running: dict[int, _Running] = {}
        self._wake = asyncio.Event()
        self._completer = _Completer(database)
        self.processed = 0
        # When retries this worker scheduled fall due (monotonic), so they start on time
        # instead of waiting for the next upkeep pass.
        self._due: list[float] = []
        self._due_changed = asyncio.Event()

    @property
    def name(self) -> str:
        return self.config.name

    def _on_enqueue(self, queues: set[str]) -> None:
        if not queues or queues.intersection(self.config.queues):
            self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then shut down gracefully."""
        log.info("queue.worker_started", worker=self.name, queues=self.config.queues)
        await scheduler.sync(self.database, self.registry.schedules)
        sides = [
            asyncio.create_task(self._heartbeat_loop(stop), name="queue.heartbeat"),
            asyncio.create_task(self._upkeep_loop(stop), name="queue.upkeep"),
            asyncio.create_task(self._schedule_loop(), name="queue.schedules"),
            asyncio.create_task(self._completer.run(), name="queue.completer"),
            asyncio.create_task(self._promotion_loop(), name="queue.promotions"),
        ]
        loops = Supervisor()  # a domain's loop that crashes is restarted, not lost
        for name, factory in self.registry.loops.items():
            loops.start(name, factory)
        if self.database.kind == "postgresql":
            sides.append(asyncio.create_task(notify.listen(self.database, self._on_enqueue)))
        else:
            watch = notify.watch_sqlite(self.database, self.config.queues, self._on_enqueue)
            sides.append(asyncio.create_task(watch, name="queue.sqlite_watch"))
        notify.add_local_waker(self._on_enqueue)
        await self._announce()
        try:
            await self._claim_loop(stop)
        finally:
            notify.remove_local_waker(self._on_enqueue)
            await self._drain()
            with contextlib.suppress(Exception):  # a dead database must not block shutdown
                await workers.leave(self.database, self.name)
            await loops.stop()
            for side in sides:
                side.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await side
            log.info("queue.worker_stopped", worker=self.name, processed=self.processed)

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            free = self.config.concurrency - len(self._running)
            # Cleared before looking, so a wake-up that arrives meanwhile is not lost.
            self._wake.clear()
            if free > 0:
                claimed = await service.claim(
                    self.database,
                    owner=self.name,
                    queues=self.config.queues,
                    limit=free,
                    lease_seconds=self.config.lease_seconds,
                )
                for job in claimed:
                    self._start(job)
                if len(claimed) == free:
                    continue  # the queue may hold more: claim again as soon as a slot frees
            # Idle, or every slot busy: a finished job, an enqueue or the poll wakes us.
            await self._wait(stop, self.config.poll_interval)

    async def _wait(self, stop: asyncio.Event, seconds: float) -> None:
        waiters = [asyncio.ensure_future(event.wait()) for event in (stop, self._wake)]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _count(self, job: ClaimedJob, outcome: str | None) -> None:
        if self.metrics is not None and outcome is not None:
            self.metrics.queue_attempts.labels(job.kind, outcome).inc()

    def _start(self, job: ClaimedJob) -> None:
        if self.metrics is not None:
            self.metrics.queue_claim_wait.observe(job.wait_seconds)
        context = JobContext(job=job, database=self.database, worker=self.name)
        task = asyncio.create_task(self._execute(job, context), name=f"job-{job.id}")
        self._running[job.id] = _Running(job, context, task)

    async def _execute(self, job: ClaimedJob, context: JobContext) -> None:
        started = time.monotonic()
        try:
            await self._run_handler(job, context)
        finally:
            self._running.pop(job.id, None)
            self.processed += 1
            self._wake.set()  # a slot is free
            log.debug(
                "queue.job_done", job_id=job.id, ms=round((time.monotonic() - started) * 1000)
            )

    async def _run_handler(self, job: ClaimedJob, context: JobContext) -> None:
        handler = self.registry.get(job.kind)
        if handler is None:
            error = f"no handler is registered for kind {job.kind!r}"
            await service.fail(self.database, job.id, job.lease_token, error, Decision(False))
            self._count(job, "failed")
            return
        try:
            args = handler.parse(job.args)
        except ValidationError as exc:
            error = f"invalid arguments: {exc.errors(include_url=False)}"
            await service.fail(self.database, job.id, job.lease_token, error, Decision(False))
            self._count(job, "failed")
            return
        timeout = handler.timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                result = await handler.fn(context, args)
        except asyncio.CancelledError:
            await self._after_cancel(job)
            raise
        except Exception as exc:  # the handler's failure is the job's, not the worker's
            try:
                await self._after_failure(job, handler.policy, exc)
            except Exception:  # the lease runs out and the job runs again: at least once
                log.exception("queue.fail_failed", job_id=job.id, worker=self.name)
            return
        completion = service.Completion(job.id, job.lease_token, result)
        try:
            done = await self._completer.complete(completion)
        except Exception:  # the lease runs out and the job runs again: at least once
            log.exception("queue.complete_failed", job_id=job.id, worker=self.name)
            return
        self._count(job, "succeeded" if done else "lease_lost")

    async def _after_failure(self, job: ClaimedJob, policy: RetryPolicy, exc: Exception) -> None:
        error = exc if not isinstance(exc, TimeoutError) else TimeoutError("handler timed out")
        decision = policy.decide(job.attempt, job.max_attempts, error)
        message = f"{type(error).__name__}: {error}"
        state = await service.fail(self.database, job.id, job.lease_token, message, decision)
        if state == "scheduled":
            heapq.heappush(self._due, time.monotonic() + decision.delay)
            self._due_changed.set()
        outcome = "lease_lost" if state is None else ("retried" if decision.retry else "failed")
        self._count(job, outcome)
        log.info("queue.job_failed", job_id=job.id, kind=job.kind, state=state, error=message)

    async def _after_cancel(self, job: ClaimedJob) -> None:
        entry = self._running.get(job.id)
        if entry is not None and entry.lease_lost:
            return  # someone else owns it now (or it is being released): write nothing
        if entry is not None and entry.context.cancelled.is_set():
            await asyncio.shield(service.acknowledge_cancel(self.database, job.id, job.lease_token))
            self._count(job, "cancelled")

    async def _announce(self) -> None:
        await workers.beat(
            self.database,
            self.name,
            self.config.queues,
            self.config.concurrency,
            list(self._running),
        )

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        interval = self.config.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                for entry in list(self._running.values()):
                    await self._beat(entry)
                await self._announce()
            except Exception:  # the next beat tries again; leases outlive a few misses
                log.exception("queue.heartbeat_failed", worker=self.name)

    async def _beat(self, entry: _Running) -> None:
        progress = entry.context.pending_progress
        beat = await service.heartbeat(
            self.database,
            entry.job.id,
            entry.job.lease_token,
            lease_seconds=self.config.lease_seconds,
            progress=progress,
        )
        if not beat.alive:
            log.warning("queue.lease_lost", job_id=entry.job.id, worker=self.name)
            entry.lease_lost = True
            entry.task.cancel()
        elif beat.cancel_requested:
            entry.context.cancelled.set()
            entry.task.cancel()

    async def _schedule_loop(self) -> None:
        """Turn due schedule slots into jobs; a second's granularity serves 6-field cron."""
        while True:
            try:
                await scheduler.tick(self.database)
            except Exception:
                log.exception("queue.schedule_tick_failed", worker=self.name)
            await asyncio.sleep(min(1.0, self.config.poll_interval))

    async def _promotion_loop(self) -> None:
        """Promote this worker's retries when they fall due (upkeep is the backstop)."""
        while True:
            self._due_changed.clear()
            wait = self._due[0] - time.monotonic() if self._due else None
            if wait is None or wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._due_changed.wait(), wait)
                continue
            now = time.monotonic()
            while self._due and self._due[0] <= now:
                heapq.heappop(self._due)
            try:
                promoted = await maintenance.promote_scheduled(self.database)
            except Exception:
                log.exception("queue.promotion_failed", worker=self.name)
                heapq.heappush(self._due, now + 1.0)
                continue
            if promoted:
                self._wake.set()

    async def _upkeep_loop(self, stop: asyncio.Event) -> None:
        while True:
            try:
                await self.upkeep()
            except Exception:  # a failed pass is retried at the next interval
                log.exception("queue.upkeep_failed", worker=self.name)
            await asyncio.sleep(self.config.upkeep_interval)

    async def upkeep(self) -> None:
        """One pass of the leaderless reaper: expire leases, promote, prune."""
        silent = timedelta(seconds=max(3 * self.config.lease_seconds, 60))
        await workers.prune_silent(self.database, silent)
        offline = await nodes.mark_silent(self.database, self.config.node_silent_after)
        expired = await maintenance.expire_leases(self.database)
        promoted = await maintenance.promote_scheduled(self.database)
        pruned = await maintenance.prune_finished(self.database, self.config.retention)
        if offline or expired or promoted or pruned:
            log.info(
                "queue.upkeep",
                nodes_offline=offline,
                expired=expired,
                promoted=promoted,
                pruned=pruned,
            )
        if promoted or expired:  # also signalled through notify; this covers a quiet loop
            self._wake.set()

    async def _drain(self) -> None:
        """Give running jobs the grace period, then hand the rest back to the queue."""
        if not self._running:
            return
        tasks = [entry.task for entry in self._running.values()]
        await asyncio.wait(tasks, timeout=self.config.shutdown_grace)
        for entry in list(self._running.values()):
            entry.lease_lost = True  # released below: the cancelled handler writes nothing
            entry.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await entry.task
            await service.release(self.database, entry.job.id, entry.job.lease_token)
            log.info("queue.job_released", job_id=entry.job.id, worker=self.name)
