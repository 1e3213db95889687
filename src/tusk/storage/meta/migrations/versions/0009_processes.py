"""Long-running pipeline processes (spouts and services): one row per pipeline saying how its
process is doing, kept by the scheduler that supervises it, read by ``tusk list pipeline``.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_processes",
        sa.Column("pipeline", sa.String(127), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),  # spout or service
        sa.Column("state", sa.String(16), nullable=False),  # starting, running, restarting...
        sa.Column("restarts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("owner", sa.String(128), nullable=True),  # the scheduler running it
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),  # last lines, port...
    )
