"""SQL access for the whole of Tusk, written once with SQLAlchemy Core.

SQLite is the embedded default (WAL, one writer at a time via ``BEGIN IMMEDIATE``); PostgreSQL
is a second engine for the same code: write transactions lock the rows they depend on with
``SELECT ... FOR UPDATE`` there, which is a no-op on SQLite where the whole database is locked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from tusk.errors import StorageError, Unavailable
from tusk.storage.meta import schema as t
from tusk.storage.meta.presence import (
    FileSchedulerPresence,
    PgSchedulerPresence,
    SchedulerPresence,
)
from tusk.storage.meta.records import (
    BranchRecord,
    ChunkLocation,
    CommitRecord,
    PackRecord,
    RepoRecord,
)
from tusk.storage.meta.store_auth import AuthTxMixin
from tusk.storage.meta.store_checks import CheckTxMixin
from tusk.storage.meta.store_gc import GcTxMixin
from tusk.storage.meta.store_holds import HoldTxMixin
from tusk.storage.meta.store_pps import PpsTxMixin
from tusk.storage.meta.store_projects import ProjectTxMixin
from tusk.storage.meta.store_refs import RefTxMixin
from tusk.storage.meta.store_retention import RetentionTxMixin
from tusk.storage.meta.store_s3 import S3TxMixin
from tusk.storage.meta.store_scan import ScanTxMixin
from tusk.storage.meta.store_secrets import SecretTxMixin
from tusk.storage.meta.store_tags import TagTxMixin
from tusk.storage.meta.store_triggers import TriggerTxMixin
from tusk.storage.meta.store_webhooks import WebhookTxMixin

# The newest migration; tests check it against the migrations folder.
SCHEMA_HEAD = "0017"
_BATCH = 500


def _batches(items: Sequence[Any], size: int = _BATCH) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class MetaStore:
    """Owns the engine, migrates the schema on open, and hands out transactions."""

    def __init__(self, url: str) -> None:
        url = engine_url(url)
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine: Engine = sa.create_engine(
                url, connect_args={"timeout": 120, "check_same_thread": False}
            )
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_on_begin)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
            event.listen(self.engine, "begin", _pg_on_begin)
        self._joined = threading.local()  # the thread's atomic() transaction, if any
        self._migrate()

    def _migrate(self) -> None:
        # Every open checks the schema; only an out-of-date one takes the write lock.
        with self.read() as tx:
            if _schema_version(tx.conn) == SCHEMA_HEAD:
                return
        with self.write() as tx:
            conn = tx.conn
            if _schema_version(conn) == SCHEMA_HEAD:
                return  # another process migrated it meanwhile
            from alembic import command
            from alembic.config import Config

            cfg = Config()
            cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        if self.is_sqlite:
            # Fold the WAL back into the database so a closed home is one compact file.
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            except sa.exc.OperationalError:
                pass  # another process holds it open; its close will checkpoint
        self.engine.dispose()

    def scheduler_presence(self) -> SchedulerPresence:
        """A new handle on the store's scheduler lock (see :mod:`tusk.storage.meta.presence`)."""
        if self.is_sqlite:  # a home's database is always a file (WAL needs one)
            return FileSchedulerPresence(Path(f"{sa.engine.make_url(self.url).database}.scheduler"))
        return PgSchedulerPresence(self.engine)

    @contextmanager
    def atomic(self) -> Iterator[MetaTx]:
        """One write transaction that this thread's reads and writes join until it ends.

        Operations that each open their own transaction (create a repo, then a pipeline,
        then its branch) run inside it and commit together, or roll back together if one
        fails: ``tusk apply`` is all or nothing this way.
        """
        joined: MetaTx | None = getattr(self._joined, "tx", None)
        if joined is not None:
            yield joined
            return
        with self.write() as tx:
            self._joined.tx = tx
            try:
                yield tx
            finally:
                self._joined.tx = None

    def in_atomic(self) -> bool:
        """Whether this thread is inside :meth:`atomic`."""
        return getattr(self._joined, "tx", None) is not None

    @contextmanager
    def read(self) -> Iterator[MetaTx]:
        joined: MetaTx | None = getattr(self._joined, "tx", None)
        if joined is not None:
            yield joined  # inside atomic(): see its own uncommitted writes
            return
        try:
            with self.engine.connect() as conn, conn.begin():
                yield MetaTx(conn, self.is_sqlite)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise self._failure(exc) from exc

    @contextmanager
    def write(self) -> Iterator[MetaTx]:
        """A write transaction; on SQLite it holds the database's write lock from the start.

        If the store fails mid-way the transaction rolls back: nothing is half-written.
        """
        joined: MetaTx | None = getattr(self._joined, "tx", None)
        if joined is not None:
            yield joined  # part of the enclosing atomic() transaction
            return
        try:
            with (
                self.engine.connect().execution_options(tusk_write=True) as conn,
                conn.begin(),
            ):
                yield MetaTx(conn, self.is_sqlite)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: sa.exc.DBAPIError) -> StorageError:
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig)
        if self.is_sqlite:
            return StorageError(f"metadata store error: {first}")
        where = self.engine.url.render_as_string(hide_password=True)
        return Unavailable(
            f"metadata store {where} is unreachable ({first}); retry when it is back"
        )

    # Chunk index operations that stand alone (each its own transaction).

    def touch_chunks(self, hashes: Sequence[bytes]) -> int:
        """Mark chunks as in use now (so gc's grace period spares them); return how many exist."""
        if not hashes:
            return 0
        with self.write() as tx:
            return tx.touch_chunks_count(hashes)

    def find_chunks(self, hashes: Sequence[bytes]) -> set[bytes]:
        """Which of ``hashes`` the chunk index knows (a read; no lock taken)."""
        if not hashes:
            return set()
        with self.read() as tx:
            return tx.find_chunks(hashes)

    def locate_chunks(self, hashes: Sequence[bytes]) -> dict[bytes, ChunkLocation]:
        with self.read() as tx:
            return tx.locate_chunks(hashes)

    def get_nodes(self, hashes: Sequence[bytes]) -> dict[bytes, bytes]:
        with self.read() as tx:
            return tx.get_nodes(hashes)


