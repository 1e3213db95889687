"""Pipelines: commit provenance, pipelines and their spec versions, jobs, datums, logs.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "commit_provenance",
        sa.Column("commit", sa.String(32), primary_key=True),
        sa.Column("from_commit", sa.String(32), primary_key=True),
    )
    op.create_index("ix_commit_provenance_from_commit", "commit_provenance", ["from_commit"])
    op.create_table(
        "pipelines",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "pipeline_versions",
        sa.Column("pipeline", sa.String(63), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("origin", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("pipeline", sa.String(63), primary_key=True),
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("output_commit", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("datums_total", sa.Integer, nullable=False),
        sa.Column("processed", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
    )
    op.create_index("ix_jobs_output_commit", "jobs", ["output_commit"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_table(
        "datums",
        sa.Column("pipeline", sa.String(63), primary_key=True),
        sa.Column("job", sa.String(32), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("files", sa.Text, nullable=False),
        sa.Column("output_tree", sa.LargeBinary(32), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("stderr_tail", sa.Text, nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
    )
    op.create_index("ix_datums_job_state", "datums", ["pipeline", "job", "state"])
    op.create_index("ix_datums_hash", "datums", ["pipeline", "hash"])
    op.create_table(
        "logs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pipeline", sa.String(63), nullable=False),
        sa.Column("job", sa.String(32), nullable=False),
        sa.Column("datum", sa.String(64), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("stream", sa.String(8), nullable=False),
        sa.Column("line", sa.Text, nullable=False),
    )
    op.create_index("ix_logs_job", "logs", ["pipeline", "job"])
