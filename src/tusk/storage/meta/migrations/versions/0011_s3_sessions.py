"""S3 sessions: the buckets a datum of a pipeline with S3 inputs or ``s3_out`` reaches
through the S3 gateway, by the access key it was given.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "s3_sessions",
        sa.Column("access_key", sa.String(16), primary_key=True),
        sa.Column("pipeline", sa.String(127), nullable=False),
        sa.Column("job", sa.String(32), nullable=False),
        sa.Column("datum", sa.String(64), nullable=False),
        sa.Column("buckets", sa.Text, nullable=False),
        sa.Column("staging", sa.String(32), nullable=True),
        sa.Column("token_id", sa.String(16), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_s3_sessions_job", "s3_sessions", ["pipeline", "job"])


def downgrade() -> None:
    op.drop_index("ix_s3_sessions_job", "s3_sessions")
    op.drop_table("s3_sessions")
