"""Taking a store back to an older schema, for the tests that check an old home is migrated
(test_migrate_projects, test_triggers, api/test_tags, api/test_webhooks): what undoes each
migration from 0008 on, in one place, so a new migration is added here once (a test checks
that the table reaches the current head)."""

from __future__ import annotations

import sqlalchemy as sa

from tusk.storage.meta.store import SCHEMA_HEAD

# revision -> the statements that undo it (0015's branch_protection.require_checks goes with
# 0014's table)
UNDO: dict[str, tuple[str, ...]] = {
    "0017": ("DROP TABLE holds",),
    "0016": ("DROP TABLE source_refs",),
    "0015": ("DROP TABLE check_runs", "DROP TABLE checks"),
    "0014": ("DROP TABLE branch_protection",),
    "0013": (
        "DROP TABLE retention",
        "DROP INDEX ix_commits_merge_parent",
        "ALTER TABLE commits DROP COLUMN merge_parent",
    ),
    "0012": ("DROP TABLE tags",),
    "0011": ("DROP TABLE s3_sessions",),
    "0010": ("DROP TABLE branch_triggers",),
    "0009": ("DROP TABLE pipeline_processes",),
    "0008": (
        "ALTER TABLE pipeline_versions DROP COLUMN image_digest",
        "ALTER TABLE jobs DROP COLUMN image_digest",
    ),
}
assert max(UNDO) == SCHEMA_HEAD, f"add how to undo migration {SCHEMA_HEAD} to UNDO"


def undo_migrations(conn: sa.Connection, down_to: str) -> None:
    """Undo, newest first, the migrations after ``down_to`` that ``UNDO`` knows, and record
    ``down_to`` as the schema's version (older migrations the caller undoes itself first)."""
    for revision in sorted(UNDO, reverse=True):
        if revision > down_to:
            for statement in UNDO[revision]:
                conn.execute(sa.text(statement))
    conn.execute(sa.text(f"UPDATE alembic_version SET version_num = '{down_to}'"))
