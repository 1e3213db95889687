"""SQL for the S3 gateway (mixed into ``MetaTx``): ETags of file contents, multipart uploads
and their parts.

Only :mod:`tusk.s3` calls these (gc reads the part roots and expires stale uploads). A part
is a detached tree (:meth:`PfsService.write_detached_trees`) named here until its upload
completes, is aborted, or goes stale; while named, its root is a gc root.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tusk.storage.meta import schema as t
from tusk.values import frozen

_BATCH = 500


@frozen
class S3Upload:
    id: str
    repo: str
    branch: str
    key: str
    principal: str
    created_at: float
    updated_at: float


@frozen
class S3Part:
    upload_id: str
    number: int
    tree: bytes  # a detached tree's root: the part, as one file
    size: int
    etag: str  # hex MD5 of the part's bytes
    created_at: float


def _upload(row: sa.Row) -> S3Upload:
    return S3Upload(
        row.id, row.repo, row.branch, row.key, row.principal, row.created_at, row.updated_at
    )


class S3TxMixin:
    conn: Connection
    is_sqlite: bool

    def _insert(self, table: sa.Table) -> Any:  # provided by MetaTx
        raise NotImplementedError

    # ETags

    def s3_put_etags(self, rows: Sequence[tuple[bytes, str]]) -> None:
        """Record (content id, ETag) pairs; a content id seen before takes the new ETag."""
        values = [{"hash": h, "etag": e} for h, e in dict(rows).items()]
        for i in range(0, len(values), _BATCH):
            stmt = self._insert(t.s3_etags)
            self.conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["hash"], set_={"etag": stmt.excluded.etag}
                ),
                values[i : i + _BATCH],
            )

    def s3_etags(self, hashes: Sequence[bytes]) -> dict[bytes, str]:
        """The recorded ETags of those of ``hashes`` that have one."""
        c = t.s3_etags.c
        wanted = list(dict.fromkeys(hashes))
        out: dict[bytes, str] = {}
        for i in range(0, len(wanted), _BATCH):
            rows = self.conn.execute(
                sa.select(c.hash, c.etag).where(c.hash.in_(wanted[i : i + _BATCH]))
            )
            out.update((bytes(r.hash), r.etag) for r in rows)
        return out

    # Multipart uploads

    def s3_create_upload(self, u: S3Upload) -> None:
        self.conn.execute(t.s3_uploads.insert().values(**u.__dict__))

    def s3_get_upload(self, upload_id: str) -> S3Upload | None:
        row = self.conn.execute(
            sa.select(t.s3_uploads).where(t.s3_uploads.c.id == upload_id)
        ).first()
        return _upload(row) if row is not None else None

    def s3_list_uploads(self, repo: str, branch: str) -> list[S3Upload]:
        """The uploads in progress to one bucket, by key and then age."""
        c = t.s3_uploads.c
        rows = self.conn.execute(
            sa.select(t.s3_uploads)
            .where(c.repo == repo, c.branch == branch)
            .order_by(c.key, c.created_at, c.id)
        )
        return [_upload(r) for r in rows]

    def s3_delete_upload(self, upload_id: str) -> None:
        """An upload and its parts (deleted explicitly: SQLite may not enforce the cascade)."""
        self.conn.execute(t.s3_parts.delete().where(t.s3_parts.c.upload_id == upload_id))
        self.conn.execute(t.s3_uploads.delete().where(t.s3_uploads.c.id == upload_id))

    def s3_put_part(self, p: S3Part) -> None:
        """Record a part (replacing one of the same number) and mark its upload as used."""
        c = t.s3_parts.c
        self.conn.execute(
            t.s3_parts.delete().where(c.upload_id == p.upload_id, c.number == p.number)
        )
        self.conn.execute(t.s3_parts.insert().values(**p.__dict__))
        self.conn.execute(
            t.s3_uploads.update()
            .where(t.s3_uploads.c.id == p.upload_id)
            .values(updated_at=p.created_at)
        )

    def s3_parts(self, upload_id: str) -> list[S3Part]:
        c = t.s3_parts.c
        rows = self.conn.execute(
            sa.select(t.s3_parts).where(c.upload_id == upload_id).order_by(c.number)
        )
        return [
            S3Part(r.upload_id, r.number, bytes(r.tree), r.size, r.etag, r.created_at) for r in rows
        ]

    def s3_part_roots(self) -> list[bytes]:
        """The tree of every part on record: gc roots, like datum outputs."""
        c = t.s3_parts.c
        return [bytes(r.tree) for r in self.conn.execute(sa.select(c.tree).distinct())]

    def s3_stale_uploads(self, before: float) -> list[str]:
        """Ids of the uploads last used (created, or a part added) before ``before``."""
        c = t.s3_uploads.c
        rows = self.conn.execute(sa.select(c.id).where(c.updated_at < before).order_by(c.id))
        return [r.id for r in rows]

    # Sessions: a datum's own view of the gateway (tusk.pps.s3io)

    def s3_add_session(self, s: S3Session) -> None:
        self.conn.execute(
            t.s3_sessions.insert().values(
                access_key=s.access_key, pipeline=s.pipeline, job=s.job, datum=s.datum,
                buckets=json.dumps(s.buckets, sort_keys=True), staging=s.staging,
                token_id=s.token_id, created_at=s.created_at,
            )
        )  # fmt: skip

    def s3_get_session(self, access_key: str) -> S3Session | None:
        c = t.s3_sessions.c
        row = self.conn.execute(sa.select(t.s3_sessions).where(c.access_key == access_key)).first()
        return _session(row) if row is not None else None

    def s3_job_sessions(self, pipeline: str, job: str) -> list[S3Session]:
        """The sessions of one job."""
        c = t.s3_sessions.c
        query = sa.select(t.s3_sessions).where(c.pipeline == pipeline, c.job == job)
        return [_session(r) for r in self.conn.execute(query.order_by(c.created_at))]

    def s3_session_jobs(self) -> list[tuple[str, str]]:
        """(pipeline, job) of every job that has a session."""
        c = t.s3_sessions.c
        rows = self.conn.execute(sa.select(c.pipeline, c.job).distinct())
        return [(r.pipeline, r.job) for r in rows]

    def s3_delete_session(self, access_key: str) -> None:
        c = t.s3_sessions.c
        self.conn.execute(t.s3_sessions.delete().where(c.access_key == access_key))


@frozen
class S3Session:
    access_key: str
    pipeline: str
    job: str
    datum: str
    buckets: dict[str, list[str]]  # bucket name -> [repo, branch, commit id]
    staging: str | None  # the open commit that bucket "out" writes into (s3_out)
    token_id: str | None  # the token whose id is the access key (auth on)
    created_at: float


def _session(row: sa.Row) -> S3Session:
    return S3Session(
        row.access_key, row.pipeline, row.job, row.datum, json.loads(row.buckets), row.staging,
        row.token_id, row.created_at,
    )  # fmt: skip
