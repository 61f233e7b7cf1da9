"""Multi-row INSERT that returns the new ids in the order of the rows given.

SQLAlchemy's ``returning(..., sort_by_parameter_order=True)`` batches on PostgreSQL but, on
SQLite, falls back to one INSERT per row (SQLite does not promise RETURNING's row order).
SQLite does promise how it picks a new rowid: one more than the largest in the table, row by
row in VALUES order, and nothing else writes while this transaction holds the write lock.
So one multi-row INSERT, its ids sorted, gives the ids in row order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

# Up to this many rows go in one statement; bigger inserts go in chunks of this size.
SQLITE_ROWS_PER_STATEMENT = 64
_SQLITE = sqlite.dialect()


@functools.lru_cache(maxsize=256)
def _sqlite_insert(
    table: Table, keys: tuple[str, ...], count: int
) -> tuple[str, tuple[Callable[[Any], Any] | None, ...]]:
    """The SQL of a ``count``-row INSERT … RETURNING id, and each key's bind processor.

    SQLAlchemy does not cache multi-row VALUES statements (it compiled one per call, which
    cost more than the round trips saved), so the SQL is built once per shape here and run
    with ``exec_driver_sql``; values go through the column types' own bind processors.
    """
    prepare = _SQLITE.identifier_preparer
    columns = ", ".join(prepare.format_column(table.c[key]) for key in keys)
    row = "(" + ", ".join("?" for _ in keys) + ")"
    # Only identifiers from the table's metadata and placeholders: no value is in the text.
    sql = (
        f"INSERT INTO {prepare.format_table(table)} ({columns}) "  # noqa: S608
        f"VALUES {', '.join(row for _ in range(count))} "
        f"RETURNING {prepare.format_column(table.c.id)}"
    )
    processors = tuple(
        table.c[key].type.dialect_impl(_SQLITE).bind_processor(_SQLITE) for key in keys
    )
    return sql, processors


async def insert_returning_ids(
    session: AsyncSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    postgres_also_returning: Sequence[Any] = (),
) -> list[int]:
    """Insert ``rows`` (all with the same keys) in the session's transaction; their new ids.

    ``postgres_also_returning``: expressions evaluated per row on PostgreSQL (say, a
    ``pg_notify``), so they need no statement of their own.
    """
    if not rows:
        return []
    if session.get_bind().dialect.name != "sqlite":
        statement = insert(table).returning(
            table.c.id, *postgres_also_returning, sort_by_parameter_order=True
        )
        return [row.id for row in await session.execute(statement, list(rows))]
    connection = await session.connection()
    keys = tuple(rows[0])
    ids: list[int] = []
    for start in range(0, len(rows), SQLITE_ROWS_PER_STATEMENT):
        chunk = rows[start : start + SQLITE_ROWS_PER_STATEMENT]
        sql, processors = _sqlite_insert(table, keys, len(chunk))
        params = tuple(
            process(row[key]) if process is not None else row[key]
            for row in chunk
            for key, process in zip(keys, processors, strict=True)
        )
        result = await connection.exec_driver_sql(sql, params)
        new = sorted(row[0] for row in result)
        if len(new) != len(chunk):
            raise RuntimeError(f"inserted {len(chunk)} rows into {table.name}, got {len(new)} ids")
        ids.extend(new)
    return ids
