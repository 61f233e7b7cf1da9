"""Multi-row INSERT that returns the new ids in the order of the rows given.

SQLAlchemy's ``returning(..., sort_by_parameter_order=True)`` batches on PostgreSQL but, on
SQLite, falls back to one INSERT per row (SQLite does not promise RETURNING's row order).
SQLite does promise how it picks a new rowid: one more than the largest in the table, row by
row in VALUES order, and nothing else writes while this transaction holds the write lock.
So one multi-row INSERT, its ids sorted, gives the ids in row order.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Table, TypeDecorator, bindparam, insert, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

# From this many rows on, PostgreSQL inserts go through COPY (see _postgres_copy).
POSTGRES_COPY_FROM = 100
# Up to this many rows go in one statement; bigger inserts go in chunks of this size. A
# catalogue page (250 products) is one statement; wide rows stay under SQLite's 32,766
# parameters (SQLITE_MAX_VARIABLE_NUMBER since 3.32).
SQLITE_ROWS_PER_STATEMENT = 250
SQLITE_MAX_PARAMETERS = 32_000


def conflict_insert(session: AsyncSession, table: Any) -> Any:
    """The database's own INSERT for ``table``, which has ``on_conflict_do_nothing``/``_update``."""
    dialect = session.get_bind().dialect.name
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


@functools.lru_cache(maxsize=256)
def _sqlite_insert(
    table: Table, keys: tuple[str, ...], count: int, dialect: Dialect
) -> tuple[str, tuple[Callable[[Any], Any] | None, ...]]:
    """The SQL of a ``count``-row INSERT … RETURNING id, and each key's bind processor.

    SQLAlchemy does not cache multi-row VALUES statements (it compiled one per call, which
    cost more than the round trips saved), so the SQL is built once per shape here and run
    with ``exec_driver_sql``; values go through the column types' own bind processors.
    """
    prepare = dialect.identifier_preparer
    columns = ", ".join(prepare.format_column(table.c[key]) for key in keys)
    row = "(" + ", ".join("?" for _ in keys) + ")"
    # Only identifiers from the table's metadata and placeholders: no value is in the text.
    sql = (
        f"INSERT INTO {prepare.format_table(table)} ({columns}) "  # noqa: S608
        f"VALUES {', '.join(row for _ in range(count))} "
        f"RETURNING {prepare.format_column(table.c.id)}"
    )
    # The engine's dialect, so JSON columns use its serializer (orjson), as ORM inserts do.
    processors = tuple(
        table.c[key].type.dialect_impl(dialect).bind_processor(dialect) for key in keys
    )
    return sql, processors


async def _postgres_copy(
    session: AsyncSession, table: Table, rows: Sequence[Mapping[str, Any]]
) -> list[int]:
    """Many rows on PostgreSQL: ids taken from the table's sequence, then one binary COPY.

    About three times cheaper per row than INSERT … RETURNING for big batches (a catalogue
    page); small batches (an ingest's few requests) keep the one-statement INSERT.
    """
    # Through SQLAlchemy, so this statement opens the session's transaction (BEGIN) and the
    # COPY below runs inside it: a rollback takes the rows back.
    ids = list(
        await session.scalars(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": table.name, "n": len(rows)},
        )
    )
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if driver is None:
        raise RuntimeError("no PostgreSQL connection under the session")
    keys = tuple(rows[0])
    dialect = connection.dialect
    processors = tuple(_copy_processor(table.c[key].type, dialect) for key in keys)
    records = [
        (
            new_id,
            *(
                process(row[key]) if process else row[key]
                for key, process in zip(keys, processors, strict=True)
            ),
        )
        for new_id, row in zip(ids, rows, strict=True)
    ]
    await driver.copy_records_to_table(table.name, records=records, columns=["id", *keys])
    return ids


@functools.lru_cache(maxsize=256)
def _covers_defaults(table: Table, keys: tuple[str, ...]) -> bool:
    """COPY applies no Python-side column defaults: only rows that set every such column."""
    return all(
        column.name in keys
        for column in table.columns
        if column.default is not None and not column.primary_key
    )


