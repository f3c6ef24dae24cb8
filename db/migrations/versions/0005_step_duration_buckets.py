"""Step-duration histogram kept as counters (one row per bucket), filled from the step events
already written, so that /metrics stops scanning every step event at each scrape.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the bounds when this revision was written (db/repos/events.py STEP_BUCKETS)
BOUNDS = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]


def upgrade() -> None:
    buckets = op.create_table(
        "step_duration_buckets",
        sa.Column("le", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("le"),
    )
    events = sa.table("job_events", sa.column("type", sa.String()), sa.column("duration_seconds", sa.Float()))
    label = sa.case(*((events.c.duration_seconds <= b, str(b)) for b in BOUNDS), else_="+Inf")
    rows = op.get_bind().execute(
        sa.select(label, sa.func.count(), sa.func.sum(events.c.duration_seconds))
        .where(events.c.type == "step", events.c.duration_seconds.is_not(None))
        .group_by(label)
    )
    op.bulk_insert(buckets, [{"le": le, "count": int(n), "seconds": float(total or 0.0)} for le, n, total in rows])


def downgrade() -> None:
    op.drop_table("step_duration_buckets")
