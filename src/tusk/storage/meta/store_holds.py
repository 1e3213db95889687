"""SQL for holds (mixed into ``MetaTx``): what running processes made and will remove."""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tusk.storage.meta import schema as t
from tusk.values import frozen


@frozen(slots=True)
class HoldRecord:
    kind: str  # commit | branch
    repo: str  # "" for a branch name held in every repo
    name: str
    owner: str  # host:pid
    created_at: float


class HoldTxMixin:
    conn: Connection

    def put_hold(self, kind: str, repo: str, name: str, owner: str) -> None:
        self.conn.execute(
            t.holds.insert().values(
                kind=kind, repo=repo, name=name, owner=owner, created_at=time.time()
            )
        )

    def drop_hold(self, kind: str, repo: str, name: str) -> None:
        c = t.holds.c
        self.conn.execute(t.holds.delete().where(c.kind == kind, c.repo == repo, c.name == name))

    def list_holds(self) -> list[HoldRecord]:
        c = t.holds.c
        rows = self.conn.execute(sa.select(t.holds).order_by(c.created_at))
        return [HoldRecord(r.kind, r.repo, r.name, r.owner, r.created_at) for r in rows]
