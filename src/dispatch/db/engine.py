"""Engines and session scopes for SQLite (aiosqlite) and PostgreSQL (asyncpg).

On SQLite every connection runs in WAL mode with a busy timeout and
``synchronous=NORMAL``; write sessions open their transaction with
``BEGIN IMMEDIATE`` so two writers queue on the busy timeout instead of failing
half-way with ``SQLITE_BUSY`` when a read transaction tries to upgrade.

Read sessions on SQLite issue no ``BEGIN``: each statement is its own snapshot,
which is what PostgreSQL's default READ COMMITTED gives too, and it saves three
round trips to aiosqlite's thread per request. Sessions always end their
transaction, so the pool's extra reset-on-return rollback is skipped on SQLite.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from dispatch.config import DatabaseKind, Settings
from dispatch.db import sqlite

_BEGIN_OPTION = "dispatch_sqlite_begin"
_CHECKED_IN = "dispatch_checked_in_at"
PING_AFTER_IDLE_SECONDS = 2.0
_AUTOCOMMIT = "AUTOCOMMIT"


def _install_sqlite_hooks(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: object) -> None:
        # Let SQLAlchemy, not the driver, decide when a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            f"PRAGMA busy_timeout={int(busy_timeout_ms)}",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        if mode != _AUTOCOMMIT:
            # Sent with the transaction's first statement (db/sqlite.py), not on its own trip.
            connection.connection.dbapi_connection.begin(f"BEGIN {mode}")  # type: ignore[union-attr]


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Ping a pooled PostgreSQL connection before use only when it sat idle for a while.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout, and asyncpg's ping is three round
    trips (BEGIN, a query, ROLLBACK, for pgbouncer's sake): more than a whole ingest batch's
    INSERTs. A connection checked in less than ``PING_AFTER_IDLE_SECONDS`` ago was working
    then; after a database restart its first use fails, and SQLAlchemy then drops every
    older pooled connection, so one operation sees the error and the next reconnects.
    """
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get(_CHECKED_IN)
        if checked_in is not None and time.monotonic() - checked_in < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(f"pooled connection is gone: {exc}") from exc


def json_dumps(value: Any) -> str:
    """JSON columns through orjson: several times faster than the json module."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def json_loads(value: Any) -> Any:
    """The reverse; SQLite's NUMERIC affinity of a JSON column hands a number back as one."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


class Database:
    """Owns the engine and hands out sessions whose transaction commits on exit."""

    def __init__(self, settings: Settings) -> None:
        self.kind: DatabaseKind = settings.database_kind
        options: dict[str, Any] = {
            "pool_size": settings.db_pool_size,
            "json_serializer": json_dumps,
            "json_deserializer": json_loads,
        }
        options["max_overflow"] = settings.db_max_overflow
        if self.kind == "postgresql":
            server_settings = {"application_name": settings.app_name[:60]}
            if settings.database_schema:
                server_settings["search_path"] = settings.database_schema
            options["connect_args"] = {"server_settings": server_settings}
        else:
            options["pool_reset_on_return"] = None
            options["module"] = sqlite.dbapi()
        self.engine = create_async_engine(settings.async_database_url, **options)
        reader = writer = self.engine
        if self.kind == "postgresql":
            _ping_idle_connections(self.engine)
        if self.kind == "sqlite":
            _install_sqlite_hooks(self.engine, settings.sqlite_busy_timeout_ms)
            writer = self.engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
            reader = self.engine.execution_options(**{_BEGIN_OPTION: _AUTOCOMMIT})
        self._readers = async_sessionmaker(reader, expire_on_commit=False)
        self._writers = async_sessionmaker(writer, expire_on_commit=False)
        self._autocommit = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )
        self.write_engine = writer
        self.read_engine = reader  # on SQLite: no transaction, so nothing pins the WAL
        # SQLite has one writer at a time. Writers of this process queue here, in FIFO order,
        # instead of in SQLite's busy handler, which sleeps in growing steps (up to 100 ms)
        # on a pool thread and, under load, runs out its busy_timeout with "database is
        # locked". Other processes still meet the busy timeout.
        self._write_lock = asyncio.Lock() if self.kind == "sqlite" else None
        self._writer: asyncio.Task[Any] | None = None

    @asynccontextmanager
    async def session(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits when the block ends and rolls back on error."""
        factory = self._writers if write else self._readers
        task = asyncio.current_task()
        # A write session opened inside another one of the same task (after the outer one
        # committed) must not wait for itself.
        lock = self._write_lock if write and self._writer is not task else None
        if lock is not None:
            await lock.acquire()
            self._writer = task
        try:
            async with factory() as session:
                try:
                    yield session
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
        finally:
            if lock is not None:
                self._writer = None
                lock.release()

    @asynccontextmanager
    async def one_statement(self) -> AsyncIterator[AsyncSession]:
        """A session for work that is a single statement, atomic on its own.

        On PostgreSQL it runs in autocommit: no ``BEGIN`` and ``COMMIT`` round trips around
        the statement (each costs as much as the statement on a loopback connection). On
        SQLite it is an ordinary write session. Run one statement only: each statement
        commits by itself on PostgreSQL.
        """
        if self.kind != "postgresql":
            async with self.session() as session:
                yield session
            return
        async with self._autocommit() as session:
            yield session

    async def ping(self, limit_seconds: float) -> None:
        """Run ``SELECT 1`` on a pooled connection; raise if the database does not answer."""
        async with asyncio.timeout(limit_seconds), self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    def pool_status(self) -> dict[str, int]:
        """Connections in the pool: configured size, checked out, overflow."""
        pool: Any = self.engine.pool
        status: dict[str, int] = {}
        for name in ("size", "checkedout", "overflow"):
            method = getattr(pool, name, None)
            if callable(method):
                status[name] = int(method())
        return status

    async def dispose(self) -> None:
        await self.engine.dispose()
