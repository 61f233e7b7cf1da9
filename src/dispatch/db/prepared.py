"""Statements compiled once for PostgreSQL and run with their values only (hot paths).

SQLAlchemy compiles a Core statement, or finds it in its cache, on every execution: it
walks the whole expression to compute the cache key, and sets up the result's type
processing. For a statement of a dozen clauses that costs more than the round trip to the
database. A ``Prepared`` statement is compiled for the asyncpg dialect when it is built;
running it binds the values (with their types' processors, so a ``TypeDecorator`` still
applies) in the compiled order and hands the SQL text to the driver, which keeps its own
prepared statement for it.

The constants of the expression (``state = 'available'``) are written into the SQL, not
bound: PostgreSQL switches a prepared statement to a generic plan after a few runs, and a
generic plan can only use a partial index (``WHERE state = 'available'``) whose predicate
the SQL itself implies. Expanding parameters (``IN`` of a list) cannot be compiled ahead:
use ``= ANY(array)``.

Rows come back as the driver decodes them: JSON columns are decoded by the engine's
codec and ``timestamptz`` columns are aware datetimes, but no column ``TypeDecorator``
runs on them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter, ClauseElement


class _ConstantsInline(asyncpg.PGCompiler_asyncpg):
    """Renders anonymous bind parameters that carry a value (the expression's constants)
    as literals; named ones (``bindparam("p_now")``) stay parameters."""

    def visit_bindparam(self, bindparam: BindParameter[Any], **kw: Any) -> str:  # type: ignore[override]
        if bindparam.unique and bindparam.callable is None and not bindparam.expanding:
            kw["literal_binds"] = True
        return str(super().visit_bindparam(bindparam, **kw))  # type: ignore[no-untyped-call]


_DIALECT = asyncpg.dialect()  # type: ignore[no-untyped-call]
_DIALECT.statement_compiler = _ConstantsInline


class Prepared:
    """A Core statement compiled once for PostgreSQL; ``run`` binds values and executes."""

    def __init__(self, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        assert isinstance(compiled, SQLCompiler)
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("a prepared statement cannot hold an expanding IN: use = ANY(array)")
        self._compiled = compiled
        self.sql: str = compiled.string
        self._names: tuple[str, ...] = tuple(compiled.positiontup or ())
        self._processors: Mapping[str, Callable[[Any], Any]] = {
            name: processor
            for name, processor in compiled._bind_processors.items()
            if callable(processor)  # a tuple IN's per-element processors never occur here
        }

    def values(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional values for ``params`` (named as the statement's bind parameters)."""
        bound = self._compiled.construct_params(dict(params))
        out: list[Any] = []
        for name in self._names:
            value = bound[name]
            processor = self._processors.get(name)
            out.append(processor(value) if processor is not None else value)
        return tuple(out)

    async def run(self, connection: AsyncConnection, **params: Any) -> CursorResult[Any]:
        return await connection.exec_driver_sql(self.sql, self.values(params))
