"""Checks: commands that gate commits and merges of the branches they cover, their results
per commit, and the checks a protected branch requires (issue 22).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("branch_protection") as batch:
        batch.add_column(sa.Column("require_checks", sa.Text, nullable=False, server_default="[]"))
    op.create_table(
        "checks",
        sa.Column("name", sa.String(127), primary_key=True),
        sa.Column("repo", sa.String(127), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("on_commit", sa.Boolean, nullable=False),
        sa.Column("on_merge", sa.Boolean, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_checks_repo", "checks", ["repo"])
    op.create_table(
        "check_runs",
        sa.Column("commit_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(127), primary_key=True),
        sa.Column("repo", sa.String(127), nullable=False),
        sa.Column("branch", sa.String(63), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("duration", sa.Float, nullable=False),
        sa.Column("log", sa.Text, nullable=False),
    )
    op.create_index("ix_check_runs_repo", "check_runs", ["repo"])


def downgrade() -> None:
    op.drop_index("ix_check_runs_repo", "check_runs")
    op.drop_table("check_runs")
    op.drop_index("ix_checks_repo", "checks")
    op.drop_table("checks")
    with op.batch_alter_table("branch_protection") as batch:
        batch.drop_column("require_checks")
