"""Initial schema: repos, branches, provenance, commits, tree nodes, packs, chunks.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "repos",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "branches",
        sa.Column("repo", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("head", sa.String(32), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "branch_provenance",
        sa.Column("repo", sa.String(63), primary_key=True),
        sa.Column("branch", sa.String(63), primary_key=True),
        sa.Column("from_repo", sa.String(63), primary_key=True),
        sa.Column("from_branch", sa.String(63), primary_key=True),
    )
    op.create_table(
        "commits",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("repo", sa.String(63), nullable=False),
        sa.Column("branch", sa.String(63), nullable=True),
        sa.Column("parent", sa.String(32), nullable=True),
        sa.Column("tree", sa.LargeBinary(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("files", sa.BigInteger, nullable=False),
        sa.Column("commit_set", sa.String(32), nullable=False),
    )
    op.create_index("ix_commits_repo", "commits", ["repo"])
    op.create_index("ix_commits_parent", "commits", ["parent"])
    op.create_index("ix_commits_commit_set", "commits", ["commit_set"])
    op.create_table(
        "nodes",
        sa.Column("hash", sa.LargeBinary(32), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("touched_at", sa.Float, nullable=False),
    )
    op.create_table(
        "packs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "chunks",
        sa.Column("hash", sa.LargeBinary(32), primary_key=True),
        sa.Column("pack", sa.String(64), nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("length", sa.Integer, nullable=False),
        sa.Column("raw_length", sa.Integer, nullable=False),
        sa.Column("codec", sa.SmallInteger, nullable=False),
        sa.Column("touched_at", sa.Float, nullable=False),
    )
    op.create_index("ix_chunks_pack", "chunks", ["pack"])


def downgrade() -> None:
    for name in ("chunks", "packs", "nodes", "commits", "branch_provenance", "branches", "repos"):
        op.drop_table(name)
