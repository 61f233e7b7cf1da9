"""Database objects that migrations make outside the ORM, and the filter that hides them.

Search indexes (SQLite FTS5 tables and their triggers, PostgreSQL trigram and tsvector
indexes, a generated tsvector column) have no ORM model; the migration drift check must
not report them as extra.
"""

from __future__ import annotations

UNMANAGED_PREFIXES = (
    "gateway_tasks_fts",  # migration 0007: FTS5 trigram table of task search (SQLite)
    "ix_gateway_tasks_search",  # migration 0007: trigram GIN index (PostgreSQL)
    "catalog_products_fts",  # migration 0009: FTS5 table of product search (SQLite)
    "ix_catalog_products_search",  # migration 0009: GIN index of search_vector (PostgreSQL)
    "search_vector",  # migration 0009: generated tsvector column (PostgreSQL)
)


def managed_by_models(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic ``include_object``: skip the objects listed above."""
    return name is None or not name.startswith(UNMANAGED_PREFIXES)
