"""Waking workers when jobs are enqueued, instead of waiting for the next poll.

In-process (the embedded worker, any database): an ``after_commit`` hook tells
local workers which queues got jobs. Across processes on PostgreSQL: the enqueue
transaction sends ``NOTIFY dispatch_jobs, '<queue>'``, delivered on commit, and each
worker LISTENs on a connection of its own. Across processes on SQLite, which has no
NOTIFY: each worker watches ``PRAGMA data_version`` (it changes when another
connection commits) every 50 ms and, when it moved, looks for due jobs with one
indexed read. Polling stays as the backstop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from sqlalchemy import bindparam, event, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from dispatch.db.base import UTCDateTime, utcnow
from dispatch.db.engine import Database
from dispatch.models import Job

log = structlog.get_logger(__name__)

CHANNEL = "dispatch_jobs"
SQLITE_WATCH_SECONDS = 0.05
_PENDING = "dispatch_enqueued_queues"
Waker = Callable[[set[str]], None]
_local_wakers: set[Waker] = set()


def add_local_waker(waker: Waker) -> None:
    _local_wakers.add(waker)


def remove_local_waker(waker: Waker) -> None:
    _local_wakers.discard(waker)


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    queues = session.info.pop(_PENDING, None)
    if queues:
        for waker in list(_local_wakers):
            waker(queues)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def notify_expression(queue: Any) -> Any:
    """``pg_notify`` for a queue, to put in an INSERT's RETURNING (PostgreSQL).

    PostgreSQL delivers identical notifications of one transaction once, so a row each
    costs nothing extra and saves the statement ``note_enqueued`` would send.
    """
    return func.pg_notify(CHANNEL, queue)


async def note_enqueued(
    session: AsyncSession, queues: Iterable[str], *, notified: bool = False
) -> None:
    """Remember the queues for the local wake-up; on PostgreSQL also NOTIFY other processes
    (unless ``notified``: the INSERT returned ``notify_expression`` already)."""
    fresh = set(queues)
    session.info.setdefault(_PENDING, set()).update(fresh)
    if not notified and session.get_bind().dialect.name == "postgresql":
        for queue in sorted(fresh):
            await session.execute(select(func.pg_notify(CHANNEL, queue)))


async def listen(database: Database, wake: Waker, *, retry_seconds: float = 1.0) -> None:
    """LISTEN for enqueues on a connection of its own until cancelled (PostgreSQL only)."""
    await listen_channel(
        database,
        CHANNEL,
        lambda payload: wake({payload}),
        on_connect=lambda: wake(set()),  # anything enqueued while we were not listening
        retry_seconds=retry_seconds,
    )


async def listen_channel(
    database: Database,
    channel: str,
    on_payload: Callable[[str], None],
    *,
    on_connect: Callable[[], None] | None = None,
    retry_seconds: float = 1.0,
) -> None:
    """LISTEN on ``channel`` on a connection of its own until cancelled, reconnecting with
    backoff when the connection is lost (PostgreSQL only)."""

    def on_notify(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
        on_payload(payload)

    delay = retry_seconds
    while True:
        try:
            async with database.engine.connect() as connection:
                raw = await connection.get_raw_connection()
                driver: Any = raw.driver_connection
                lost = asyncio.Event()
                driver.add_termination_listener(lambda _connection, lost=lost: lost.set())
                await driver.add_listener(channel, on_notify)
                delay = retry_seconds
                if on_connect is not None:
                    on_connect()
                await lost.wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # callers have a fallback for the gap; try again shortly
            log.warning("db.listen_failed", channel=channel, error=str(exc), retry_in=delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


async def watch_sqlite(
    database: Database,
    queues: Iterable[str],
    wake: Waker,
    *,
    interval: float = SQLITE_WATCH_SECONDS,
    retry_seconds: float = 1.0,
) -> None:
    """Wake ``wake`` when another connection commits and due jobs wait (SQLite only).

    The watcher's connection never holds a transaction, so it does not keep the WAL
    from being checkpointed; a check costs one pragma read, plus one indexed read of
    the fetch index when something changed.
    """
    names = sorted(set(queues))
    due = (
        select(Job.id)
        .where(
            Job.queue.in_(names),
            Job.state == "available",
            Job.run_at <= bindparam("now", type_=UTCDateTime()),
        )
        .limit(1)
    )
    while True:
        try:
            async with database.read_engine.connect() as connection:
                last = None
                while True:
                    version = (await connection.execute(text("PRAGMA data_version"))).scalar()
                    if last is not None and version != last:
                        found = await connection.scalar(due, {"now": utcnow()})
                        if found is not None:
                            wake(set(names))
                    last = version
                    await asyncio.sleep(interval)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the poll covers the gap
            log.warning("queue.sqlite_watch_failed", error=str(exc), retry_in=retry_seconds)
        await asyncio.sleep(retry_seconds)
