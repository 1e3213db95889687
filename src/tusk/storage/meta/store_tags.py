"""SQL for tags (mixed into ``MetaTx``): a name for one commit of a repo."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tusk.storage.meta import schema as t
from tusk.values import frozen


@frozen(slots=True)
class TagRecord:
    repo: str
    name: str
    commit: str
    created_at: float


class TagTxMixin:
    conn: Connection

    def get_tag(self, repo: str, name: str) -> TagRecord | None:
        c = t.tags.c
        row = self.conn.execute(sa.select(t.tags).where(c.repo == repo, c.name == name)).first()
        return TagRecord(row.repo, row.name, row.commit_id, row.created_at) if row else None

    def list_tags(self, repo: str) -> list[TagRecord]:
        c = t.tags.c
        rows = self.conn.execute(sa.select(t.tags).where(c.repo == repo).order_by(c.name))
        return [TagRecord(r.repo, r.name, r.commit_id, r.created_at) for r in rows]

    def insert_tag(self, record: TagRecord) -> None:
        self.conn.execute(
            t.tags.insert().values(
                repo=record.repo, name=record.name, commit_id=record.commit,
                created_at=record.created_at,
            )
        )  # fmt: skip

    def delete_tag(self, repo: str, name: str) -> None:
        c = t.tags.c
        self.conn.execute(t.tags.delete().where(c.repo == repo, c.name == name))

    def tags_of(self, commit_ids: Sequence[str]) -> list[TagRecord]:
        """The tags naming any of these commits."""
        if not commit_ids:
            return []
        c = t.tags.c
        rows = self.conn.execute(sa.select(t.tags).where(c.commit_id.in_(list(commit_ids))))
        return [TagRecord(r.repo, r.name, r.commit_id, r.created_at) for r in rows]

    def delete_repo_tags(self, repo: str) -> None:
        self.conn.execute(t.tags.delete().where(t.tags.c.repo == repo))
