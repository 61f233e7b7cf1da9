"""Alembic environment: uses the caller's connection, or builds one from Settings."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

import dispatch.models  # noqa: F401  (registers every table on Base.metadata)
from dispatch.config import load_settings
from dispatch.db.base import Base
from dispatch.db.engine import Database
from dispatch.models.unmanaged import managed_by_models

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=managed_by_models,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_settings() -> None:
    database = Database(load_settings())
    try:
        async with database.write_engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await database.dispose()


shared = context.config.attributes.get("connection")
if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `dispatch migrate`")
if shared is not None:
    _run(shared)
else:
    asyncio.run(_run_from_settings())
