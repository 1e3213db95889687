"""References: objects a commit refers to where they live (``tusk import``, issue 23).

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_refs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("etag", sa.String(255), nullable=False),
        sa.Column("version", sa.String(1024), nullable=True),
        sa.Column("endpoint", sa.String(1024), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("source_refs")
