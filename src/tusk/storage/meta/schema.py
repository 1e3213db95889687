"""The tables, declared once for every engine. Migrations in ``migrations/`` create them."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

repos = sa.Table(
    "repos",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
)

branches = sa.Table(
    "branches",
    metadata,
    sa.Column("repo", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("head", sa.String(32), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

branch_provenance = sa.Table(
    "branch_provenance",
    metadata,
    sa.Column("repo", sa.String(63), primary_key=True),
    sa.Column("branch", sa.String(63), primary_key=True),
    sa.Column("from_repo", sa.String(63), primary_key=True),
    sa.Column("from_branch", sa.String(63), primary_key=True),
)

commits = sa.Table(
    "commits",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("repo", sa.String(63), nullable=False, index=True),
    sa.Column("branch", sa.String(63), nullable=True),
    sa.Column("parent", sa.String(32), nullable=True, index=True),
    sa.Column("tree", sa.LargeBinary(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("size", sa.BigInteger, nullable=False, default=0),
    sa.Column("files", sa.BigInteger, nullable=False, default=0),
    sa.Column("commit_set", sa.String(32), nullable=False, index=True),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("hash", sa.LargeBinary(32), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("touched_at", sa.Float, nullable=False),
)

packs = sa.Table(
    "packs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("chunks", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("hash", sa.LargeBinary(32), primary_key=True),
    sa.Column("pack", sa.String(64), nullable=False, index=True),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("length", sa.Integer, nullable=False),
    sa.Column("raw_length", sa.Integer, nullable=False),
    sa.Column("codec", sa.SmallInteger, nullable=False),
    sa.Column("touched_at", sa.Float, nullable=False),
)
