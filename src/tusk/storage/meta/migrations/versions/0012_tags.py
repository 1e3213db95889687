"""Tags: a name for one commit of a repo (``repo@v1``), which retention keeps.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tags",
        sa.Column("repo", sa.String(127), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("commit_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_tags_commit", "tags", ["commit_id"])


def downgrade() -> None:
    op.drop_index("ix_tags_commit", "tags")
    op.drop_table("tags")
