"""Group commit: callers that arrive while a transaction is in flight share the next one.

A lone caller is served at once (there is no waiting window), so an idle process pays
one transaction per call as before; under load every caller that arrived during the
previous commit joins the next, so commits per second stay flat while the work per
commit grows. Each caller gets its own result, and only after the commit that holds its
work. When a batch fails with one of ``alone_on`` (say, a unique-key race), its items are
retried one by one through ``alone``, so one bad item never fails its neighbours.

On PostgreSQL up to ``POSTGRES_IN_FLIGHT`` batches are in flight at once, each on its own
connection: a commit there is several network round trips, and with one batch at a time a
process waits on them instead of preparing the next batch. SQLite has one writer, so one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db.engine import Database

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 256
POSTGRES_IN_FLIGHT = 3
Work = Callable[[AsyncSession, list[T]], Awaitable[list[R]]]


@dataclass
class _Waiting(Generic[T, R]):
    item: T
    future: asyncio.Future[R]


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        database: Database,
        work: Work[T, R],
        *,
        name: str,
        alone: Callable[[T], Awaitable[R]] | None = None,
        alone_on: tuple[type[BaseException], ...] = (),
        max_batch: int = MAX_BATCH,
        max_in_flight: int | None = None,
    ) -> None:
        self.database = database
        self.work = work
        self.name = name
        self.alone = alone
        self.alone_on = alone_on
        self.max_batch = max_batch
        if max_in_flight is None:
            max_in_flight = 1 if database.kind == "sqlite" else POSTGRES_IN_FLIGHT
        self.max_in_flight = max_in_flight
        self._waiting: list[_Waiting[T, R]] = []
        self._flushing: dict[asyncio.Task[None], list[_Waiting[T, R]]] = {}
        self._slots = asyncio.Semaphore(max_in_flight)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Do ``item``'s work with whatever else is waiting; returns once it is committed."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self.name)
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                await self._slots.acquire()  # callers keep joining the batch meanwhile
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                flush = asyncio.create_task(self._flush_in_slot(batch), name=self.name)
                self._flushing[flush] = batch

    async def _flush_in_slot(self, batch: list[_Waiting[T, R]]) -> None:
        try:
            await self._flush(batch)
        finally:
            self._flushing.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._slots.release()

    async def _flush(self, batch: list[_Waiting[T, R]]) -> None:
        try:
            async with self.database.session() as session:
                results = await self.work(session, [waiting.item for waiting in batch])
        except Exception as exc:
            if self.alone is not None and isinstance(exc, self.alone_on):
                await self._one_by_one(batch, self.alone)
                return
            # E.g. the database is down: every caller gets the error.
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return
        for waiting, result in zip(batch, results, strict=True):
            if not waiting.future.done():  # a caller that went away still had its work done
                waiting.future.set_result(result)

    async def _one_by_one(
        self, batch: list[_Waiting[T, R]], alone: Callable[[T], Awaitable[R]]
    ) -> None:
        for waiting in batch:
            try:
                result = await alone(waiting.item)
            except Exception as exc:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            else:
                if not waiting.future.done():
                    waiting.future.set_result(result)

    async def close(self) -> None:
        flushing = dict(self._flushing)
        tasks = [task for task in (self._task, *flushing) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        for waiting in [*(w for batch in flushing.values() for w in batch), *self._waiting]:
            if not waiting.future.done():
                waiting.future.set_exception(RuntimeError(f"{self.name} is shutting down"))
        self._waiting.clear()
        self._flushing.clear()