def _copy_processor(type_: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """COPY takes Python values as asyncpg encodes them: JSON columns as serialised text."""
    if isinstance(type_, TypeDecorator):
        return None  # UTCDateTime and the like hand asyncpg an aware datetime already
    if isinstance(type_, JSON):
        serialise = dialect._json_serializer or json.dumps
        return lambda value: None if value is None else serialise(value)
    return None


def _remembered(process: Callable[[Any], Any], memo: dict[datetime, Any]) -> Callable[[Any], Any]:
    """A bind processor that formats each timestamp once per insert.

    The rows of a batch share their ``now``: SQLite's datetime formatting (in Python) ran
    for every one of the ten or so timestamp cells a catalogue product writes.
    """

    def bind(value: Any) -> Any:
        if type(value) is datetime:
            found = memo.get(value)
            if found is None:
                found = memo[value] = process(value)
            return found
        return process(value)

    return bind


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
        if (
            len(rows) >= POSTGRES_COPY_FROM
            and not postgres_also_returning
            and _covers_defaults(table, tuple(rows[0]))
        ):
            return await _postgres_copy(session, table, rows)
        statement = insert(table).returning(
            table.c.id, *postgres_also_returning, sort_by_parameter_order=True
        )
        return [row.id for row in await session.execute(statement, list(rows))]
    connection = await session.connection()
    keys = tuple(rows[0])
    ids: list[int] = []
    memo: dict[datetime, Any] = {}
    per_statement = max(1, min(SQLITE_ROWS_PER_STATEMENT, SQLITE_MAX_PARAMETERS // len(keys)))
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        sql, processors = _sqlite_insert(table, keys, len(chunk), connection.dialect)
        processors = tuple(_remembered(p, memo) if p is not None else None for p in processors)
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


async def update_by_id(
    session: AsyncSession, table: Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Update rows by primary key, each with its own values (rows may set different columns).

    On PostgreSQL each group of rows setting the same columns is one ``UPDATE … FROM
    unnest(…)`` over arrays, instead of one execution per row; elsewhere (SQLite, in
    process) SQLAlchemy's executemany is as cheap.
    """
    if not rows:
        return
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(key for key in row if key != "id"), []).append(row)
    if session.get_bind().dialect.name == "sqlite":
        for keys, members in groups.items():
            statement = (
                update(table)
                .where(table.c.id == bindparam("row_id"))
                .values({key: bindparam(key) for key in keys})
            )
            values = [{"row_id": row["id"], **{k: row[k] for k in keys}} for row in members]
            await session.execute(statement, values)
        return
    connection = await session.connection()
    for keys, members in groups.items():
        sql, processors = _unnest_update(table, keys, connection.dialect)
        params: dict[str, Any] = {"ids": [row["id"] for row in members]}
        for index, (key, process) in enumerate(zip(keys, processors, strict=True)):
            params[f"c{index}"] = [process(row[key]) if process else row[key] for row in members]
        await session.execute(text(sql), params)


@functools.lru_cache(maxsize=128)
def _unnest_update(
    table: Table, keys: tuple[str, ...], dialect: Dialect
) -> tuple[str, tuple[Callable[[Any], Any] | None, ...]]:
    """The SQL of one unnest-driven UPDATE for ``keys``, and each value's preparation."""
    prepare = dialect.identifier_preparer
    arrays = ["CAST(:ids AS BIGINT[])"]
    columns = ["id"]
    sets = []
    for index, key in enumerate(keys):
        column = table.c[key]
        sql_type = column.type.compile(dialect=dialect)
        arrays.append(f"CAST(:c{index} AS {sql_type}[])")
        columns.append(f"c{index}")
        sets.append(f"{prepare.format_column(column)} = v.c{index}")
    name = prepare.format_table(table)
    # Only identifiers from the table's metadata and placeholders: no value is in the text.
    sql = (
        f"UPDATE {name} SET {', '.join(sets)} "  # noqa: S608
        f"FROM unnest({', '.join(arrays)}) AS v({', '.join(columns)}) "
        f"WHERE {name}.id = v.id"
    )
    processors = tuple(_copy_processor(table.c[key].type, dialect) for key in keys)
    return sql, processors
