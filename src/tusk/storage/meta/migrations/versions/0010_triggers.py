"""Branch triggers: a branch that follows another branch of its repo when conditions hold
(size, commit count, cron), as Pachyderm's.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "branch_triggers",
        sa.Column("repo", sa.String(127), primary_key=True),
        sa.Column("branch", sa.String(63), primary_key=True),
        sa.Column("from_branch", sa.String(63), nullable=False),
        sa.Column("size", sa.String(64), nullable=True),
        sa.Column("commits", sa.Integer, nullable=True),
        sa.Column("cron_spec", sa.String(256), nullable=True),
        sa.Column("all_conditions", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("fired_at", sa.Float, nullable=False),
    )
    op.create_index("ix_branch_triggers_from", "branch_triggers", ["repo", "from_branch"])
