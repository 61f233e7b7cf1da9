"""Attempts carry their job's spread key

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

A node's claim skips jobs whose spread key it already holds, made or failed. Read through
the sibling jobs, that check scanned every attempt of the node for each candidate (a
node's history grows all day); with the key on the attempt it is one probe of an index
on (worker, spread_key). Existing attempts get their job's key.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("spread_key", sa.String(length=200), nullable=True))
    op.execute(
        "UPDATE job_attempts SET spread_key = "
        "(SELECT jobs.spread_key FROM jobs WHERE jobs.id = job_attempts.job_id) "
        "WHERE job_id IN (SELECT id FROM jobs WHERE spread_key IS NOT NULL)"
    )
    with op.batch_alter_table("job_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_job_attempts_spread",
            ["worker", "spread_key"],
            unique=False,
            postgresql_where=sa.text("spread_key IS NOT NULL"),
            sqlite_where=sa.text("spread_key IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("job_attempts", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_job_attempts_spread",
            postgresql_where=sa.text("spread_key IS NOT NULL"),
            sqlite_where=sa.text("spread_key IS NOT NULL"),
        )
        batch_op.drop_column("spread_key")
