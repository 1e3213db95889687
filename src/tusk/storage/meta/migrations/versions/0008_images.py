"""Images pinned by digest: the manifest digest a pipeline version's ``transform.image``
resolved to (once per version), and the digest each job ran (lineage names the image exactly).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pipeline_versions", sa.Column("image_digest", sa.String(80), nullable=True))
    op.add_column("jobs", sa.Column("image_digest", sa.String(80), nullable=True))
