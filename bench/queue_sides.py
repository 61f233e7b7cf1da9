"""The queues bench/queue.py compares, each behind the same small interface.

Dispatch on SQLite and on PostgreSQL, Procrastinate on PostgreSQL, and Huey's SQLite storage
with fsync on. A side makes its storage fresh, enqueues no-op jobs (one transaction per call),
claims and completes them through its own API, and runs its real worker; the worker's handler
reports every start to a ``StartLog``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import psycopg
from huey import SqliteHuey
from huey.storage import SqliteStorage
from procrastinate import App, PsycopgConnector
from procrastinate.jobs import Status
from psycopg import sql
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from dispatch.config import Settings, load_settings, normalise_database_url
from dispatch.db import migrations
from dispatch.db.engine import Database
from dispatch.jobs import worker_config
from dispatch.models import JobAttempt
from dispatch.queue import service
from dispatch.queue.registry import HandlerResult, JobContext, Registry
from dispatch.queue.worker import Worker

NOOP_KIND = "bench.noop"
QUEUE = "default"
DISPATCH_SCHEMA = "bench_queue"
PROCRASTINATE_DATABASE = "bench_procrastinate"
HUEY_NAME = "bench"
PREFILL_CHUNK = 500
POOL_SIZE = 10  # Dispatch's DB_POOL_SIZE default; Procrastinate's pool gets the same
HANG_SECONDS = 3600.0
SIDE_KEYS = ("dispatch-sqlite", "huey", "dispatch-postgresql", "procrastinate")
_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
# What a job carries: {"seq": n, "at": wall-clock seconds when enqueued}, and "hang": True
# for the crash drill (its first attempt never ends).
JobArgs = dict[str, Any]


class Unsupported(Exception):
    """The side has no API for this workload (e.g. Huey enqueues one job per transaction)."""


class StartLog:
    """Where handlers report a job start: counted, timed, optionally appended to a file.

    Thread-safe, since Huey runs handlers in threads. ``on_target`` runs once, in the
    reporting thread, when the count reaches ``target``.
    """

    def __init__(self, path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._file: TextIO | None = path.open("a", encoding="utf-8") if path else None
        self.count = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.target: int | None = None
        self.on_target: Callable[[], None] | None = None

    def record(self, args: Mapping[str, Any], attempt: int = 1) -> None:
        now = time.time()
        with self._lock:
            self.count += 1
            self.first_at = self.first_at or now
            self.last_at = now
            if self._file is not None:
                seq, at = args.get("seq", -1), args.get("at", now)
                self._file.write(f"{seq} {at:.6f} {now:.6f} {os.getpid()} {attempt}\n")
                self._file.flush()
            reached = self.count == self.target
        if reached and self.on_target is not None:
            self.on_target()

    def mark_ready(self) -> None:
        """One ``ready`` line, so a parent process knows the worker is about to start."""
        if self._file is not None:
            self._file.write(f"ready {os.getpid()}\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@dataclass(frozen=True)
class WorkerOptions:
    """How a side's real worker runs; lease and upkeep apply to Dispatch only."""

    concurrency: int
    lease_seconds: float | None = None
    upkeep_seconds: float | None = None


def remove_sqlite(path: str) -> None:
    """Delete a SQLite database with its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


async def run_until(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    """Run ``work`` until ``stop`` is set, then cancel it; its own failure is raised at once."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Side(abc.ABC):
    """One queue under test."""

    key: str
    label: str
    storage: Literal["SQLite", "PostgreSQL"]
    batch_enqueue = True  # several jobs in one transaction
    batch_claim = True  # several jobs per claim

    @abc.abstractmethod
    async def durability(self) -> dict[str, str]:
        """The settings that decide what a commit costs, read from the live connection."""

    @abc.abstractmethod
    async def open(self, *, fresh: bool) -> None:
        """Connect; ``fresh`` first drops and recreates this side's storage."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def clear(self) -> None:
        """Empty the queue: no jobs, waiting or finished."""

    @abc.abstractmethod
    async def pending(self) -> int:
        """Jobs waiting to be claimed."""

    @abc.abstractmethod
    async def enqueue(self, jobs: Sequence[JobArgs]) -> None:
        """Enqueue ``jobs`` in one transaction."""

    @abc.abstractmethod
    async def claim_complete(self, batch: int) -> int:
        """Claim up to ``batch`` jobs and complete them; returns how many (0: queue empty)."""

    @abc.abstractmethod
    async def run_worker(self, log: StartLog, stop: asyncio.Event, options: WorkerOptions) -> None:
        """Run the side's real worker until ``stop`` is set; its handler reports to ``log``."""

    async def prefill(self, count: int) -> None:
        """Add ``count`` waiting jobs as fast as the side allows (not measured)."""
        for start in range(0, count, PREFILL_CHUNK):
            size = min(PREFILL_CHUNK, count - start)
            await self.enqueue([{"seq": start + n, "at": time.time()} for n in range(size)])


