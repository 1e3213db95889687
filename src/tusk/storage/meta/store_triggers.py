"""SQL for branch triggers (mixed into ``MetaTx``): one row per triggered branch, naming the
branch of the same repo it follows and the conditions (see ``tusk.pfs.triggers``)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tusk.storage.meta import schema as t
from tusk.values import frozen


@frozen(slots=True)
class TriggerRecord:
    repo: str
    branch: str  # the branch that moves
    from_branch: str  # the branch it follows
    size: str | None
    commits: int | None
    cron_spec: str | None
    all_conditions: bool
    fired_at: float


def _record(row: Any) -> TriggerRecord:
    return TriggerRecord(
        row.repo,
        row.branch,
        row.from_branch,
        row.size,
        row.commits,
        row.cron_spec,
        bool(row.all_conditions),
        row.fired_at,
    )


class TriggerTxMixin:
    conn: Connection
    is_sqlite: bool

    def get_trigger(self, repo: str, branch: str) -> TriggerRecord | None:
        c = t.branch_triggers.c
        row = self.conn.execute(
            sa.select(t.branch_triggers).where(c.repo == repo, c.branch == branch)
        ).first()
        return None if row is None else _record(row)

    def list_triggers(self, repo: str | None = None) -> list[TriggerRecord]:
        c = t.branch_triggers.c
        query = sa.select(t.branch_triggers).order_by(c.repo, c.branch)
        if repo is not None:
            query = query.where(c.repo == repo)
        return [_record(r) for r in self.conn.execute(query)]

    def triggers_from(self, repo: str, from_branch: str) -> list[TriggerRecord]:
        """The triggers of branches that follow ``repo@from_branch``."""
        c = t.branch_triggers.c
        rows = self.conn.execute(
            sa.select(t.branch_triggers)
            .where(c.repo == repo, c.from_branch == from_branch)
            .order_by(c.branch)
        )
        return [_record(r) for r in rows]

    def cron_triggers(self) -> list[TriggerRecord]:
        """Every trigger with a cron condition (the scheduler's clock evaluates them)."""
        c = t.branch_triggers.c
        query = sa.select(t.branch_triggers).where(c.cron_spec.is_not(None))
        return [_record(r) for r in self.conn.execute(query.order_by(c.repo, c.branch))]

    def set_trigger(self, record: TriggerRecord) -> None:
        self.delete_trigger(record.repo, record.branch)
        self.conn.execute(
            t.branch_triggers.insert().values(
                repo=record.repo,
                branch=record.branch,
                from_branch=record.from_branch,
                size=record.size,
                commits=record.commits,
                cron_spec=record.cron_spec,
                all_conditions=record.all_conditions,
                fired_at=record.fired_at,
            )
        )

    def mark_trigger_fired(self, repo: str, branch: str, at: float) -> None:
        c = t.branch_triggers.c
        self.conn.execute(
            t.branch_triggers.update().where(c.repo == repo, c.branch == branch).values(fired_at=at)
        )

    def delete_trigger(self, repo: str, branch: str) -> None:
        c = t.branch_triggers.c
        self.conn.execute(t.branch_triggers.delete().where(c.repo == repo, c.branch == branch))

    def delete_repo_triggers(self, repo: str) -> None:
        c = t.branch_triggers.c
        self.conn.execute(t.branch_triggers.delete().where(c.repo == repo))
