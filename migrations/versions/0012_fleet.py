"""Fleet: assets to rescue, their copies, the priorizer's last ranking; spread keys

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

Seed 004's data rescue on the queue's remote nodes: each copy of an asset is a job, and
jobs sharing a spread key (an asset's copies) go to different nodes. Nodes get seed 004's
description; attempts an index by worker and start (a rescue node's daily cap).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dispatch.db.base

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rescue_assets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ds_id", sa.String(length=100), nullable=False),
        sa.Column("res_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("size_mb", sa.Float(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("checksum", sa.String(length=200), nullable=True),
        sa.Column("replication_target", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active', 'retired')", name=op.f("ck_rescue_assets_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rescue_assets")),
        sa.UniqueConstraint("ds_id", "res_id", name="uq_rescue_assets_ds_res"),
    )
    with op.batch_alter_table("rescue_assets", schema=None) as batch_op:
        batch_op.create_index("ix_rescue_assets_priority", ["priority", "id"], unique=False)

    op.create_table(
        "rescue_rankings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("fetched_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rescue_rankings")),
    )
    op.create_table(
        "rescue_copies",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("replica", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("node_id", sa.String(length=40), nullable=True),
        sa.Column("assigned_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("rescued_at", dispatch.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("magnet_link", sa.Text(), nullable=True),
        sa.Column("checksum", sa.String(length=200), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("assignments", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "state IN ('waiting', 'assigned', 'rescued', 'failed')",
            name=op.f("ck_rescue_copies_state"),
        ),
        sa.ForeignKeyConstraint(
            ["asset_id"],
            ["rescue_assets.id"],
            name=op.f("fk_rescue_copies_asset_id_rescue_assets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rescue_copies")),
        sa.UniqueConstraint("asset_id", "replica", name="uq_rescue_copies_asset_replica"),
    )
    with op.batch_alter_table("rescue_copies", schema=None) as batch_op:
        batch_op.create_index("ix_rescue_copies_job", ["job_id"], unique=False)
        batch_op.create_index("ix_rescue_copies_node", ["node_id", "state"], unique=False)
        batch_op.create_index("ix_rescue_copies_rescued", ["rescued_at"], unique=False)

    with op.batch_alter_table("job_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_job_attempts_worker_started", ["worker", "started_at"], unique=False
        )

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("spread_key", sa.String(length=200), nullable=True))
        batch_op.create_index(
            "ix_jobs_spread",
            ["spread_key"],
            unique=False,
            postgresql_where=sa.text("spread_key IS NOT NULL"),
            sqlite_where=sa.text("spread_key IS NOT NULL"),
        )

    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("description")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_jobs_spread",
            postgresql_where=sa.text("spread_key IS NOT NULL"),
            sqlite_where=sa.text("spread_key IS NOT NULL"),
        )
        batch_op.drop_column("spread_key")

    with op.batch_alter_table("job_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_job_attempts_worker_started")

    with op.batch_alter_table("rescue_copies", schema=None) as batch_op:
        batch_op.drop_index("ix_rescue_copies_rescued")
        batch_op.drop_index("ix_rescue_copies_node")
        batch_op.drop_index("ix_rescue_copies_job")

    op.drop_table("rescue_copies")
    op.drop_table("rescue_rankings")
    with op.batch_alter_table("rescue_assets", schema=None) as batch_op:
        batch_op.drop_index("ix_rescue_assets_priority")

    op.drop_table("rescue_assets")
