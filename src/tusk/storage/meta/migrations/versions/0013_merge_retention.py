"""Merge commits and retention rules: a commit's second parent (the commit merged into its
branch by ``tusk merge``), and per repo the rules ``tusk gc`` expires old commits by.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("commits", sa.Column("merge_parent", sa.String(32), nullable=True))
    op.create_index("ix_commits_merge_parent", "commits", ["merge_parent"])
    op.create_table(
        "retention",
        sa.Column("repo", sa.String(127), primary_key=True),
        sa.Column("keep_last", sa.Integer, nullable=True),
        sa.Column("keep_within", sa.Float, nullable=True),
        sa.Column("keep_tagged", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("retention")
    op.drop_index("ix_commits_merge_parent", "commits")
    op.drop_column("commits", "merge_parent")