class DispatchSide(Side):
    """Dispatch's own queue service and worker, on a SQLite file or a PostgreSQL schema."""

    def __init__(self, storage: Literal["sqlite", "postgresql"], location: str) -> None:
        self.key = f"dispatch-{storage}"
        self.storage = "SQLite" if storage == "sqlite" else "PostgreSQL"
        self.label = f"Dispatch ({self.storage})"
        self.location = location  # the SQLite file, or the PostgreSQL URL
        values: dict[str, Any] = {
            "environment": "development",
            "log_level": "WARNING",
            "worker_enabled": False,
            "database_url": f"sqlite:///{location}" if storage == "sqlite" else location,
        }
        if storage == "postgresql":
            values["database_schema"] = DISPATCH_SCHEMA
        self.settings: Settings = load_settings(None, **values)
        self._database: Database | None = None

    @property
    def database(self) -> Database:
        if self._database is None:
            raise RuntimeError(f"{self.label} is not open")
        return self._database

    async def open(self, *, fresh: bool) -> None:
        if fresh:
            await self._recreate()
        self._database = Database(self.settings)
        if fresh:
            await migrations.upgrade(self._database)

    async def _recreate(self) -> None:
        if self.storage == "SQLite":
            remove_sqlite(self.location)
            return
        engine = create_async_engine(normalise_database_url(self.location))
        try:
            async with engine.begin() as connection:
                await connection.execute(text(f"DROP SCHEMA IF EXISTS {DISPATCH_SCHEMA} CASCADE"))
                await connection.execute(text(f"CREATE SCHEMA {DISPATCH_SCHEMA}"))
        finally:
            await engine.dispose()

    async def durability(self) -> dict[str, str]:
        if self.storage == "PostgreSQL":
            return await _postgres_durability(self.settings.async_database_url)
        async with self.database.session(write=False) as session:
            journal = await session.scalar(text("PRAGMA journal_mode"))
            synchronous = await session.scalar(text("PRAGMA synchronous"))
        return {"journal_mode": str(journal), "synchronous": _SYNCHRONOUS[int(synchronous or 0)]}

    async def lease_expired_at(self) -> float | None:
        """When the reaper last took a lease back (wall-clock seconds), read off the attempt."""
        query = (
            select(JobAttempt.finished_at)
            .where(JobAttempt.outcome == "lease_expired")
            .order_by(JobAttempt.id.desc())
            .limit(1)
        )
        async with self.database.session(write=False) as session:
            finished = await session.scalar(query)
        return finished.timestamp() if finished is not None else None

    async def close(self) -> None:
        if self._database is not None:
            await self._database.dispose()
            self._database = None

    async def clear(self) -> None:
        async with self.database.session() as session:
            if self.storage == "PostgreSQL":
                await session.execute(text("TRUNCATE job_attempts, jobs"))
            else:
                await session.execute(text("DELETE FROM job_attempts"))
                await session.execute(text("DELETE FROM jobs"))

    async def pending(self) -> int:
        async with self.database.session(write=False) as session:
            query = text("SELECT count(*) FROM jobs WHERE state = 'available'")
            return int(await session.scalar(query) or 0)

    async def enqueue(self, jobs: Sequence[JobArgs]) -> None:
        specs = [service.JobSpec(kind=NOOP_KIND, args=args, queue=QUEUE) for args in jobs]
        async with self.database.session() as session:
            if len(specs) == 1:
                await service.enqueue(session, specs[0])
            else:
                await service.enqueue_many(session, specs)

    async def claim_complete(self, batch: int) -> int:
        claimed = await service.claim(
            self.database, owner="bench", queues=(QUEUE,), limit=batch, lease_seconds=60.0
        )
        if batch == 1 and claimed:
            settled = await service.complete(self.database, claimed[0].id, claimed[0].lease_token)
            done = 1 if settled else 0
        elif claimed:
            completions = [service.Completion(job.id, job.lease_token) for job in claimed]
            done = len(await service.complete_many(self.database, completions))
        else:
            return 0
        if done != len(claimed):
            raise RuntimeError(f"{self.label}: {len(claimed) - done} completions were refused")
        return done

    async def run_worker(self, log: StartLog, stop: asyncio.Event, options: WorkerOptions) -> None:
        registry = Registry()

        @registry.register(NOOP_KIND)
        async def noop(context: JobContext, args: dict[str, Any]) -> HandlerResult:
            log.record(args, context.job.attempt)
            if args.get("hang") and context.job.attempt == 1:
                await asyncio.sleep(HANG_SECONDS)  # killed mid-job by the crash drill
            return None

        overrides: dict[str, Any] = {"concurrency": options.concurrency, "queues": (QUEUE,)}
        if options.lease_seconds is not None:
            overrides["lease_seconds"] = options.lease_seconds
        if options.upkeep_seconds is not None:
            overrides["upkeep_interval"] = options.upkeep_seconds
        config = worker_config(self.settings, **overrides)
        await Worker(self.database, registry, config).run(stop)


