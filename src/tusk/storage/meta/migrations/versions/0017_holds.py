"""Holds: what a running process made and will land or remove itself (a check's candidate
commit, the temporary branches of ``tusk merge --run-pipelines``), so that ``tusk gc`` can
remove what a killed process left (issue 22).

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("repo", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("owner", sa.String(512), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("holds")
