"""The S3 gateway: ETags given for file contents, multipart uploads and their parts, and the
sealed secret of tokens made for S3 (``auth_tokens.sealed``).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "s3_etags",
        sa.Column("hash", sa.LargeBinary(32), primary_key=True),
        sa.Column("etag", sa.String(64), nullable=False),
    )
    op.create_table(
        "s3_uploads",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("repo", sa.String(127), nullable=False),
        sa.Column("branch", sa.String(63), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("principal", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_s3_uploads_branch", "s3_uploads", ["repo", "branch"])
    op.create_table(
        "s3_parts",
        sa.Column(
            "upload_id",
            sa.String(32),
            sa.ForeignKey("s3_uploads.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("tree", sa.LargeBinary(32), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.add_column("auth_tokens", sa.Column("sealed", sa.LargeBinary, nullable=True))
