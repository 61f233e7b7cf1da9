"""Task search text with its index; admin UI sessions of gateway clients

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

The search index lives outside the ORM (the drift check ignores it, see migrations/env.py):
PostgreSQL gets a trigram GIN index from pg_trgm, SQLite an FTS5 table with the trigram
tokenizer kept in step by triggers. Where pg_trgm cannot be created (no privilege), the
migration goes on without the index and search scans instead.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL = """
UPDATE gateway_tasks SET search_text = lower(substr(
    coalesce(ref, '') || ' ' || coalesce(scope, '') || ' ' || client_name || ' ' ||
    endpoint_path || ' ' || message_id || ' ' || coalesce(resource_name, '') || ' ' ||
    CAST(source_payload AS TEXT) || ' ' || coalesce(CAST(target_payload AS TEXT), ''),
    1, 20000))
"""

_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE gateway_tasks_fts USING fts5("
    "search_text, content='gateway_tasks', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER gateway_tasks_fts_insert AFTER INSERT ON gateway_tasks BEGIN "
    "INSERT INTO gateway_tasks_fts(rowid, search_text) VALUES (new.id, new.search_text); END",
    "CREATE TRIGGER gateway_tasks_fts_delete AFTER DELETE ON gateway_tasks BEGIN "
    "INSERT INTO gateway_tasks_fts(gateway_tasks_fts, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); END",
    "CREATE TRIGGER gateway_tasks_fts_update AFTER UPDATE OF search_text ON gateway_tasks BEGIN "
    "INSERT INTO gateway_tasks_fts(gateway_tasks_fts, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); "
    "INSERT INTO gateway_tasks_fts(rowid, search_text) VALUES (new.id, new.search_text); END",
    "INSERT INTO gateway_tasks_fts(gateway_tasks_fts) VALUES ('rebuild')",
]


def _postgres_index() -> None:
    bind = op.get_bind()
    with bind.begin_nested() as savepoint:
        try:
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        except sa.exc.DBAPIError:
            savepoint.rollback()
            return
    schema = bind.execute(
        sa.text(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'"
        )
    ).scalar_one()
    bind.execute(
        sa.text(
            "CREATE INDEX ix_gateway_tasks_search ON gateway_tasks "
            f"USING gin (search_text {schema}.gin_trgm_ops)"
        )
    )


def upgrade() -> None:
    with op.batch_alter_table("gateway_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("search_text", sa.Text(), nullable=False, server_default=""))
    op.execute(_BACKFILL)
    with op.batch_alter_table("admin_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_admin_sessions_client_id"), ["client_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_admin_sessions_client_id_gateway_clients"),
            "gateway_clients",
            ["client_id"],
            ["id"],
            ondelete="CASCADE",
        )
    if op.get_bind().dialect.name == "postgresql":
        _postgres_index()
    else:
        for statement in _SQLITE_FTS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_gateway_tasks_search")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS gateway_tasks_fts_{name}")
        op.execute("DROP TABLE IF EXISTS gateway_tasks_fts")
    with op.batch_alter_table("admin_sessions", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_admin_sessions_client_id_gateway_clients"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_admin_sessions_client_id"))
        batch_op.drop_column("client_id")
    with op.batch_alter_table("gateway_tasks", schema=None) as batch_op:
        batch_op.drop_column("search_text")
