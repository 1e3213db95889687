"""SQL for reading whole tables in bounded pieces (mixed into ``MetaTx``).

``tusk fsck`` checks stores of millions of nodes and chunks: it reads them a page at a time in
key order (keyset pagination: ``WHERE key > last ORDER BY key LIMIT n``), which uses the
primary key's index on both engines, holds no cursor open between pages, and keeps what a
caller holds at one page, whatever the store's size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tusk.storage.meta import schema as t
from tusk.storage.meta.records import ChunkLocation

_BATCH = 500
_PAGE = 2000


class ScanTxMixin:
    conn: Connection
    is_sqlite: bool

    def nodes_page(self, after: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """(hash, stored bytes) of up to ``limit`` tree nodes with hash > ``after``, by hash."""
        c = t.nodes.c
        rows = self.conn.execute(
            sa.select(c.hash, c.data).where(c.hash > after).order_by(c.hash).limit(limit)
        )
        return [(bytes(r.hash), bytes(r.data)) for r in rows]

    def existing_nodes(self, hashes: Sequence[bytes]) -> set[bytes]:
        """Which of ``hashes`` are stored tree nodes (their data is not read)."""
        c = t.nodes.c
        found: set[bytes] = set()
        items = list(dict.fromkeys(hashes))
        for i in range(0, len(items), _BATCH):
            rows = self.conn.execute(sa.select(c.hash).where(c.hash.in_(items[i : i + _BATCH])))
            found.update(bytes(r.hash) for r in rows)
        return found

    def chunk_hashes_page(self, after: bytes, limit: int) -> list[bytes]:
        """Up to ``limit`` indexed chunk digests > ``after``, in order."""
        c = t.chunks.c
        rows = self.conn.execute(
            sa.select(c.hash).where(c.hash > after).order_by(c.hash).limit(limit)
        )
        return [bytes(r.hash) for r in rows]

    def iter_pack_chunks(self, pack_id: str) -> Iterator[tuple[bytes, ChunkLocation]]:
        """The index rows naming ``pack_id``, streamed (a server-side cursor on PostgreSQL):
        a pack may hold a million small chunks."""
        c = t.chunks.c
        rows = self.conn.execution_options(stream_results=True, yield_per=_PAGE).execute(
            sa.select(c.hash, c.pack, c.offset, c.length, c.raw_length, c.codec).where(
                c.pack == pack_id
            )
        )
        for r in rows:
            yield bytes(r.hash), ChunkLocation(r.pack, r.offset, r.length, r.raw_length, r.codec)

    def chunks_in_unknown_packs(self, limit: int) -> tuple[list[tuple[bytes, str]], int]:
        """Up to ``limit`` (digest, pack) index rows whose pack has no row (a referenced
        object's piece: whose reference has none), and their count."""
        c = t.chunks.c
        r = t.source_refs.c
        no_pack = ~sa.select(t.packs.c.id).where(t.packs.c.id == c.pack).exists()
        no_ref = ~sa.select(r.id).where(sa.literal("ref:").concat(r.id) == c.pack).exists()
        orphan = sa.or_(sa.and_(c.codec != 2, no_pack), sa.and_(c.codec == 2, no_ref))
        rows = self.conn.execute(
            sa.select(c.hash, c.pack).where(orphan).order_by(c.hash).limit(limit)
        )
        count = self.conn.execute(
            sa.select(sa.func.count()).select_from(t.chunks).where(orphan)
        ).scalar()
        return [(bytes(r.hash), str(r.pack)) for r in rows], int(count or 0)

    def datum_roots_page(self, after: bytes, limit: int) -> list[bytes]:
        """Distinct datum output trees > ``after``, in order (gc and fsck roots)."""
        c = t.datums.c
        rows = self.conn.execute(
            sa.select(c.output_tree)
            .where(c.output_tree.is_not(None), c.output_tree > after)
            .distinct()
            .order_by(c.output_tree)
            .limit(limit)
        )
        return [bytes(r.output_tree) for r in rows]

    def copy_datums_skipped(
        self,
        pipeline: str,
        from_job: str,
        to_job: str,
        seqs: Sequence[tuple[str, int]],
        files_ref: str,
    ) -> int:
        """Record datums of ``from_job`` again in ``to_job`` as ``skipped``, each (id, seq)
        at its new place, keeping hash and output tree, copied by the database: a job whose
        datums are mostly unchanged does not carry them through Python.

        ``files`` becomes ``files_ref`` (a short JSON object naming where the file list is),
        unless the row's files are such a reference already (they start with ``{``), which is
        copied as is: a datum unchanged for many jobs names the job that listed its files,
        and a job of a thousand datums of a thousand files each does not copy a million
        file records. Returns how many rows were copied (a datum missing from ``from_job``
        is not)."""
        ph = "?" if self.is_sqlite else "%s"
        alias = "v" if self.is_sqlite else "v(column1, column2)"
        n = 0
        for i in range(0, len(seqs), _BATCH):
            part = seqs[i : i + _BATCH]
            values = ", ".join(f"({ph}, {ph})" for _ in part)
            sql = (
                "INSERT INTO datums (pipeline, job, id, seq, hash, state, files, output_tree, "
                "attempts, exit_code, error, stderr_tail, owner, lease_until, started_at, "
                "finished_at) "
                f"SELECT d.pipeline, {ph}, d.id, v.column2, d.hash, 'skipped', "
                f"CASE WHEN substr(d.files, 1, 1) = '{{' THEN d.files ELSE {ph} END, "
                "d.output_tree, 0, NULL, '', '', NULL, NULL, NULL, NULL "
                f"FROM (VALUES {values}) AS {alias} "
                f"JOIN datums d ON d.pipeline = {ph} AND d.job = {ph} AND d.id = v.column1"
            )
            params: list[object] = [to_job, files_ref]
            for datum_id, seq in part:
                params += [datum_id, seq]
            params += [pipeline, from_job]
            n += self.conn.exec_driver_sql(sql, tuple(params)).rowcount or 0
        return n
