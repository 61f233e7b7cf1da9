"""Watch: users, watch rules, matches, events, notifications; personal keys; own requests

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

API keys get an optional owner (a user's personal key), provider requests the user
whose rule made them (seed 003's "own" provider requests), and UI sessions the user who
logged in to the watch pages.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dispatch.db.base

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("display_name", sa.String(length=120), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("external_sub", sa.String(length=255), nullable=True),
        sa.Column("preferences", sa.JSON(), nullable=False),
        sa.Column("tokens_valid_after", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deactivated_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.UniqueConstraint("external_sub", name=op.f("uq_users_external_sub")),
    )
    op.create_table(
        "deleted_subjects",
        sa.Column("external_sub", sa.String(length=255), nullable=False),
        sa.Column("deleted_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("external_sub", name=op.f("pk_deleted_subjects")),
    )
    op.create_table(
        "watch_cursors",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "last_change_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("gaps", sa.JSON(), nullable=False),
        sa.Column("updated_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_watch_cursors")),
    )
    op.create_table(
        "watch_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column(
            "product_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("change_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_watch_events_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watch_events")),
        sa.UniqueConstraint("rule_id", "product_id", "dedupe_key", name="uq_watch_events_once"),
    )
    with op.batch_alter_table("watch_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_watch_events_user_created", ["user_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "watch_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("query", sa.JSON(), nullable=False),
        sa.Column("notify", sa.JSON(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("poll_interval_seconds", sa.Integer(), nullable=False),
        sa.Column("last_run_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("next_run_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_watch_rules_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watch_rules")),
    )
    with op.batch_alter_table("watch_rules", schema=None) as batch_op:
        batch_op.create_index(
            "ix_watch_rules_due",
            ["next_run_at"],
            unique=False,
            postgresql_where=sa.text("is_active"),
            sqlite_where=sa.text("is_active"),
        )
        batch_op.create_index(
            "ix_watch_rules_user_created", ["user_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "watch_matches",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column(
            "product_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("match_context", sa.JSON(), nullable=False),
        sa.Column("first_matched_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_matched_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["catalog_products.id"],
            name=op.f("fk_watch_matches_product_id_catalog_products"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["watch_rules.id"],
            name=op.f("fk_watch_matches_rule_id_watch_rules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watch_matches")),
        sa.UniqueConstraint("rule_id", "product_id", name="uq_watch_matches_rule_product"),
    )
    with op.batch_alter_table("watch_matches", schema=None) as batch_op:
        batch_op.create_index("ix_watch_matches_product", ["product_id"], unique=False)

    op.create_table(
        "watch_notifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("due_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "gateway_task_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("is_read", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("delivered_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failed_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("read_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "channel IN ('realtime', 'email', 'webhook')",
            name=op.f("ck_watch_notifications_channel"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'queued', 'sent', 'failed', 'skipped')",
            name=op.f("ck_watch_notifications_status"),
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["watch_events.id"],
            name=op.f("fk_watch_notifications_event_id_watch_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_watch_notifications_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watch_notifications")),
        sa.UniqueConstraint("event_id", "channel", name="uq_watch_notifications_event_channel"),
    )
    with op.batch_alter_table("watch_notifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_watch_notifications_due",
            ["due_at"],
            unique=False,
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        )
        batch_op.create_index(
            "ix_watch_notifications_unread",
            ["user_id"],
            unique=False,
            postgresql_where=sa.text("is_read = false AND channel = 'realtime'"),
            sqlite_where=sa.text("is_read = false AND channel = 'realtime'"),
        )
        batch_op.create_index(
            "ix_watch_notifications_user_created", ["user_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "watch_outbound_clicks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column(
            "product_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("target_url", sa.Text(), nullable=False),
        sa.Column("created_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watch_outbound_clicks")),
    )
    with op.batch_alter_table("watch_outbound_clicks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_watch_outbound_clicks_product", ["product_id", "created_at"], unique=False
        )

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_api_keys_user_id"), ["user_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_api_keys_user_id_users"),
            "users",
            ["user_id"],
            ["id"],
            ondelete="CASCADE",
        )

    with op.batch_alter_table("catalog_provider_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ix_catalog_provider_requests_user_created", ["user_id", "created_at"], unique=False
        )

    with op.batch_alter_table("admin_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_admin_sessions_user_id"), ["user_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_admin_sessions_user_id_users"),
            "users",
            ["user_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("admin_sessions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_admin_sessions_user_id_users"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_admin_sessions_user_id"))
        batch_op.drop_column("user_id")

    with op.batch_alter_table("catalog_provider_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_catalog_provider_requests_user_created")
        batch_op.drop_column("user_id")

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_api_keys_user_id_users"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_api_keys_user_id"))
        batch_op.drop_column("user_id")

    with op.batch_alter_table("watch_notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_watch_notifications_user_created")
        batch_op.drop_index(
            "ix_watch_notifications_unread",
            postgresql_where=sa.text("is_read = false AND channel = 'realtime'"),
            sqlite_where=sa.text("is_read = false AND channel = 'realtime'"),
        )
        batch_op.drop_index(
            "ix_watch_notifications_due",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        )

    op.drop_table("watch_outbound_clicks")
    op.drop_table("watch_notifications")
    with op.batch_alter_table("watch_matches", schema=None) as batch_op:
        batch_op.drop_index("ix_watch_matches_product")

    op.drop_table("watch_matches")
    with op.batch_alter_table("watch_rules", schema=None) as batch_op:
        batch_op.drop_index("ix_watch_rules_user_created")
        batch_op.drop_index(
            "ix_watch_rules_due",
            postgresql_where=sa.text("is_active"),
            sqlite_where=sa.text("is_active"),
        )

    op.drop_table("watch_rules")
    with op.batch_alter_table("watch_events", schema=None) as batch_op:
        batch_op.drop_index("ix_watch_events_user_created")

    op.drop_table("watch_events")
    op.drop_table("watch_cursors")
    op.drop_table("deleted_subjects")
    op.drop_table("users")
