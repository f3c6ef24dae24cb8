"""A job's pruning settings as one JSON document (the engine's PruneSettings), instead of one
column per setting: the service builds the settings once and the worker rebuilds them from it.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {
    "objective": sa.String(length=40),
    "method": sa.String(length=40),
    "importance": sa.String(length=40),
    "dtype": sa.String(length=16),
    "targets": sa.JSON(),
    "steps": sa.Integer(),
    "samples": sa.Integer(),
    "seq_len": sa.Integer(),
    "seed": sa.Integer(),
}


def _jobs(*columns: str) -> sa.Table:
    return sa.table("jobs", sa.column("id", sa.String()), *(sa.column(c, COLUMNS.get(c, sa.JSON())) for c in columns))


def upgrade() -> None:
    op.add_column("jobs", sa.Column("settings", sa.JSON(), nullable=True))
    connection = op.get_bind()
    old = _jobs(*COLUMNS)
    new = _jobs("settings")
    for row in connection.execute(sa.select(old)).mappings():
        settings = {name: row[name] for name in COLUMNS}
        connection.execute(new.update().where(new.c.id == row["id"]).values(settings=settings))
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("settings", existing_type=sa.JSON(), nullable=False)
        for name in COLUMNS:
            batch.drop_column(name)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name, type_ in COLUMNS.items():
            batch.add_column(sa.Column(name, type_, nullable=True))
    connection = op.get_bind()
    table = _jobs("settings", *COLUMNS)
    for row in connection.execute(sa.select(table.c.id, table.c.settings)).mappings():
        values = {name: row["settings"].get(name) for name in COLUMNS}
        connection.execute(table.update().where(table.c.id == row["id"]).values(**values))
    with op.batch_alter_table("jobs") as batch:
        for name, type_ in COLUMNS.items():
            batch.alter_column(name, existing_type=type_, nullable=False)
        batch.drop_column("settings")
