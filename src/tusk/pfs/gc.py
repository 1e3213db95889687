"""gc: mark and sweep with a grace period, and repack of packs that are mostly dead.

One run, in this order; every step leaves a store that fsck finds clean, so a run killed at
any point (kill -9 included) loses nothing, and the next run finishes the job:

0. Expire: S3 multipart uploads no part was added to within the grace period are abandoned;
   they and their parts' rows go, so their part trees are no longer roots (their nodes and
   chunks are swept by this run unless touched within the grace period, else by a later one).
1. Mark: every node and chunk reachable from a commit, a datum's output or an S3 upload's
   part.
2. Sweep rows: delete the index rows of nodes and chunks nobody reaches and nobody touched
   within the grace period (writers touch what they reuse inside their transaction).
3. Repack: a pack whose indexed chunks fill less than ``repack_threshold`` of it has those
   chunks' stored bytes copied (not recompressed, but hash-checked) into a new pack object,
   written in full and durable first; then ONE transaction indexes the new pack and moves
   the rows that still name the old place (:meth:`MetaTx.move_chunks`). A writer that
   deduplicates against such a chunk only needs its row, which moves but never disappears;
   a reader sees the old or the new place, both complete. Killed before the transaction:
   the new object is unindexed garbage (step 5 of a later run); after it: the old pack is
   empty and retired.
4. Empty packs: a pack no row names, emptied or retired more than the grace period ago,
   loses its row, then its object (a reader that looked a chunk up before the move still
   finds the old object within the grace period).
5. Unindexed pack objects older than the grace period (interrupted uploads or repacks) go,
   under the writers' lock (see :meth:`ChunkStore.index_packs`), and so do stale temp files.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence

import zstandard

from tusk.errors import CorruptObject, InvalidArgument, StorageError
from tusk.pfs.maintenance import reachable
from tusk.pfs.models import DEFAULT_GRACE, DEFAULT_REPACK_THRESHOLD, GcReport
from tusk.pfs.retention import Plan
from tusk.pfs.tree import TreeReader
from tusk.storage.backends.base import ObjectInfo
from tusk.storage.chunks import ChunkStore
from tusk.storage.meta.records import ChunkLocation, PackRecord
from tusk.storage.meta.store import MetaStore
from tusk.storage.meta.store_gc import ChunkMove, PackUsage
from tusk.storage.packs import PackBuilder, pack_key


def gc(
    meta: MetaStore,
    chunk_store: ChunkStore,
    reader: TreeReader,
    grace: float = DEFAULT_GRACE,
    dry_run: bool = False,
    repack_threshold: float = DEFAULT_REPACK_THRESHOLD,
    expiring: Plan | None = None,
) -> GcReport:
    """Delete what no commit references and nobody touched within ``grace`` seconds, and
    repack packs whose live fraction is below ``repack_threshold`` (0 turns that off).
    ``expiring`` (a dry run's retention plan): count as if its commits and jobs were gone."""
    if not math.isfinite(grace) or grace < 0:
        raise InvalidArgument(f"gc grace must be 0 or more seconds, not {grace}")
    if not math.isfinite(repack_threshold) or not 0 <= repack_threshold <= 1:
        raise InvalidArgument(
            f"repack threshold must be between 0 and 1 (0 turns repacking off), "
            f"not {repack_threshold}"
        )
    started = time.time()
    cutoff = started - grace
    uploads_expired = _expire_uploads(meta, cutoff, dry_run)
    with meta.read() as tx:
        # Datum outputs are roots too: later jobs carry them forward into new commits; and
        # so are the parts of S3 multipart uploads in progress, until they complete.
        gone = expiring.expired if expiring is not None else {}
        roots = [c.tree for c in tx.iter_all_commits() if c.id not in gone]
        roots += tx.datum_output_roots(expiring.jobs if expiring is not None else ())
        roots += tx.s3_part_roots()
        all_nodes = tx.nodes_touched_before(cutoff)
        all_chunks = tx.chunks_touched_before(cutoff)
    live_nodes, live_chunks = reachable(reader, roots, None)
    dead_nodes = [h for h in all_nodes if h not in live_nodes]
    dead_chunks = [h for h in all_chunks if h not in live_chunks]
    if dry_run:
        report = _dry_run(meta, dead_nodes, dead_chunks, cutoff, repack_threshold)
        return dataclasses.replace(report, uploads_expired=uploads_expired)
    with meta.write() as tx:
        nodes_deleted = tx.delete_nodes(dead_nodes, cutoff)
        chunks_deleted = tx.delete_chunks(dead_chunks, cutoff)
    repacked = rewritten = 0
    if repack_threshold > 0:
        repacked, rewritten = _Repacker(meta, chunk_store).run(repack_threshold, cutoff)
    packs_deleted = bytes_freed = 0
    backend = chunk_store.backend
    with meta.write() as tx:
        expired = time.time() - grace  # retired packs count their grace from retirement
        empty = [p for p in tx.empty_packs() if p.created_at < expired]
        for p in empty:
            tx.delete_pack(p.id)
    # Objects go only after their rows are gone, so no reader is sent to a deleted pack.
    for p in empty:
        backend.delete(pack_key(p.id))
        packs_deleted += 1
        bytes_freed += p.size
    # Unindexed packs are swept under the write lock: a commit indexing a pack either did so
    # before (the pack is known here and kept) or does so after, and then finds its pack
    # gone and fails instead of committing (see PfsService.modify).
    with meta.write() as tx:
        known = {p.id for p in tx.list_packs()}
        for key, size in _stale_objects(backend.list("packs/"), known, cutoff):
            backend.delete(key)
            packs_deleted += 1
            bytes_freed += size
    temp_deleted = backend.remove_stale_temp(cutoff)
    return GcReport(
        nodes_deleted,
        chunks_deleted,
        packs_deleted,
        bytes_freed,
        temp_deleted,
        packs_repacked=repacked,
        bytes_rewritten=rewritten,
        uploads_expired=uploads_expired,
    )


def _expire_uploads(meta: MetaStore, cutoff: float, dry_run: bool) -> int:
    """Forget S3 multipart uploads last used before ``cutoff``; how many (or would be).

    Their part trees stop being roots. A part written concurrently with the expiry is safe:
    its upload row is gone, so the gateway refuses it, and its freshly touched nodes and
    chunks outlive this run's grace period.
    """
    if dry_run:
        with meta.read() as tx:
            return len(tx.s3_stale_uploads(cutoff))
    with meta.write() as tx:
        stale = tx.s3_stale_uploads(cutoff)
        for upload_id in stale:
            tx.s3_delete_upload(upload_id)
    return len(stale)


# What a pack holds besides payloads, at most: header and trailer, and a footer entry (69
# bytes, compressed or not, plus zstd's framing) per chunk.
_PACK_OVERHEAD = 64
_ENTRY_OVERHEAD = 72


def _should_repack(u: PackUsage, threshold: float, cutoff: float) -> bool:
    """Whether a pack's live part (its live chunks and their share of the pack's own bytes)
    is below ``threshold`` of it: a fully live pack, small or not, never qualifies, so a
    repacked pack is not repacked again."""
    live = u.live_bytes + _PACK_OVERHEAD + _ENTRY_OVERHEAD * u.live_chunks
    return u.live_chunks > 0 and u.pack.created_at < cutoff and live < threshold * u.pack.size


def _dry_run(
    meta: MetaStore,
    dead_nodes: list[bytes],
    dead_chunks: list[bytes],
    cutoff: float,
    threshold: float,
) -> GcReport:
    """What a run would do now: the same marks, with the sweep and repack only counted."""
    with meta.read() as tx:
        usage = tx.pack_usage()
        dead = tx.locate_chunks(dead_chunks)
    gone: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for loc in dead.values():
        gone[loc.pack][0] += loc.length
        gone[loc.pack][1] += 1
    packs = freed = repacked = rewritten = 0
    for u in usage:
        lost_bytes, lost_chunks = gone.get(u.pack.id, (0, 0))
        after = PackUsage(u.pack, u.live_bytes - lost_bytes, u.live_chunks - lost_chunks)
        if after.live_chunks == 0 and u.pack.created_at < cutoff:
            packs, freed = packs + 1, freed + u.pack.size
        elif threshold > 0 and _should_repack(after, threshold, cutoff):
            packs, freed = packs + 1, freed + u.pack.size
            repacked, rewritten = repacked + 1, rewritten + after.live_bytes
    return GcReport(
        len(dead_nodes),
        len(dead_chunks),
        packs,
        freed,
        0,
        dry_run=True,
        packs_repacked=repacked,
        bytes_rewritten=rewritten,
    )


class _Repacker:
    """Copies the live chunks of mostly dead packs into new packs of about the pack target."""

    def __init__(self, meta: MetaStore, store: ChunkStore) -> None:
        self.meta = meta
        self.store = store
        self.backend = store.backend
        self.dctx = zstandard.ZstdDecompressor()

    def run(self, threshold: float, cutoff: float) -> tuple[int, int]:
        """Repack every pack below ``threshold``; return (packs retired, bytes rewritten)."""
        with self.meta.read() as tx:
            usage = [u for u in tx.pack_usage() if _should_repack(u, threshold, cutoff)]
        target = self.store.config.pack_target
        retired = rewritten = 0
        batch: list[str] = []
        live = 0
        for u in usage:
            batch.append(u.pack.id)
            live += u.live_bytes
            if live >= target:
                n, size = self._repack(batch)
                retired, rewritten = retired + n, rewritten + size
                batch, live = [], 0
        if batch:
            n, size = self._repack(batch)
            retired, rewritten = retired + n, rewritten + size
        return retired, rewritten

    def _repack(self, pack_ids: Sequence[str]) -> tuple[int, int]:
        """Move the indexed chunks of ``pack_ids`` into one new pack; (retired, its size)."""
        with self.meta.read() as tx:
            rows = tx.chunks_in_packs(pack_ids)
        by_pack: dict[str, list[tuple[bytes, ChunkLocation]]] = defaultdict(list)
        for digest, loc in rows:
            by_pack[loc.pack].append((digest, loc))
        new_id = uuid.uuid4().hex
        builder = PackBuilder()
        moves: list[ChunkMove] = []
        for pack_id in pack_ids:
            staged = self._live_payloads(pack_id, by_pack.get(pack_id, []))
            for digest, loc, payload in staged:
                builder.add(digest, payload, loc.raw_length, loc.codec)
                offset = builder.entries[-1].offset
                new = ChunkLocation(new_id, offset, len(payload), loc.raw_length, loc.codec)
                moves.append(ChunkMove(digest, loc, new))
        if not moves:
            return 0, 0
        key = pack_key(new_id)
        # Written in full and durable before any row names it.
        self.backend.put_parts(key, builder.seal(), durable=True)
        record = PackRecord(new_id, builder.size, len(builder), time.time())
        with self.meta.write() as tx:
            if not self.backend.exists(key):
                # A concurrent gc with no grace swept it as unindexed: the old packs stay.
                return 0, 0
            emptied = tx.move_chunks(record, moves, time.time())
        return len(emptied), record.size

    def _live_payloads(
        self, pack_id: str, entries: list[tuple[bytes, ChunkLocation]]
    ) -> list[tuple[bytes, ChunkLocation, bytes]]:
        """The stored bytes of a pack's indexed chunks, each checked against its hash; none
        if the pack is missing or damaged (left as it is, for fsck to report)."""
        if not entries:
            return []
        try:
            data = self.backend.get(pack_key(pack_id))
        except StorageError:
            return []
        out: list[tuple[bytes, ChunkLocation, bytes]] = []
        for digest, loc in entries:
            payload = data[loc.offset : loc.offset + loc.length]
            try:
                ChunkStore.decode(digest, loc, payload, self.dctx)
            except CorruptObject:
                return []
            out.append((digest, loc, payload))
        return out


def _stale_objects(
    objects: Iterator[ObjectInfo], known: set[str], cutoff: float
) -> Iterator[tuple[str, int]]:
    for o in objects:
        if o.key.split("/")[-1] not in known and o.mtime < cutoff:
            yield o.key, o.size