class ProcrastinateSide(Side):
    """Procrastinate 3 on a PostgreSQL database of its own, through its psycopg connector."""

    key = "procrastinate"
    label = "Procrastinate"
    storage = "PostgreSQL"
    batch_claim = False

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url  # any database on the server; ours is created beside it
        url = make_url(admin_url).set(database=PROCRASTINATE_DATABASE)
        self.url = url.render_as_string(hide_password=False)
        self._log = StartLog()
        self._worker_id: int | None = None
        connector = PsycopgConnector(conninfo=self.url, min_size=1, max_size=POOL_SIZE)
        self.app = App(connector=connector)

        @self.app.task(name=NOOP_KIND, queue=QUEUE)
        async def noop(seq: int, at: float) -> None:
            self._log.record({"seq": seq, "at": at})

        self.task = noop

    async def open(self, *, fresh: bool) -> None:
        if fresh:
            async with await psycopg.AsyncConnection.connect(
                self.admin_url, autocommit=True
            ) as admin:
                name = sql.Identifier(PROCRASTINATE_DATABASE)
                await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
                await admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
        await self.app.open_async()
        if fresh:
            await self.app.schema_manager.apply_schema_async()

    async def durability(self) -> dict[str, str]:
        return await _postgres_durability(normalise_database_url(self.url))

    async def close(self) -> None:
        await self.app.close_async()

    async def clear(self) -> None:
        # Its events and periodic-defer rows reference jobs; TRUNCATE … CASCADE takes them too.
        await self.app.connector.execute_query_async("TRUNCATE procrastinate_jobs CASCADE")
        self._worker_id = None

    async def pending(self) -> int:
        row = await self.app.connector.execute_query_one_async(
            "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'todo'"
        )
        return int(row["n"])

    async def enqueue(self, jobs: Sequence[JobArgs]) -> None:
        if len(jobs) == 1:
            await self.task.defer_async(**jobs[0])
        else:
            await self.task.batch_defer_async(*jobs)

    async def claim_complete(self, batch: int) -> int:
        if batch != 1:
            raise Unsupported("Procrastinate's job manager fetches one job at a time")
        manager = self.app.job_manager
        if self._worker_id is None:  # fetch_job records the worker holding the job
            self._worker_id = await manager.register_worker()
        job = await manager.fetch_job(queues=[QUEUE], worker_id=self._worker_id)
        if job is None:
            return 0
        await manager.finish_job(job, status=Status.SUCCEEDED, delete_job=False)
        return 1

    async def run_worker(self, log: StartLog, stop: asyncio.Event, options: WorkerOptions) -> None:
        self._log = log
        worker = self.app.run_worker_async(
            queues=[QUEUE], concurrency=options.concurrency, install_signal_handlers=False
        )
        await run_until(worker, stop)  # cancelling run_worker_async is its graceful stop


