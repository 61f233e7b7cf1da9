"""Task search: one lower-cased text per task, matched by substring through an index.

PostgreSQL indexes ``search_text`` with a trigram GIN index (``pg_trgm``), which serves
``LIKE '%term%'``; SQLite keeps an FTS5 table with the trigram tokenizer in step with it
by triggers. Terms shorter than three characters cannot use trigrams and fall back to a
scan, as do databases where the index could not be created.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, literal_column, select, text

from dispatch.models import GatewayTask

MAX_SEARCH_TEXT = 20_000
FTS_TABLE = "gateway_tasks_fts"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def search_text(parts: Iterable[Any]) -> str:
    """What search matches for a task: its fields and payloads, lower-cased, capped."""
    return " ".join(_text(part) for part in parts if part not in (None, ""))[
        :MAX_SEARCH_TEXT
    ].lower()


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def matches(term: str, dialect: str) -> ColumnElement[bool]:
    """The condition that finds tasks whose search text contains ``term``."""
    needle = term.strip().lower()
    if dialect == "sqlite" and len(needle) >= 3:
        quoted = '"' + needle.replace('"', '""') + '"'  # an FTS5 string: the exact substring
        rowid: ColumnElement[int] = literal_column("rowid")
        fts = (
            select(rowid)
            .select_from(text(FTS_TABLE))
            .where(text(f"{FTS_TABLE} MATCH :fts_query").bindparams(fts_query=quoted))
        )
        return GatewayTask.id.in_(fts)
    return GatewayTask.search_text.like(f"%{escape_like(needle)}%", escape="\\")
