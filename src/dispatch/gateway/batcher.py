"""Group commit for ingress: requests that arrive while a commit is in flight share the next.

A lone request is written at once (no waiting window), so an idle gateway answers as
fast as one transaction allows; under load, every request that arrived during the
previous commit goes into the next one, so the commits per second stay the same while
the requests per commit grow. Each caller still gets its 202 only after the commit that
holds its task. A batch that fails on an Idempotency-Key race is retried request by
request, so one conflict never fails its neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog
from sqlalchemy.exc import IntegrityError

from dispatch.db.engine import Database
from dispatch.gateway import ingest
from dispatch.gateway.ingest import Accepted, Request

log = structlog.get_logger(__name__)

MAX_BATCH = 256


@dataclass
class _Waiting:
    request: Request
    future: asyncio.Future[Accepted]


class IngestBatcher:
    def __init__(self, database: Database, default_max_attempts: int, queue_name: str) -> None:
        self.database = database
        self.default_max_attempts = default_max_attempts
        self.queue_name = queue_name
        self._waiting: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flushing: list[_Waiting] = []

    async def submit(self, request: Request) -> Accepted:
        """Store ``request`` with whatever else is waiting; returns once it is committed."""
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(request, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="gateway.ingest_batcher")
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                self._flushing = self._waiting[:MAX_BATCH]
                del self._waiting[:MAX_BATCH]
                await self._flush(self._flushing)
                self._flushing = []

    async def _flush(self, batch: list[_Waiting]) -> None:
        requests = [item.request for item in batch]
        try:
            async with self.database.session() as session:
                results = await ingest.store_many(
                    session, requests, self.default_max_attempts, self.queue_name
                )
        except IntegrityError:
            await self._one_by_one(batch)
            return
        except Exception as exc:  # the database is down: every caller gets the error
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        for item, accepted in zip(batch, results, strict=True):
            if not item.future.done():  # a caller that went away still has its task stored
                item.future.set_result(accepted)

    async def _one_by_one(self, batch: list[_Waiting]) -> None:
        for item in batch:
            try:
                accepted = await ingest.accept(
                    self.database,
                    item.request,
                    default_max_attempts=self.default_max_attempts,
                    queue_name=self.queue_name,
                )
            except Exception as exc:
                if not item.future.done():
                    item.future.set_exception(exc)
            else:
                if not item.future.done():
                    item.future.set_result(accepted)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for item in [*self._flushing, *self._waiting]:
            if not item.future.done():
                item.future.set_exception(RuntimeError("the gateway is shutting down"))
        self._waiting.clear()
        self._flushing = []
