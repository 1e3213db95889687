"""Protected branches: a branch that only ``tusk merge`` moves (issue 22).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "branch_protection",
        sa.Column("repo", sa.String(127), primary_key=True),
        sa.Column("branch", sa.String(63), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("branch_protection")
