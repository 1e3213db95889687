"""Auth: settings, tokens, role bindings and the audit log.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_settings",
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "auth_tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_index("ix_auth_tokens_principal", "auth_tokens", ["principal"])
    op.create_table(
        "role_bindings",
        sa.Column("resource_type", sa.String(16), primary_key=True),
        sa.Column("resource", sa.String(63), primary_key=True),
        sa.Column("principal", sa.String(200), primary_key=True),
        sa.Column("role", sa.String(32), primary_key=True),
    )
    op.create_index("ix_role_bindings_principal", "role_bindings", ["principal"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("edge", sa.String(16), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(16), nullable=False),
        sa.Column("resource", sa.String(200), nullable=False),
        sa.Column("allowed", sa.Boolean, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_ts", "audit_log", ["ts"])
