"""Datasets keep the upload as sent and the canonical file jobs read (both sha256s), and the
column mapping given at upload; a job may name a hub dataset instead of an upload.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("canonical_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("canonical_format", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("columns", sa.JSON(), nullable=True))
    # every upload so far was a .txt or .jsonl file, which is its own canonical file
    datasets = sa.table(
        "datasets",
        sa.column("sha256", sa.String()),
        sa.column("format", sa.String()),
        sa.column("canonical_sha256", sa.String()),
        sa.column("canonical_format", sa.String()),
        sa.column("columns", sa.JSON()),
    )
    op.get_bind().execute(
        datasets.update().values(canonical_sha256=datasets.c.sha256, canonical_format=datasets.c.format, columns={})
    )
    with op.batch_alter_table("datasets") as batch:
        batch.alter_column("canonical_sha256", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("canonical_format", existing_type=sa.String(length=16), nullable=False)
        batch.alter_column("columns", existing_type=sa.JSON(), nullable=False)
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("hub_dataset", sa.JSON(), nullable=True))
        batch.alter_column("dataset_id", existing_type=sa.String(length=40), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("dataset_id", existing_type=sa.String(length=40), nullable=False)
        batch.drop_column("hub_dataset")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("columns")
        batch.drop_column("canonical_format")
        batch.drop_column("canonical_sha256")
