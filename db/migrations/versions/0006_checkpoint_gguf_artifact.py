"""A checkpoint's second artifact: its GGUF file (sha256 and path), built on its first download
with ?format=gguf, beside the tar's sha256/artifact_path.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("gguf_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("gguf_path", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("gguf_path")
        batch.drop_column("gguf_sha256")