class HueySide(Side):
    """Huey's ``SqliteHuey`` with ``fsync=True``; its API is synchronous, so calls block."""

    key = "huey"
    label = "Huey (SQLite, fsync)"
    storage = "SQLite"
    batch_enqueue = False
    batch_claim = False

    def __init__(self, path: str) -> None:
        self.path = path
        self._log = StartLog()
        self.huey: Any = None
        self.task: Any = None

    async def open(self, *, fresh: bool) -> None:
        if fresh:
            remove_sqlite(self.path)
        self.huey = SqliteHuey(name=HUEY_NAME, filename=self.path, fsync=True)

        def noop(seq: int, at: float) -> None:
            self._log.record({"seq": seq, "at": at})

        self.task = self.huey.task(name=NOOP_KIND)(noop)

    async def durability(self) -> dict[str, str]:
        ((journal,),) = self.huey.storage.sql("PRAGMA journal_mode", results=True)
        ((synchronous,),) = self.huey.storage.sql("PRAGMA synchronous", results=True)
        return {"journal_mode": str(journal), "synchronous": _SYNCHRONOUS[int(synchronous)]}

    async def close(self) -> None:
        if self.huey is not None:
            self.huey.storage.close()

    async def clear(self) -> None:
        self.huey.flush()

    async def pending(self) -> int:
        return int(self.huey.pending_count())

    async def enqueue(self, jobs: Sequence[JobArgs]) -> None:
        if len(jobs) != 1:
            raise Unsupported("Huey enqueues one task per transaction")
        self.task(**jobs[0])

    async def prefill(self, count: int) -> None:
        # The same rows through a connection with synchronous=OFF: setting up is not measured.
        fast = SqliteStorage(name=HUEY_NAME, filename=self.path, fsync=False)
        try:
            for seq in range(count):
                message = self.task.s(seq=seq, at=time.time())
                fast.enqueue(self.huey.serialize_task(message), None)
        finally:
            fast.close()

    async def claim_complete(self, batch: int) -> int:
        if batch != 1:
            raise Unsupported("Huey dequeues one task at a time")
        task = self.huey.dequeue()
        if task is None:
            return 0
        self.huey.execute(task)
        return 1

    async def run_worker(self, log: StartLog, stop: asyncio.Event, options: WorkerOptions) -> None:
        self._log = log
        consumer = self.huey.create_consumer(
            workers=options.concurrency, periodic=False, check_worker_health=False
        )
        # start() installs Huey's own signal handlers; keep ours (asyncio's, or SIGTERM's exit).
        saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        consumer.start()
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        try:
            await stop.wait()
        finally:
            await asyncio.to_thread(consumer.stop, graceful=True)


async def _postgres_durability(async_url: str) -> dict[str, str]:
    engine = create_async_engine(async_url)
    try:
        async with engine.connect() as connection:
            settings = {
                name: str(await connection.scalar(text(f"SHOW {name}")))
                for name in ("fsync", "synchronous_commit", "wal_sync_method")
            }
    finally:
        await engine.dispose()
    return settings


def make_side(key: str, *, workdir: Path, postgres_url: str) -> Side:
    """The side named ``key``; SQLite sides keep their file in ``workdir``."""
    if key == "dispatch-sqlite":
        return DispatchSide("sqlite", str(workdir / "dispatch.db"))
    if key == "dispatch-postgresql":
        return DispatchSide("postgresql", postgres_url)
    if key == "procrastinate":
        return ProcrastinateSide(postgres_url)
    if key == "huey":
        return HueySide(str(workdir / "huey.db"))
    raise ValueError(f"unknown side {key!r}; choose from {', '.join(SIDE_KEYS)}")
