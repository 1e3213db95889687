"""SQL for retention (mixed into ``MetaTx``): the rules per repo, and what applying them reads
and removes beyond commits: the whole provenance graph, and the records of expired jobs."""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tusk.storage.meta import schema as t
from tusk.values import frozen


@frozen(slots=True)
class RetentionRecord:
    repo: str
    keep_last: int | None
    keep_within: float | None  # seconds
    keep_tagged: bool
    updated_at: float


def _rule(r: sa.Row[tuple[object, ...]]) -> RetentionRecord:
    return RetentionRecord(r.repo, r.keep_last, r.keep_within, bool(r.keep_tagged), r.updated_at)


class RetentionTxMixin:
    conn: Connection

    def get_retention(self, repo: str) -> RetentionRecord | None:
        c = t.retention.c
        row = self.conn.execute(sa.select(t.retention).where(c.repo == repo)).first()
        return _rule(row) if row else None

    def list_retention(self) -> list[RetentionRecord]:
        rows = self.conn.execute(sa.select(t.retention).order_by(t.retention.c.repo))
        return [_rule(r) for r in rows]

    def set_retention(self, r: RetentionRecord) -> None:
        self.delete_retention(r.repo)
        self.conn.execute(
            t.retention.insert().values(
                repo=r.repo, keep_last=r.keep_last, keep_within=r.keep_within,
                keep_tagged=r.keep_tagged, updated_at=r.updated_at,
            )
        )  # fmt: skip

    def delete_retention(self, repo: str) -> None:
        self.conn.execute(t.retention.delete().where(t.retention.c.repo == repo))

    def all_commit_provenance(self) -> list[tuple[str, str]]:
        """Every (commit, commit it was computed from) pair."""
        cp = t.commit_provenance.c
        return [
            (r.commit, r.from_commit)
            for r in self.conn.execute(sa.select(cp.commit, cp.from_commit))
        ]

    def delete_subvenance_rows(self, commit: str) -> None:
        """Provenance rows that name ``commit`` as a source."""
        cp = t.commit_provenance.c
        self.conn.execute(t.commit_provenance.delete().where(cp.from_commit == commit))

    def carried_origins(self, pipeline: str) -> dict[str, set[str]]:
        """Per job of ``pipeline``, the jobs whose results it carried forward: for each of its
        skipped datums, the first successful run of that datum (what lineage follows, as
        ``datum_origin`` finds it). Two queries, whatever the number of jobs."""
        c = t.datums.c
        first: dict[str, tuple[float, str]] = {}
        done = self.conn.execute(
            sa.select(c.hash, c.job, c.finished_at).where(
                c.pipeline == pipeline, c.state == "success"
            )
        )
        for r in done:
            at = r.finished_at if r.finished_at is not None else 0.0
            if r.hash not in first or at < first[r.hash][0]:
                first[r.hash] = (at, r.job)
        out: dict[str, set[str]] = {}
        skipped = self.conn.execute(
            sa.select(c.job, c.hash).where(c.pipeline == pipeline, c.state == "skipped")
        )
        for job, h in skipped:
            if h in first:
                out.setdefault(job, set()).add(first[h][1])
        return out

    def job_commits(self, pipeline: str) -> dict[str, str]:
        """Job id -> output commit, for every job of ``pipeline``."""
        c = t.jobs.c
        rows = self.conn.execute(sa.select(c.id, c.output_commit).where(c.pipeline == pipeline))
        return {r.id: r.output_commit for r in rows}

    def delete_job_records(self, pipeline: str, job: str) -> None:
        """A job, its datums and its logs (the job's output commit is gone)."""
        for table in (t.logs, t.datums):
            c = table.c
            self.conn.execute(table.delete().where(c.pipeline == pipeline, c.job == job))
        self.conn.execute(t.jobs.delete().where(t.jobs.c.pipeline == pipeline, t.jobs.c.id == job))

    # Protected branches (they live here with retention: both are rules on a repo's history)

    def protected_branches(
        self, repo: str | None = None, branch: str | None = None
    ) -> list[tuple[str, str, float, str, list[str]]]:
        """(repo, branch, created_at, created_by, required checks) of protected branches, of
        ``repo`` (and ``branch``) or all."""
        c = t.branch_protection.c
        q = sa.select(t.branch_protection).order_by(c.repo, c.branch)
        if repo is not None:
            q = q.where(c.repo == repo)
        if branch is not None:
            q = q.where(c.branch == branch)
        return [
            (r.repo, r.branch, r.created_at, r.created_by, json.loads(r.require_checks or "[]"))
            for r in self.conn.execute(q)
        ]

    def is_protected(self, repo: str, branch: str) -> bool:
        c = t.branch_protection.c
        q = sa.select(c.branch).where(c.repo == repo, c.branch == branch)
        return self.conn.execute(q).first() is not None

    def protect(
        self, repo: str, branch: str, created_at: float, created_by: str, checks: list[str]
    ) -> None:
        self.conn.execute(
            t.branch_protection.insert().values(
                repo=repo, branch=branch, created_at=created_at, created_by=created_by,
                require_checks=json.dumps(checks),
            )
        )  # fmt: skip

    def unprotect(self, repo: str, branch: str) -> None:
        c = t.branch_protection.c
        self.conn.execute(t.branch_protection.delete().where(c.repo == repo, c.branch == branch))
