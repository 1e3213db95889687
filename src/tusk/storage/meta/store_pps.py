"""SQL for pipelines, jobs, datums, logs and commit provenance (mixed into ``MetaTx``).

Datum claims take rows whose state is ``pending``, or ``running`` with an expired lease, and
stamp them with the claimer and a new lease in the same transaction: on SQLite the write lock
makes this exclusive; on PostgreSQL the select uses ``FOR UPDATE SKIP LOCKED`` so workers on
several machines take disjoint rows without waiting on each other.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tusk.storage.meta import schema as t
from tusk.storage.meta.records import (
    DatumRecord,
    JobRecord,
    LogRecord,
    PipelineRecord,
    PipelineVersionRecord,
    ProcessRecord,
)

_JOB_COLS = [c.name for c in t.jobs.columns]
_DATUM_COLS = [c.name for c in t.datums.columns]


def _job(row: Any) -> JobRecord:
    return JobRecord(*(getattr(row, c) for c in _JOB_COLS))


def _datum(row: Any) -> DatumRecord:
    values = {c: getattr(row, c) for c in _DATUM_COLS}
    if values["output_tree"] is not None:
        values["output_tree"] = bytes(values["output_tree"])
    return DatumRecord(**values)


class PpsTxMixin:
    conn: Connection
    is_sqlite: bool

    # Commit provenance

    def add_commit_provenance(self, commit: str, sources: Sequence[str]) -> None:
        if sources:
            self.conn.execute(
                t.commit_provenance.insert(),
                [{"commit": commit, "from_commit": s} for s in dict.fromkeys(sources)],
            )

    def commit_provenance(self, commit: str) -> list[str]:
        cp = t.commit_provenance.c
        rows = self.conn.execute(sa.select(cp.from_commit).where(cp.commit == commit))
        return sorted(r.from_commit for r in rows)

    def commit_subvenance(self, commit: str) -> list[str]:
        cp = t.commit_provenance.c
        rows = self.conn.execute(sa.select(cp.commit).where(cp.from_commit == commit))
        return sorted(r.commit for r in rows)

    def delete_commit_provenance(self, commit: str) -> None:
        cp = t.commit_provenance.c
        self.conn.execute(t.commit_provenance.delete().where(cp.commit == commit))

    # Pipelines

    def get_pipeline(self, name: str, *, lock: bool = False) -> PipelineRecord | None:
        q = sa.select(t.pipelines).where(t.pipelines.c.name == name)
        if lock and not self.is_sqlite:
            q = q.with_for_update()
        row = self.conn.execute(q).first()
        return PipelineRecord(*row) if row else None

    def list_pipelines(self) -> list[PipelineRecord]:
        rows = self.conn.execute(sa.select(t.pipelines).order_by(t.pipelines.c.name))
        return [PipelineRecord(*r) for r in rows]

    def upsert_pipeline(self, p: PipelineRecord) -> None:
        values = {
            "name": p.name,
            "version": p.version,
            "state": p.state,
            "created_at": p.created_at,
            "updated_at": p.updated_at,
        }
        stmt = self._insert(t.pipelines).values(**values)
        self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["name"],
                set_={k: v for k, v in values.items() if k not in ("name", "created_at")},
            )
        )

    def insert_pipeline_version(self, v: PipelineVersionRecord) -> None:
        self.conn.execute(
            t.pipeline_versions.insert().values(
                pipeline=v.pipeline,
                version=v.version,
                spec=v.spec,
                spec_hash=v.spec_hash,
                salt=v.salt,
                origin=v.origin,
                created_at=v.created_at,
            )
        )

    def pipeline_versions(self, name: str) -> list[PipelineVersionRecord]:
        pv = t.pipeline_versions.c
        rows = self.conn.execute(
            sa.select(t.pipeline_versions).where(pv.pipeline == name).order_by(pv.version)
        )
        return [PipelineVersionRecord(*r) for r in rows]

    def get_pipeline_version(self, name: str, version: int) -> PipelineVersionRecord | None:
        pv = t.pipeline_versions.c
        row = self.conn.execute(
            sa.select(t.pipeline_versions).where(pv.pipeline == name, pv.version == version)
        ).first()
        return PipelineVersionRecord(*row) if row else None

    def pin_version_image(self, name: str, version: int, digest: str) -> str:
        """Record the image digest of a pipeline version unless one is recorded; the one kept."""
        pv = t.pipeline_versions.c
        where = (pv.pipeline == name, pv.version == version)
        self.conn.execute(
            t.pipeline_versions.update()
            .where(*where, pv.image_digest.is_(None))
            .values(image_digest=digest)
        )
        kept = self.conn.execute(sa.select(pv.image_digest).where(*where)).scalar()
        return str(kept or digest)

    def pinned_image_digests(self) -> set[str]:
        """Every image digest a pipeline version or a job names (what gc keeps)."""
        pv, j = t.pipeline_versions.c, t.jobs.c
        found: set[str] = set()
        for col in (pv.image_digest, j.image_digest):
            rows = self.conn.execute(sa.select(col).where(col.is_not(None)).distinct())
            found.update(r[0] for r in rows)
        return found

    def image_pins(self, digest: str) -> list[tuple[str, int]]:
        """(pipeline, version) of each pipeline version, and each job's version, naming the
        image ``digest``, sorted: what keeps ``tusk delete image`` from removing it."""
        found: set[tuple[str, int]] = set()
        for table in (t.pipeline_versions, t.jobs):
            c = table.c
            query = sa.select(c.pipeline, c.version).where(c.image_digest == digest).distinct()
            found.update((r.pipeline, r.version) for r in self.conn.execute(query))
        return sorted(found)

    # Long-running processes (spouts, services)

    def get_process(self, pipeline: str) -> ProcessRecord | None:
        c = t.pipeline_processes.c
        row = self.conn.execute(
            sa.select(t.pipeline_processes).where(c.pipeline == pipeline)
        ).first()
        return ProcessRecord(*row) if row else None

    def list_processes(self) -> list[ProcessRecord]:
        rows = self.conn.execute(sa.select(t.pipeline_processes))
        return [ProcessRecord(*r) for r in rows]

    def claim_process(
        self, pipeline: str, kind: str, owner: str, now: float, stale_before: float
    ) -> bool:
        """Take the supervision of a pipeline's process unless a live scheduler has it (its
        ``updated_at`` after ``stale_before``); True when ``owner`` has it now."""
        c = t.pipeline_processes.c
        self.conn.execute(
            self._insert(t.pipeline_processes)
            .values(pipeline=pipeline, kind=kind, state="starting", restarts=0,
                    owner=owner, updated_at=now, detail="")
            .on_conflict_do_nothing(index_elements=["pipeline"])
        )  # fmt: skip
        res = self.conn.execute(
            t.pipeline_processes.update()
            .where(
                c.pipeline == pipeline,
                sa.or_(c.owner == owner, c.owner.is_(None), c.updated_at < stale_before),
            )
            .values(owner=owner, kind=kind, updated_at=now)
        )
        return bool(res.rowcount)

    def update_process(self, pipeline: str, owner: str, **values: Any) -> None:
        c = t.pipeline_processes.c
        self.conn.execute(
            t.pipeline_processes.update()
            .where(c.pipeline == pipeline, c.owner == owner)
            .values(**values)
        )

    def release_process(self, pipeline: str, owner: str) -> None:
        """Give up a pipeline's process: any scheduler may claim it now."""
        c = t.pipeline_processes.c
        self.conn.execute(
            t.pipeline_processes.update()
            .where(c.pipeline == pipeline, c.owner == owner)
            .values(owner=None)
        )

    def delete_process(self, pipeline: str) -> None:
        c = t.pipeline_processes.c
        self.conn.execute(t.pipeline_processes.delete().where(c.pipeline == pipeline))

    def delete_pipeline(self, name: str) -> None:
        for table in (t.logs, t.datums, t.jobs, t.pipeline_processes):
            self.conn.execute(table.delete().where(table.c.pipeline == name))
        self.conn.execute(
            t.pipeline_versions.delete().where(t.pipeline_versions.c.pipeline == name)
        )
        self.conn.execute(t.pipelines.delete().where(t.pipelines.c.name == name))

    # Jobs

    def insert_job(self, j: JobRecord) -> bool:
        """Insert a job unless one exists for the same pipeline and id; True if inserted."""
        stmt = self._insert(t.jobs).values(**{c: getattr(j, c) for c in _JOB_COLS})
        res = self.conn.execute(stmt.on_conflict_do_nothing(index_elements=["pipeline", "id"]))
        return bool(res.rowcount)

    def set_job_state_if(self, pipeline: str, job_id: str, expect: str, **values: Any) -> bool:
        """Move a job on only if it is still in state ``expect`` (one scheduler wins)."""
        c = t.jobs.c
        res = self.conn.execute(
            t.jobs.update()
            .where(c.pipeline == pipeline, c.id == job_id, c.state == expect)
            .values(**values)
        )
        return bool(res.rowcount)

    def open_commits(self, repo: str) -> list[tuple[str, str | None, str, float]]:
        """(id, branch, commit set, started_at) of a repo's open commits, oldest first."""
        c = t.commits.c
        rows = self.conn.execute(
            sa.select(c.id, c.branch, c.commit_set, c.started_at)
            .where(c.repo == repo, c.state == "open")
            .order_by(c.started_at)
        )
        return [(r.id, r.branch, r.commit_set, r.started_at) for r in rows]

    def running_datum_owners(self) -> list[str]:
        c = t.datums.c
        rows = self.conn.execute(
            sa.select(c.owner).where(c.state == "running", c.owner.is_not(None)).distinct()
        )
        return [r.owner for r in rows]

    def release_owner(self, owner: str) -> int:
        """Return every datum a dead worker held to the queue (its attempt does not count)."""
        c = t.datums.c
        res = self.conn.execute(
            t.datums.update()
            .where(c.owner == owner, c.state == "running")
            .values(state="pending", owner=None, lease_until=None, attempts=c.attempts - 1)
        )
        return res.rowcount or 0

    def get_job(self, pipeline: str, job_id: str) -> JobRecord | None:
        c = t.jobs.c
        row = self.conn.execute(
            sa.select(t.jobs).where(c.pipeline == pipeline, c.id == job_id)
        ).first()
        return _job(row) if row else None

    def find_jobs_by_prefix(self, pipeline: str | None, prefix: str) -> list[JobRecord]:
        c = t.jobs.c
        q = sa.select(t.jobs).where(c.id.startswith(prefix))
        if pipeline is not None:
            q = q.where(c.pipeline == pipeline)
        return [_job(r) for r in self.conn.execute(q.limit(50))]

    def job_for_commit(self, commit: str) -> JobRecord | None:
        row = self.conn.execute(sa.select(t.jobs).where(t.jobs.c.output_commit == commit)).first()
        return _job(row) if row else None

    def list_jobs(
        self, pipeline: str | None = None, states: Sequence[str] | None = None
    ) -> list[JobRecord]:
        c = t.jobs.c
        q = sa.select(t.jobs)
        if pipeline is not None:
            q = q.where(c.pipeline == pipeline)
        if states is not None:
            q = q.where(c.state.in_(list(states)))
        rows = self.conn.execute(q.order_by(c.created_at.desc(), c.pipeline))
        return [_job(r) for r in rows]

    def update_job(self, pipeline: str, job_id: str, **values: Any) -> None:
        c = t.jobs.c
        self.conn.execute(
            t.jobs.update().where(c.pipeline == pipeline, c.id == job_id).values(**values)
        )

    # Datums

    def insert_datums(self, rows: Sequence[DatumRecord]) -> None:
        # Every job records all its datums (thousands): driver-level executemany, same SQL on
        # SQLite and PostgreSQL, without per-row Core compilation.
        if rows:
            cols = ", ".join(f'"{c}"' for c in _DATUM_COLS)
            marks = ", ".join(["?" if self.is_sqlite else "%s"] * len(_DATUM_COLS))
            self.conn.exec_driver_sql(
                f"INSERT INTO datums ({cols}) VALUES ({marks})",
                [tuple(getattr(d, c) for c in _DATUM_COLS) for d in rows],
            )

    def datum_results(self, pipeline: str, job: str) -> list[tuple[str, str, str, bytes | None]]:
        """(id, hash, state, output tree) of every datum of a job: what merging needs."""
        c = t.datums.c
        rows = self.conn.execute(
            sa.select(c.id, c.hash, c.state, c.output_tree)
            .where(c.pipeline == pipeline, c.job == job)
            .order_by(c.seq)
        )
        return [
            (r.id, r.hash, r.state, bytes(r.output_tree) if r.output_tree is not None else None)
            for r in rows
        ]

    def list_datums(
        self, pipeline: str, job: str, states: Sequence[str] | None = None
    ) -> list[DatumRecord]:
        c = t.datums.c
        q = sa.select(t.datums).where(c.pipeline == pipeline, c.job == job)
        if states is not None:
            q = q.where(c.state.in_(list(states)))
        return [_datum(r) for r in self.conn.execute(q.order_by(c.seq))]

    def get_datum(self, pipeline: str, job: str, datum_id: str) -> DatumRecord | None:
        c = t.datums.c
        row = self.conn.execute(
            sa.select(t.datums).where(c.pipeline == pipeline, c.job == job, c.id == datum_id)
        ).first()
        return _datum(row) if row else None

    def find_datums_by_prefix(self, pipeline: str, job: str, prefix: str) -> list[DatumRecord]:
        c = t.datums.c
        q = sa.select(t.datums).where(c.pipeline == pipeline, c.job == job, c.id.startswith(prefix))
        return [_datum(r) for r in self.conn.execute(q.limit(2))]

    def datum_outputs_by_hash(self, pipeline: str, hashes: Sequence[str]) -> dict[str, bytes]:
        """Output trees of datums that already succeeded with these hashes (any job)."""
        c = t.datums.c
        out: dict[str, bytes] = {}
        items = list(dict.fromkeys(hashes))
        for i in range(0, len(items), 500):
            rows = self.conn.execute(
                sa.select(c.hash, c.output_tree).where(
                    c.pipeline == pipeline,
                    c.hash.in_(items[i : i + 500]),
                    c.state.in_(["success", "skipped"]),
                    c.output_tree.is_not(None),
                )
            )
            out.update((r.hash, bytes(r.output_tree)) for r in rows)
        return out

    def datum_origin(self, pipeline: str, datum_hash: str) -> DatumRecord | None:
        """The run that computed a datum with this hash (skipped datums carry its output)."""
        c = t.datums.c
        row = self.conn.execute(
            sa.select(t.datums)
            .where(c.pipeline == pipeline, c.hash == datum_hash, c.state == "success")
            .order_by(c.finished_at)
            .limit(1)
        ).first()
        return _datum(row) if row else None

    def count_datums(self, pipeline: str, job: str) -> dict[str, int]:
        c = t.datums.c
        rows = self.conn.execute(
            sa.select(c.state, sa.func.count())
            .where(c.pipeline == pipeline, c.job == job)
            .group_by(c.state)
        )
        return {r[0]: r[1] for r in rows}

    def claim_datums(
        self, pipeline: str, job: str, owner: str, lease_until: float, now: float, limit: int
    ) -> list[DatumRecord]:
        """Take up to ``limit`` datums that are pending or whose lease ran out."""
        c = t.datums.c
        q = (
            sa.select(c.id)
            .where(
                c.pipeline == pipeline,
                c.job == job,
                sa.or_(c.state == "pending", sa.and_(c.state == "running", c.lease_until < now)),
            )
            .order_by(c.seq)
            .limit(limit)
        )
        if not self.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        ids = [r.id for r in self.conn.execute(q)]
        if not ids:
            return []
        self.conn.execute(
            t.datums.update()
            .where(c.pipeline == pipeline, c.job == job, c.id.in_(ids))
            .values(
                state="running",
                owner=owner,
                lease_until=lease_until,
                started_at=now,
                attempts=c.attempts + 1,
            )
        )
        rows = self.conn.execute(
            sa.select(t.datums)
            .where(c.pipeline == pipeline, c.job == job, c.id.in_(ids))
            .order_by(c.seq)
        )
        return [_datum(r) for r in rows]

    def renew_datum_leases(self, owner: str, lease_until: float) -> None:
        c = t.datums.c
        self.conn.execute(
            t.datums.update()
            .where(c.owner == owner, c.state == "running")
            .values(lease_until=lease_until)
        )

    def finish_datums(
        self, pipeline: str, job: str, holder: str, rows: Sequence[dict[str, Any]]
    ) -> None:
        """Record the ends of datums ``holder`` still holds, one executemany for a batch.

        Each row has id, state, output_tree, exit_code, error, stderr_tail, finished_at.
        """
        if not rows:
            return
        c = t.datums.c
        stmt = (
            t.datums.update()
            .where(
                c.pipeline == pipeline,
                c.job == job,
                c.id == sa.bindparam("b_id"),
                c.owner == holder,
                c.state == "running",
            )
            .values(
                state=sa.bindparam("b_state"),
                output_tree=sa.bindparam("b_output_tree"),
                exit_code=sa.bindparam("b_exit_code"),
                error=sa.bindparam("b_error"),
                stderr_tail=sa.bindparam("b_stderr_tail"),
                finished_at=sa.bindparam("b_finished_at"),
                owner=None,
                lease_until=None,
            )
        )
        self.conn.execute(stmt, [{f"b_{k}": v for k, v in r.items()} for r in rows])

    def release_datums(self, pipeline: str, job: str, owner: str) -> None:
        """Put back the datums ``owner`` holds (a stopped worker)."""
        c = t.datums.c
        self.conn.execute(
            t.datums.update()
            .where(c.pipeline == pipeline, c.job == job, c.owner == owner, c.state == "running")
            .values(state="pending", owner=None, lease_until=None, attempts=c.attempts - 1)
        )

    def requeue_datums(self, pipeline: str, job: str, held: Sequence[tuple[str, str]]) -> None:
        """Put running datums back in the queue, each ``(id, owner)`` only while that owner
        still holds it (a restart): its run's end is then not recorded, and the try it took
        is not counted."""
        c = t.datums.c
        for datum_id, owner in held:
            self.conn.execute(
                t.datums.update()
                .where(
                    c.pipeline == pipeline,
                    c.job == job,
                    c.id == datum_id,
                    c.owner == owner,
                    c.state == "running",
                )
                .values(state="pending", owner=None, lease_until=None, attempts=c.attempts - 1)
            )

    def still_held(self, pipeline: str, job: str, owner: str, ids: Sequence[str]) -> bool:
        """Whether ``owner`` still runs every one of ``ids`` (none was restarted or lost)."""
        c = t.datums.c
        q = sa.select(sa.func.count()).where(
            c.pipeline == pipeline, c.job == job, c.id.in_(list(ids)), c.owner == owner,
            c.state == "running",
        )  # fmt: skip
        return int(self.conn.execute(q).scalar_one()) == len(set(ids))

    def datum_output_roots(self, but: Collection[tuple[str, str]] = ()) -> list[bytes]:
        """Every datum output tree still on record: gc roots, like commit trees; ``but``
        leaves out the datums of these jobs, as (pipeline, job) (a retention dry run)."""
        c = t.datums.c
        if not but:
            rows = self.conn.execute(
                sa.select(c.output_tree).where(c.output_tree.is_not(None)).distinct()
            )
            return [bytes(r.output_tree) for r in rows]
        skip = set(but)
        rows = self.conn.execute(
            sa.select(c.pipeline, c.job, c.output_tree).where(c.output_tree.is_not(None))
        )
        return list({bytes(r.output_tree) for r in rows if (r.pipeline, r.job) not in skip})

    # Logs

    def add_logs(self, rows: Sequence[LogRecord]) -> None:
        if rows:
            self.conn.execute(
                t.logs.insert(),
                [
                    {
                        "pipeline": r.pipeline,
                        "job": r.job,
                        "datum": r.datum,
                        "ts": r.ts,
                        "stream": r.stream,
                        "line": r.line,
                    }
                    for r in rows
                ],
            )

    def read_logs(
        self,
        pipeline: str,
        job: str | None = None,
        datum: str | None = None,
        after_id: int = 0,
        limit: int = 10000,
    ) -> list[tuple[int, LogRecord]]:
        c = t.logs.c
        q = sa.select(t.logs).where(c.pipeline == pipeline, c.id > after_id)
        if job is not None:
            q = q.where(c.job == job)
        if datum is not None:
            q = q.where(c.datum.startswith(datum))
        rows = self.conn.execute(q.order_by(c.id).limit(limit))
        return [(r.id, LogRecord(r.pipeline, r.job, r.datum, r.ts, r.stream, r.line)) for r in rows]

    def _insert(self, table: sa.Table) -> Any:  # provided by MetaTx
        raise NotImplementedError
