"""Projects: a table of them, with ``default`` holding everything that existed before.

Repos of another project are stored as ``project/repo``, so repo and pipeline name columns
grow to 127 characters (63 + 1 + 63). SQLite does not enforce VARCHAR lengths, so only
PostgreSQL needs its columns altered; nothing is copied or renamed.

Revision ID: 0006
Revises: 0005
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

WIDENED = {
    "repos": ["name"],
    "branches": ["repo"],
    "branch_provenance": ["repo", "from_repo"],
    "commits": ["repo"],
    "pipelines": ["name"],
    "pipeline_versions": ["pipeline"],
    "jobs": ["pipeline"],
    "datums": ["pipeline"],
    "logs": ["pipeline"],
    "role_bindings": ["resource"],
}


def upgrade() -> None:
    projects = op.create_table(
        "projects",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("description", sa.Text, nullable=False, default=""),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.bulk_insert(
        projects,
        [{"name": "default", "description": "the default project", "created_at": time.time()}],
    )
    if op.get_bind().dialect.name == "postgresql":
        for table, columns in WIDENED.items():
            for column in columns:
                op.alter_column(table, column, type_=sa.String(127), existing_type=sa.String(63))
