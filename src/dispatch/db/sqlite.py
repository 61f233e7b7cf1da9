"""aiosqlite with one trip to the driver thread per statement, not four.

SQLAlchemy's aiosqlite adapter creates a cursor, executes, fetches and closes it
as four separate calls, each a hand-off to aiosqlite's thread and back; under
load those hand-offs (and the GIL ping-pong they cause) cost more than SQLite
itself. This adapter runs the whole statement as one function on that thread,
skips COMMIT/ROLLBACK calls when SQLite reports no open transaction, and sends a
transaction's ``BEGIN`` along with its first statement instead of on a trip of its own.

It is passed to ``create_async_engine(module=...)``; everything else is
SQLAlchemy's own aiosqlite dialect. Server-side (streaming) cursors keep the
stock behaviour.
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

_Result = tuple[Any, list[Any], int, int | None]


def _run_one(connection: sqlite3.Connection, operation: str, parameters: Any) -> _Result:
    cursor = connection.cursor()
    try:
        cursor.execute(operation, parameters if parameters is not None else ())
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _begin_then(
    connection: sqlite3.Connection, begin: str, function: Any, operation: str, parameters: Any
) -> _Result:
    connection.execute(begin)
    result: _Result = function(connection, operation, parameters)
    return result


def _run_many(connection: sqlite3.Connection, operation: str, parameters: Any) -> _Result:
    cursor = connection.cursor()
    try:
        cursor.executemany(operation, parameters)
        return cursor.description, [], cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor whose results arrive in full with the one call that runs the statement."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # No driver cursor is opened here: that would be a trip of its own.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    async def _trip(self, function: Any, operation: str, parameters: Any) -> None:
        driver: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        adapted: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        async with adapted._execute_mutex:
            begin, adapted.pending_begin = adapted.pending_begin, None
            call: tuple[Any, ...]
            if begin is None:
                call = (function, driver._conn, operation, parameters)
            else:
                call = (_begin_then, driver._conn, begin, function, operation, parameters)
            result: _Result = await driver._execute(*call)  # type: ignore[no-untyped-call]
        self._description, rows, self._rowcount, self._lastrowid = result
        self._rows = collections.deque(rows)

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._trip(_run_one, operation, parameters)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._trip(_run_many, operation, seq_of_parameters)

    async def _async_soft_close(self) -> None:
        return None

    def close(self) -> None:
        self._rows.clear()


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("pending_begin",)
    _cursor_cls = OneTripCursor  # type: ignore[assignment]

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        # The BEGIN of a transaction SQLAlchemy began, sent with the next statement.
        self.pending_begin: str | None = None

    def begin(self, statement: str) -> None:
        """Start a transaction with the next statement (one trip instead of two)."""
        self.pending_begin = statement

    def cursor(self, server_side: bool = False) -> Any:
        if server_side and self.pending_begin is not None:
            # A streaming cursor does not go through _trip: send the BEGIN on its own.
            begin, self.pending_begin = self.pending_begin, None
            await_(self._connection.execute(begin))
        return super().cursor(server_side)

    def _in_transaction(self) -> bool:
        driver: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        return driver._connection is not None and driver.in_transaction

    def commit(self) -> None:
        self.pending_begin = None
        if self._in_transaction():
            super().commit()

    def rollback(self) -> None:
        self.pending_begin = None
        if self._in_transaction():
            super().rollback()


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DB-API module handed to SQLAlchemy: connections come back as OneTripConnection."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        connection = self.aiosqlite.connect(*arg, **kw)
        connection._thread.daemon = True  # as SQLAlchemy does: never block interpreter exit
        return OneTripConnection(self, await_(connection))


def dbapi() -> OneTripDBAPI:
    return OneTripDBAPI(aiosqlite, sqlite3)
