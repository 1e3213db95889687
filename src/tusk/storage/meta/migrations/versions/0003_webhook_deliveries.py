"""Webhook deliveries: the ones already handled, with the answer given.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("source", sa.String(16), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
    )
