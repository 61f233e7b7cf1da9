"""Watch: users' Discogs accounts, OAuth states, import jobs and imported items

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

Seed 003's Discogs integration: a linked account per user and provider (tokens sealed),
the OAuth 1.0a authorisations in progress, import jobs (one in flight per user) and the
wantlist / collection items each import turned into watch releases.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dispatch.db.base

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "watch_account_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("external_user_id", sa.String(length=255), nullable=False),
        sa.Column("auth", sa.String(length=16), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("access_secret", sa.Text(), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("token_metadata", sa.JSON(), nullable=False),
        sa.Column("connected_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_import_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "auth IN ('oauth1', 'personal', 'none')", name=op.f("ck_watch_account_links_auth")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_watch_account_links_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watch_account_links")),
        sa.UniqueConstraint("user_id", "provider", name="uq_watch_account_links_user_provider"),
    )
    op.create_table(
        "watch_import_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=True),
        sa.Column("page", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("processed_count", sa.Integer(), nullable=False),
        sa.Column("imported_count", sa.Integer(), nullable=False),
        sa.Column("created_count", sa.Integer(), nullable=False),
        sa.Column("updated_count", sa.Integer(), nullable=False),
        sa.Column("removed_count", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "source IN ('wantlist', 'collection', 'both')", name=op.f("ck_watch_import_jobs_source")
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed')",
            name=op.f("ck_watch_import_jobs_status"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_watch_import_jobs_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watch_import_jobs")),
    )
    with op.batch_alter_table("watch_import_jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_watch_import_jobs_user_created", ["user_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "uq_watch_import_jobs_in_flight",
            ["user_id", "provider"],
            unique=True,
            postgresql_where=sa.text("status IN ('queued', 'running')"),
            sqlite_where=sa.text("status IN ('queued', 'running')"),
        )

    op.create_table(
        "watch_oauth_states",
        sa.Column("state", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("request_token", sa.String(length=255), nullable=False),
        sa.Column("request_secret", sa.Text(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_watch_oauth_states_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("state", name=op.f("pk_watch_oauth_states")),
    )
    with op.batch_alter_table("watch_oauth_states", schema=None) as batch_op:
        batch_op.create_index("ix_watch_oauth_states_token", ["request_token"], unique=False)

    op.create_table(
        "watch_imported_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column(
            "external_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("master_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("artist", sa.String(length=300), nullable=True),
        sa.Column("year", sa.Integer(), nullable=True),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("created_rule", sa.Boolean(), nullable=False),
        sa.Column("paused_rule", sa.Boolean(), nullable=False),
        sa.Column("import_job_id", sa.Integer(), nullable=True),
        sa.Column("first_seen_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("removed_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["watch_rules.id"],
            name=op.f("fk_watch_imported_items_rule_id_watch_rules"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_watch_imported_items_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watch_imported_items")),
        sa.UniqueConstraint(
            "user_id", "provider", "source", "external_id", name="uq_watch_imported_items_once"
        ),
    )
    with op.batch_alter_table("watch_imported_items", schema=None) as batch_op:
        batch_op.create_index("ix_watch_imported_items_rule", ["rule_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("watch_imported_items", schema=None) as batch_op:
        batch_op.drop_index("ix_watch_imported_items_rule")

    op.drop_table("watch_imported_items")
    with op.batch_alter_table("watch_oauth_states", schema=None) as batch_op:
        batch_op.drop_index("ix_watch_oauth_states_token")

    op.drop_table("watch_oauth_states")
    with op.batch_alter_table("watch_import_jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_watch_import_jobs_in_flight",
            postgresql_where=sa.text("status IN ('queued', 'running')"),
            sqlite_where=sa.text("status IN ('queued', 'running')"),
        )
        batch_op.drop_index("ix_watch_import_jobs_user_created")

    op.drop_table("watch_import_jobs")
    op.drop_table("watch_account_links")
