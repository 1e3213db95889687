"""SQL for projects (mixed into ``MetaTx``). A repo of another project than ``default`` is
stored as ``project/repo``, so a project's repos are those whose name starts with it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tusk.storage.meta import schema as t
from tusk.values import frozen


@frozen
class ProjectRecord:
    name: str
    description: str
    created_at: float


class ProjectTxMixin:
    conn: Connection
    is_sqlite: bool

    def get_project(self, name: str) -> ProjectRecord | None:
        row = self.conn.execute(sa.select(t.projects).where(t.projects.c.name == name)).first()
        return None if row is None else ProjectRecord(row.name, row.description, row.created_at)

    def list_projects(self) -> list[ProjectRecord]:
        rows = self.conn.execute(sa.select(t.projects).order_by(t.projects.c.name))
        return [ProjectRecord(r.name, r.description, r.created_at) for r in rows]

    def insert_project(self, record: ProjectRecord) -> None:
        self.conn.execute(t.projects.insert().values(**record.__dict__))

    def update_project(self, name: str, description: str) -> None:
        self.conn.execute(
            t.projects.update().where(t.projects.c.name == name).values(description=description)
        )

    def delete_project(self, name: str) -> None:
        self.conn.execute(t.projects.delete().where(t.projects.c.name == name))

    def project_repos(self, name: str) -> list[str]:
        """The repos of a project other than ``default`` (stored as ``name/...``)."""
        c = t.repos.c
        prefix = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/"
        rows = self.conn.execute(
            sa.select(c.name).where(c.name.like(prefix + "%", escape="\\")).order_by(c.name)
        )
        return [r.name for r in rows]
