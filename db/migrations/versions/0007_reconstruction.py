"""The reconstruction stage: each checkpoint's variant, refit-tensor sha256 and un-reconstructed
metrics; the job's phase (pruning, reconstruction) and the fraction of that phase done.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("reconstruction", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("reconstruction_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("unreconstructed_metrics", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("phase", sa.String(length=20), nullable=False, server_default="pruning"))
        batch.add_column(sa.Column("phase_progress", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("phase_progress")
        batch.drop_column("phase")
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("unreconstructed_metrics")
        batch.drop_column("reconstruction_sha256")
        batch.drop_column("reconstruction")
