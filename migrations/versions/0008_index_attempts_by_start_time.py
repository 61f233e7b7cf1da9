"""Index attempts by start time

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 21:17:28.977224
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_gateway_attempts_started", ["started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gateway_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_gateway_attempts_started")
