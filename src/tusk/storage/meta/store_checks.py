"""SQL for checks (mixed into ``MetaTx``): their definitions and their results per commit."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tusk.storage.meta import schema as t
from tusk.values import frozen


@frozen(slots=True)
class CheckRecord:
    name: str
    repo: str
    branch: str  # a glob
    on_commit: bool
    on_merge: bool
    spec: str  # the canonical document, JSON
    created_at: float
    updated_at: float


@frozen(slots=True)
class CheckRunRecord:
    commit_id: str
    name: str
    repo: str
    branch: str
    trigger: str
    state: str
    exit_code: int | None
    started_at: float
    duration: float
    log: str


def _check(r: sa.Row[tuple[object, ...]]) -> CheckRecord:
    return CheckRecord(
        r.name, r.repo, r.branch, bool(r.on_commit), bool(r.on_merge), r.spec, r.created_at,
        r.updated_at,
    )  # fmt: skip


def _run(r: sa.Row[tuple[object, ...]]) -> CheckRunRecord:
    return CheckRunRecord(
        r.commit_id, r.name, r.repo, r.branch, r.trigger, r.state, r.exit_code, r.started_at,
        r.duration, r.log,
    )  # fmt: skip


class CheckTxMixin:
    conn: Connection

    def list_checks(self, repo: str | None = None) -> list[CheckRecord]:
        c = t.checks.c
        q = sa.select(t.checks).order_by(c.name)
        if repo is not None:
            q = q.where(c.repo == repo)
        return [_check(r) for r in self.conn.execute(q)]

    def get_check(self, name: str) -> CheckRecord | None:
        row = self.conn.execute(sa.select(t.checks).where(t.checks.c.name == name)).first()
        return _check(row) if row else None

    def put_check(self, r: CheckRecord) -> None:
        self.delete_check(r.name)
        self.conn.execute(
            t.checks.insert().values(
                name=r.name, repo=r.repo, branch=r.branch, on_commit=r.on_commit,
                on_merge=r.on_merge, spec=r.spec, created_at=r.created_at,
                updated_at=r.updated_at,
            )
        )  # fmt: skip

    def delete_check(self, name: str) -> None:
        self.conn.execute(t.checks.delete().where(t.checks.c.name == name))

    def put_check_run(self, r: CheckRunRecord) -> None:
        """Record a check's run on a commit (a later run on the same commit replaces it)."""
        c = t.check_runs.c
        self.conn.execute(t.check_runs.delete().where(c.commit_id == r.commit_id, c.name == r.name))
        self.conn.execute(
            t.check_runs.insert().values(
                commit_id=r.commit_id, name=r.name, repo=r.repo, branch=r.branch,
                trigger=r.trigger, state=r.state, exit_code=r.exit_code,
                started_at=r.started_at, duration=r.duration, log=r.log,
            )
        )  # fmt: skip

    def check_runs(self, commit_id: str) -> list[CheckRunRecord]:
        c = t.check_runs.c
        q = sa.select(t.check_runs).where(c.commit_id == commit_id).order_by(c.name)
        return [_run(r) for r in self.conn.execute(q)]

    def delete_repo_checks(self, repo: str) -> None:
        """A deleted repo's checks and their results."""
        self.conn.execute(t.checks.delete().where(t.checks.c.repo == repo))
        self.conn.execute(t.check_runs.delete().where(t.check_runs.c.repo == repo))
