"""gc: mark and sweep with a grace period (nodes, chunks, packs, stale temporary objects)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from tusk.pfs.maintenance import reachable
from tusk.pfs.models import GcReport
from tusk.pfs.tree import TreeReader
from tusk.storage.backends.base import ObjectInfo
from tusk.storage.chunks import ChunkStore
from tusk.storage.meta.store import MetaStore
from tusk.storage.packs import pack_key

DEFAULT_GRACE = 3600.0


def gc(
    meta: MetaStore,
    chunk_store: ChunkStore,
    reader: TreeReader,
    grace: float = DEFAULT_GRACE,
    dry_run: bool = False,
) -> GcReport:
    """Delete nodes, chunks and packs that no commit references and nobody touched lately.

    Writers touch every chunk they reuse and every node they write, inside their transaction,
    so anything touched within ``grace`` seconds survives; an interrupted gc only leaves
    garbage for the next run.
    """
    started = time.time()
    cutoff = started - grace
    with meta.read() as tx:
        # Datum outputs are roots too: later jobs carry them forward into new commits.
        roots = [c.tree for c in tx.iter_all_commits()] + tx.datum_output_roots()
        all_nodes = tx.nodes_touched_before(cutoff)
        all_chunks = tx.chunks_touched_before(cutoff)
    live_nodes, live_chunks = reachable(reader, roots, None)
    dead_nodes = [h for h in all_nodes if h not in live_nodes]
    dead_chunks = [h for h in all_chunks if h not in live_chunks]
    nodes_deleted = chunks_deleted = packs_deleted = bytes_freed = temp_deleted = 0
    if dry_run:
        return GcReport(len(dead_nodes), len(dead_chunks), 0, 0, 0, dry_run=True)
    with meta.write() as tx:
        nodes_deleted = tx.delete_nodes(dead_nodes, cutoff)
        chunks_deleted = tx.delete_chunks(dead_chunks, cutoff)
        empty = [p for p in tx.empty_packs() if p.created_at < cutoff]
        for p in empty:
            tx.delete_pack(p.id)
    # Objects go only after their rows are gone, so no reader is sent to a deleted pack.
    backend = chunk_store.backend
    for p in empty:
        backend.delete(pack_key(p.id))
        packs_deleted += 1
        bytes_freed += p.size
    # Unindexed packs are swept under the write lock: a commit indexing a pack either did so
    # before (the pack is known here and kept) or does so after, and then finds its pack
    # gone and fails instead of committing (see PfsService.modify).
    with meta.write() as tx:
        known = {p.id for p in tx.list_packs()}
        for obj in _stale_objects(backend.list("packs/"), known, cutoff):
            backend.delete(obj[0])
            packs_deleted += 1
            bytes_freed += obj[1]
    temp_deleted = backend.remove_stale_temp(cutoff)
    return GcReport(nodes_deleted, chunks_deleted, packs_deleted, bytes_freed, temp_deleted)


def _stale_objects(
    objects: Iterator[ObjectInfo], known: set[str], cutoff: float
) -> Iterator[tuple[str, int]]:
    for o in objects:
        if o.key.split("/")[-1] not in known and o.mtime < cutoff:
            yield o.key, o.size
