"""SQL for gc's repack (mixed into ``MetaTx``): how full each pack is, and moving chunks.

Repack copies a pack's live chunks into a new pack object, then moves their index rows in one
transaction (:meth:`GcTxMixin.move_chunks`). A row moves only if it still names the old pack
at the old place, so a concurrent gc that moved it first wins and nothing is moved twice.

A pack whose last row moved is *retired*: its ``created_at`` is set to the time it emptied.
``created_at`` is the moment from which gc's grace period counts for a pack object (its
write, or its retirement), so a reader that looked up a chunk's old place just before the
move still finds the old object until a gc after the grace period deletes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tusk.storage.meta import schema as t
from tusk.storage.meta.records import ChunkLocation, PackRecord

_BATCH = 500


class PackUsage(NamedTuple):
    """A pack and what of it the chunk index still names."""

    pack: PackRecord
    live_bytes: int  # payload bytes of the chunks indexed in it
    live_chunks: int


class ChunkMove(NamedTuple):
    hash: bytes
    old: ChunkLocation
    new: ChunkLocation


class GcTxMixin:
    conn: Connection
    is_sqlite: bool

    def pack_usage(self) -> list[PackUsage]:
        """Every pack with the bytes and count of the chunks the index places in it."""
        c, p = t.chunks.c, t.packs.c
        used = (
            sa.select(
                c.pack,
                sa.func.sum(c.length).label("live"),
                sa.func.count().label("n"),
            )
            .group_by(c.pack)
            .subquery()
        )
        rows = self.conn.execute(
            sa.select(p.id, p.size, p.chunks, p.created_at, used.c.live, used.c.n)
            .select_from(t.packs.outerjoin(used, used.c.pack == p.id))
            .order_by(p.id)
        )
        return [
            PackUsage(
                PackRecord(r.id, r.size, r.chunks, r.created_at), int(r.live or 0), int(r.n or 0)
            )
            for r in rows
        ]

    def chunks_in_packs(self, pack_ids: Sequence[str]) -> list[tuple[bytes, ChunkLocation]]:
        """The index rows that place chunks in ``pack_ids``, in pack and offset order."""
        c = t.chunks.c
        out: list[tuple[bytes, ChunkLocation]] = []
        for i in range(0, len(pack_ids), _BATCH):
            rows = self.conn.execute(
                sa.select(c.hash, c.pack, c.offset, c.length, c.raw_length, c.codec)
                .where(c.pack.in_(pack_ids[i : i + _BATCH]))
                .order_by(c.pack, c.offset)
            )
            out.extend(
                (bytes(r.hash), ChunkLocation(r.pack, r.offset, r.length, r.raw_length, r.codec))
                for r in rows
            )
        return out

    def move_chunks(
        self, new_pack: PackRecord, moves: Sequence[ChunkMove], now: float
    ) -> list[str]:
        """Index ``new_pack`` and point each moved chunk's row at it, if the row still names
        the old place; retire the old packs this empties and return their ids."""
        self.conn.execute(
            t.packs.insert().values(
                id=new_pack.id,
                size=new_pack.size,
                chunks=new_pack.chunks,
                created_at=new_pack.created_at,
            )
        )
        ph = "?" if self.is_sqlite else "%s"
        rows = [
            (m.new.pack, m.new.offset, m.new.length, m.hash, m.old.pack, m.old.offset)
            for m in moves
        ]
        if rows:
            self.conn.exec_driver_sql(
                f'UPDATE chunks SET pack = {ph}, "offset" = {ph}, length = {ph} '
                f'WHERE hash = {ph} AND pack = {ph} AND "offset" = {ph}',
                rows,
            )
        old = sorted({m.old.pack for m in moves})
        c, p = t.chunks.c, t.packs.c
        still_used = sa.select(c.pack).where(c.pack == p.id).exists()
        emptied = [
            r.id for r in self.conn.execute(sa.select(p.id).where(p.id.in_(old), ~still_used))
        ]
        if emptied:
            self.conn.execute(t.packs.update().where(p.id.in_(emptied)).values(created_at=now))
        return emptied
