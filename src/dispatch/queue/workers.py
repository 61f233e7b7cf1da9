"""The workers table: who is alive and what each is running."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch import __version__
from dispatch.db.base import utcnow
from dispatch.db.engine import Database
from dispatch.models import WorkerRecord


async def beat(
    database: Database, name: str, queues: Sequence[str], concurrency: int, running: Sequence[int]
) -> None:
    """Insert or refresh this worker's row."""
    now = utcnow()
    values = {
        "name": name,
        "hostname": socket.gethostname()[:200],
        "pid": os.getpid(),
        "version": __version__,
        "queues": list(queues),
        "concurrency": concurrency,
        "running_job_ids": sorted(running),
        "started_at": now,
        "heartbeat_at": now,
    }
    async with database.session() as session:
        insert = postgresql.insert if database.kind == "postgresql" else sqlite.insert
        statement = insert(WorkerRecord).values(values)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["name"],
                set_={"running_job_ids": values["running_job_ids"], "heartbeat_at": now},
            )
        )


async def leave(database: Database, name: str) -> None:
    async with database.session() as session:
        await session.execute(delete(WorkerRecord).where(WorkerRecord.name == name))


async def prune_silent(database: Database, silent_for: timedelta) -> int:
    """Forget workers that stopped heart-beating (their jobs' leases expire on their own)."""
    cutoff = utcnow() - silent_for
    async with database.session() as session:
        result = await session.execute(
            delete(WorkerRecord).where(WorkerRecord.heartbeat_at < cutoff)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def list_alive(session: AsyncSession) -> Sequence[WorkerRecord]:
    query = select(WorkerRecord).order_by(WorkerRecord.started_at, WorkerRecord.name)
    return (await session.scalars(query)).all()