def _schema_version(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    return str(version) if version is not None else None


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (the pysqlite recipe).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=120000")
    cur.close()


def engine_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` URLs use psycopg 3; others pass unchanged."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# PostgreSQL: write transactions take one transaction-level advisory lock, so writers run one
# at a time as they do on SQLite and every invariant proven there (a branch moves from the
# head it read, a job starts once, gc sweeps under the writers' lock) holds unchanged. Reads
# never wait. Finer locks can replace it where write concurrency matters; datum claims
# already use FOR UPDATE SKIP LOCKED.
_PG_WRITE_LOCK = 7_356_238_501


def _pg_on_begin(conn: Connection) -> None:
    if conn.get_execution_options().get("tusk_write"):
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_WRITE_LOCK})")


def _sqlite_on_begin(conn: Connection) -> None:
    if conn.get_execution_options().get("tusk_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def _commit_from_row(row: Any) -> CommitRecord:
    return CommitRecord(
        id=row.id,
        repo=row.repo,
        branch=row.branch,
        parent=row.parent,
        tree=bytes(row.tree),
        state=row.state,
        description=row.description,
        started_at=row.started_at,
        finished_at=row.finished_at,
        size=row.size,
        files=row.files,
        commit_set=row.commit_set,
        merge_parent=row.merge_parent,
    )


class MetaTx(
    CheckTxMixin,
    HoldTxMixin,
    RefTxMixin,
    PpsTxMixin,
    WebhookTxMixin,
    AuthTxMixin,
    ProjectTxMixin,
    SecretTxMixin,
    GcTxMixin,
    ScanTxMixin,
    S3TxMixin,
    TriggerTxMixin,
    TagTxMixin,
    RetentionTxMixin,
):
    """One transaction. Methods named ``get_*`` return None when absent (pfs raises NotFound)."""

    def __init__(self, conn: Connection, is_sqlite: bool) -> None:
        self.conn = conn
        self.is_sqlite = is_sqlite

    def _insert(self, table: sa.Table) -> Any:
        if self.is_sqlite:
            return sqlite_dialect.insert(table)
        from sqlalchemy.dialects import postgresql  # imported only when used: ~75 ms

        return postgresql.insert(table)

    # Repos

    def get_repo(self, name: str) -> RepoRecord | None:
        row = self.conn.execute(sa.select(t.repos).where(t.repos.c.name == name)).first()
        return RepoRecord(row.name, row.description, row.created_at) if row else None

    def list_repos(self) -> list[RepoRecord]:
        rows = self.conn.execute(sa.select(t.repos).order_by(t.repos.c.name))
        return [RepoRecord(r.name, r.description, r.created_at) for r in rows]

    def insert_repo(self, repo: RepoRecord) -> None:
        self.conn.execute(
            t.repos.insert().values(
                name=repo.name, description=repo.description, created_at=repo.created_at
            )
        )

    def update_repo_description(self, name: str, description: str) -> None:
        self.conn.execute(
            t.repos.update().where(t.repos.c.name == name).values(description=description)
        )

    def delete_repo(self, name: str) -> None:
        self.conn.execute(t.branch_provenance.delete().where(t.branch_provenance.c.repo == name))
        self.conn.execute(
            t.branch_provenance.delete().where(t.branch_provenance.c.from_repo == name)
        )
        self.conn.execute(t.branches.delete().where(t.branches.c.repo == name))
        self.delete_repo_triggers(name)
        self.delete_repo_tags(name)
        self.delete_retention(name)
        self.conn.execute(t.branch_protection.delete().where(t.branch_protection.c.repo == name))
        self.delete_repo_checks(name)
        self.conn.execute(t.commits.delete().where(t.commits.c.repo == name))
        self.conn.execute(t.repos.delete().where(t.repos.c.name == name))

    # Branches

    def get_branch(self, repo: str, name: str, *, lock: bool = False) -> BranchRecord | None:
        query = sa.select(t.branches).where(t.branches.c.repo == repo, t.branches.c.name == name)
        if lock and not self.is_sqlite:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return BranchRecord(row.repo, row.name, row.head, row.created_at) if row else None

    def list_branches(self, repo: str | None = None) -> list[BranchRecord]:
        query = sa.select(t.branches).order_by(t.branches.c.repo, t.branches.c.name)
        if repo is not None:
            query = query.where(t.branches.c.repo == repo)
        return [
            BranchRecord(r.repo, r.name, r.head, r.created_at) for r in self.conn.execute(query)
        ]

    def upsert_branch(self, branch: BranchRecord) -> None:
        stmt = self._insert(t.branches).values(
            repo=branch.repo, name=branch.name, head=branch.head, created_at=branch.created_at
        )
        self.conn.execute(
            stmt.on_conflict_do_update(index_elements=["repo", "name"], set_={"head": branch.head})
        )

    def set_branch_head(self, repo: str, name: str, head: str | None) -> None:
        self.conn.execute(
            t.branches.update()
            .where(t.branches.c.repo == repo, t.branches.c.name == name)
            .values(head=head)
        )

    def delete_branch(self, repo: str, name: str) -> None:
        bp = t.branch_provenance
        self.conn.execute(bp.delete().where(bp.c.repo == repo, bp.c.branch == name))
        self.conn.execute(bp.delete().where(bp.c.from_repo == repo, bp.c.from_branch == name))
        self.delete_trigger(repo, name)  # its own; triggers that follow it wait for it to return
        self.conn.execute(
            t.branches.delete().where(t.branches.c.repo == repo, t.branches.c.name == name)
        )

    def branches_at(self, commit_id: str) -> list[BranchRecord]:
        rows = self.conn.execute(sa.select(t.branches).where(t.branches.c.head == commit_id))
        return [BranchRecord(r.repo, r.name, r.head, r.created_at) for r in rows]

    # Branch provenance

    def set_branch_provenance(
        self, repo: str, branch: str, sources: Iterable[tuple[str, str]]
    ) -> None:
        bp = t.branch_provenance
        self.conn.execute(bp.delete().where(bp.c.repo == repo, bp.c.branch == branch))
        rows = [
            {"repo": repo, "branch": branch, "from_repo": r, "from_branch": b} for r, b in sources
        ]
        if rows:
            self.conn.execute(bp.insert(), rows)

    def branch_provenance(self, repo: str, branch: str) -> list[tuple[str, str]]:
        bp = t.branch_provenance
        rows = self.conn.execute(
            sa.select(bp.c.from_repo, bp.c.from_branch)
            .where(bp.c.repo == repo, bp.c.branch == branch)
            .order_by(bp.c.from_repo, bp.c.from_branch)
        )
        return [(r.from_repo, r.from_branch) for r in rows]

    def branch_subvenance(self, repo: str, branch: str | None = None) -> list[tuple[str, str]]:
        """Branches (repo, branch) whose provenance names ``repo`` (and ``branch`` if given)."""
        bp = t.branch_provenance
        query = sa.select(bp.c.repo, bp.c.branch, bp.c.from_repo, bp.c.from_branch).where(
            bp.c.from_repo == repo
        )
        if branch is not None:
            query = query.where(bp.c.from_branch == branch)
        return [(r.repo, r.branch) for r in self.conn.execute(query.order_by(bp.c.repo))]

    # Commits

    def get_commit(self, commit_id: str) -> CommitRecord | None:
        row = self.conn.execute(sa.select(t.commits).where(t.commits.c.id == commit_id)).first()
        return _commit_from_row(row) if row else None

    def find_commits_by_prefix(self, repo: str, prefix: str) -> list[CommitRecord]:
        rows = self.conn.execute(
            sa.select(t.commits)
            .where(t.commits.c.repo == repo, t.commits.c.id.startswith(prefix))
            .limit(2)
        )
        return [_commit_from_row(r) for r in rows]

    def list_commits(self, repo: str) -> list[CommitRecord]:
        rows = self.conn.execute(
            sa.select(t.commits)
            .where(t.commits.c.repo == repo)
            .order_by(t.commits.c.started_at.desc(), t.commits.c.id)
        )
        return [_commit_from_row(r) for r in rows]

    def iter_all_commits(self) -> Iterator[CommitRecord]:
        for row in self.conn.execute(sa.select(t.commits)):
            yield _commit_from_row(row)

    def children(self, commit_id: str) -> list[CommitRecord]:
        """The commits with ``commit_id`` as a parent, first or (a merge's) second."""
        c = t.commits.c
        rows = self.conn.execute(
            sa.select(t.commits).where(sa.or_(c.parent == commit_id, c.merge_parent == commit_id))
        )
        return [_commit_from_row(r) for r in rows]

    def commit_graph(self, repo: str) -> dict[str, tuple[str | None, str | None, float]]:
        """Every commit of ``repo``: id -> (parent, merge parent, started_at), in one query."""
        c = t.commits.c
        rows = self.conn.execute(
            sa.select(c.id, c.parent, c.merge_parent, c.started_at).where(c.repo == repo)
        )
        return {r.id: (r.parent, r.merge_parent, r.started_at) for r in rows}

    def insert_commit(self, c: CommitRecord) -> None:
        self.conn.execute(
            t.commits.insert().values(
                id=c.id,
                repo=c.repo,
                branch=c.branch,
                parent=c.parent,
                tree=c.tree,
                state=c.state,
                description=c.description,
                started_at=c.started_at,
                finished_at=c.finished_at,
                size=c.size,
                files=c.files,
                commit_set=c.commit_set,
                merge_parent=c.merge_parent,
            )
        )

    def update_commit(self, commit_id: str, **values: Any) -> None:
        self.conn.execute(t.commits.update().where(t.commits.c.id == commit_id).values(**values))

    def reparent_children(self, old_parent: str, new_parent: str | None) -> None:
        """Children of ``old_parent`` take ``new_parent`` instead, as first or second parent;
        a merge whose two parents so become one is a plain commit again."""
        c = t.commits.c
        self.conn.execute(
            t.commits.update().where(c.parent == old_parent).values(parent=new_parent)
        )
        self.conn.execute(
            t.commits.update().where(c.merge_parent == old_parent).values(merge_parent=new_parent)
        )
        if new_parent is not None:
            self.conn.execute(
                t.commits.update()
                .where(c.merge_parent == new_parent, c.parent == new_parent)
                .values(merge_parent=None)
            )

    def delete_commit(self, commit_id: str) -> None:
        self.conn.execute(t.commits.delete().where(t.commits.c.id == commit_id))

    def commits_in_set(self, commit_set: str) -> list[CommitRecord]:
        rows = self.conn.execute(sa.select(t.commits).where(t.commits.c.commit_set == commit_set))
        return [_commit_from_row(r) for r in rows]

    # Tree nodes

    def put_nodes(self, nodes: dict[bytes, bytes]) -> None:
        if not nodes:
            return
        now = time.time()
        rows = [{"hash": h, "data": d, "touched_at": now} for h, d in nodes.items()]
        for batch in _batches(rows):
            stmt = self._insert(t.nodes)
            self.conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["hash"], set_={"touched_at": stmt.excluded.touched_at}
                ),
                list(batch),
            )

    def get_nodes(self, hashes: Sequence[bytes]) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        for batch in _batches(list(hashes)):
            rows = self.conn.execute(
                sa.select(t.nodes.c.hash, t.nodes.c.data).where(t.nodes.c.hash.in_(batch))
            )
            out.update((bytes(r.hash), bytes(r.data)) for r in rows)
        return out

    def nodes_touched_before(self, cutoff: float) -> list[bytes]:
        """Hashes of tree nodes last written or reused before ``cutoff`` (no node data read)."""
        c = t.nodes.c
        return [
            bytes(r.hash) for r in self.conn.execute(sa.select(c.hash).where(c.touched_at < cutoff))
        ]

    def chunks_touched_before(self, cutoff: float) -> list[bytes]:
        """Digests of chunks last written or reused before ``cutoff``."""
        c = t.chunks.c
        return [
            bytes(r.hash) for r in self.conn.execute(sa.select(c.hash).where(c.touched_at < cutoff))
        ]

    def iter_nodes(self) -> Iterator[tuple[bytes, bytes, float]]:
        for r in self.conn.execute(sa.select(t.nodes)):
            yield bytes(r.hash), bytes(r.data), r.touched_at

    def delete_nodes(self, hashes: Sequence[bytes], touched_before: float) -> int:
        n = 0
        for batch in _batches(list(hashes)):
            res = self.conn.execute(
                t.nodes.delete().where(
                    t.nodes.c.hash.in_(batch), t.nodes.c.touched_at < touched_before
                )
            )
            n += res.rowcount or 0
        return n

    # Chunks and packs

    def _ph(self, n: int) -> str:
        return ", ".join(["?" if self.is_sqlite else "%s"] * n)

    def find_chunks(self, hashes: Sequence[bytes]) -> set[bytes]:
        # The hot paths of an upload use driver-level executemany: the same SQL on SQLite and
        # PostgreSQL (ON CONFLICT exists in both), without per-row Core compilation.
        found: set[bytes] = set()
        for batch in _batches(list(hashes)):
            rows = self.conn.exec_driver_sql(
                f"SELECT hash FROM chunks WHERE hash IN ({self._ph(len(batch))})", tuple(batch)
            )
            found.update(bytes(r[0]) for r in rows)
        return found

    def touch_chunks_count(self, hashes: Sequence[bytes]) -> int:
        """Touch distinct ``hashes``; return how many exist."""
        now = time.time()
        n = 0
        for batch in _batches(list(hashes)):
            res = self.conn.exec_driver_sql(
                f"UPDATE chunks SET touched_at = {self._ph(1)} "
                f"WHERE hash IN ({self._ph(len(batch))})",
                (now, *batch),
            )
            n += res.rowcount
        return n

    def add_pack(self, pack: PackRecord, entries: Sequence[tuple[bytes, ChunkLocation]]) -> None:
        self.conn.execute(
            self._insert(t.packs)
            .values(id=pack.id, size=pack.size, chunks=pack.chunks, created_at=pack.created_at)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        self.add_chunk_rows(entries)

    def add_chunk_rows(self, entries: Sequence[tuple[bytes, ChunkLocation]]) -> None:
        """Index rows of chunks (of a pack, or pieces of referenced objects)."""
        now = time.time()
        rows = [
            (h, loc.pack, loc.offset, loc.length, loc.raw_length, loc.codec, now)
            for h, loc in entries
        ]
        if rows:
            # A chunk stored twice by racing writers keeps its first location.
            self.conn.exec_driver_sql(
                'INSERT INTO chunks (hash, pack, "offset", length, raw_length, codec, touched_at) '
                f"VALUES ({self._ph(7)}) ON CONFLICT (hash) DO NOTHING",
                rows,
            )

    def locate_chunks(self, hashes: Sequence[bytes]) -> dict[bytes, ChunkLocation]:
        # Plain SQL on the driver, as for inserts: every read of a file's chunks asks this, and
        # SQLAlchemy's row processing cost more than the query itself (a check's copy of a
        # 10,000-file commit, the chunks of a big file).
        out: dict[bytes, ChunkLocation] = {}
        for batch in _batches(list(dict.fromkeys(hashes))):
            rows = self.conn.exec_driver_sql(
                'SELECT hash, pack, "offset", length, raw_length, codec FROM chunks '
                f"WHERE hash IN ({self._ph(len(batch))})",
                tuple(batch),
            )
            for h, pack, offset, length, raw_length, codec in rows.fetchall():
                out[bytes(h)] = ChunkLocation(pack, offset, length, raw_length, codec)
        return out

    def iter_chunks(self) -> Iterator[tuple[bytes, ChunkLocation, float]]:
        c = t.chunks.c
        for r in self.conn.execute(sa.select(t.chunks).order_by(c.pack, c.offset)):
            yield (
                bytes(r.hash),
                ChunkLocation(r.pack, r.offset, r.length, r.raw_length, r.codec),
                r.touched_at,
            )

    def list_packs(self) -> list[PackRecord]:
        rows = self.conn.execute(sa.select(t.packs).order_by(t.packs.c.id))
        return [PackRecord(r.id, r.size, r.chunks, r.created_at) for r in rows]

    def delete_chunks(self, hashes: Sequence[bytes], touched_before: float) -> int:
        n = 0
        for batch in _batches(list(hashes)):
            res = self.conn.execute(
                t.chunks.delete().where(
                    t.chunks.c.hash.in_(batch), t.chunks.c.touched_at < touched_before
                )
            )
            n += res.rowcount or 0
        return n

    def empty_packs(self) -> list[PackRecord]:
        """Packs that no chunk row points at any more."""
        c = t.chunks.c
        used = sa.select(c.pack).where(c.pack == t.packs.c.id).exists()
        rows = self.conn.execute(sa.select(t.packs).where(~used))
        return [PackRecord(r.id, r.size, r.chunks, r.created_at) for r in rows]

    def delete_pack(self, pack_id: str) -> None:
        self.conn.execute(t.packs.delete().where(t.packs.c.id == pack_id))

    def stats(self) -> dict[str, int]:
        def count(table: sa.Table) -> int:
            return int(
                self.conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0
            )

        pack_bytes = self.conn.execute(sa.select(sa.func.sum(t.packs.c.size))).scalar() or 0
        return {
            "repos": count(t.repos),
            "commits": count(t.commits),
            "nodes": count(t.nodes),
            "packs": count(t.packs),
            "chunks": count(t.chunks),
            "pack_bytes": int(pack_bytes),
        }
