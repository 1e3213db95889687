"""fsck: verify every pack, chunk, node and reference (gc is in :mod:`tusk.pfs.gc`)."""

from __future__ import annotations

import zstandard

from tusk.errors import CorruptObject, StorageError
from tusk.pfs.models import FsckReport
from tusk.pfs.tree import EMPTY_TREE, NodeCodec, TreeReader
from tusk.storage.chunks import ChunkStore
from tusk.storage.meta.records import ChunkLocation, CommitRecord
from tusk.storage.meta.store import MetaStore
from tusk.storage.packs import pack_key, read_pack_index


def reachable(
    reader: TreeReader, roots: list[bytes], problems: list[str] | None
) -> tuple[set[bytes], set[bytes]]:
    """Mark: every node and chunk reachable from ``roots``."""
    nodes: set[bytes] = set()
    chunks: set[bytes] = set()
    stack = [r for r in roots if r != EMPTY_TREE]
    while stack:
        digest = stack.pop()
        if digest in nodes:
            continue
        try:
            children = list(reader.children_nodes(digest))
            chunks.update(reader.node_chunks(digest))
        except (StorageError, CorruptObject, ValueError, KeyError) as exc:
            if problems is None:
                raise
            problems.append(f"tree node {digest.hex()}: {exc}")
            nodes.add(digest)
            continue
        nodes.add(digest)
        stack.extend(children)
    return nodes, chunks


def fsck(meta: MetaStore, chunk_store: ChunkStore, reader: TreeReader) -> FsckReport:
    problems: list[str] = []
    notes: list[str] = []
    backend = chunk_store.backend
    with meta.read() as tx:
        repos = {r.name for r in tx.list_repos()}
        commits: dict[str, CommitRecord] = {c.id: c for c in tx.iter_all_commits()}
        branches = tx.list_branches()
        packs = {p.id: p for p in tx.list_packs()}
        index = {h: loc for h, loc, _ in tx.iter_chunks()}
        stored_nodes = {h: data for h, data, _ in tx.iter_nodes()}
        datum_roots = tx.datum_output_roots()

    # References between metadata rows.
    for b in branches:
        if b.repo not in repos:
            problems.append(f"branch {b.repo}@{b.name} belongs to a missing repo")
        if b.head is not None:
            head = commits.get(b.head)
            if head is None:
                problems.append(f"branch {b.repo}@{b.name} points at missing commit {b.head}")
            elif head.repo != b.repo:
                problems.append(f"branch {b.repo}@{b.name} points at a commit of repo {head.repo}")
    for c in commits.values():
        if c.repo not in repos:
            problems.append(f"commit {c.id} belongs to missing repo {c.repo}")
        if c.parent is not None and c.parent not in commits:
            problems.append(f"commit {c.repo}@{c.id} has missing parent {c.parent}")

    # Every stored node must hash to its name.
    codec = NodeCodec()
    for digest, data in stored_nodes.items():
        try:
            codec.unpack(digest, data, verify=True)
        except CorruptObject as exc:
            problems.append(str(exc))

    # Trees: every node reachable from a commit exists and decodes; every chunk is indexed.
    node_problems: list[str] = []
    roots = [c.tree for c in commits.values()] + datum_roots
    for c in commits.values():
        if c.tree != EMPTY_TREE and c.tree not in stored_nodes:
            problems.append(f"commit {c.repo}@{c.id} has missing root tree {c.tree.hex()}")
    for root in datum_roots:
        if root != EMPTY_TREE and root not in stored_nodes:
            problems.append(f"a datum's output tree {root.hex()} is missing")
    live_nodes, live_chunks = reachable(reader, roots, node_problems)
    problems.extend(node_problems)
    missing = live_chunks - index.keys()
    for digest in sorted(missing)[:100]:
        problems.append(f"chunk {digest.hex()} is referenced by a file but missing from the index")
    if len(missing) > 100:
        problems.append(f"... and {len(missing) - 100} more missing chunks")

    # Packs: re-read each one, check its footer, every chunk's hash, and the index against it.
    by_pack: dict[str, dict[bytes, ChunkLocation]] = {}
    for digest, loc in index.items():
        if loc.pack not in packs:
            problems.append(f"chunk {digest.hex()} is indexed in missing pack {loc.pack}")
        by_pack.setdefault(loc.pack, {})[digest] = loc
    dctx = zstandard.ZstdDecompressor()
    checked_chunks = 0
    for pack_id, pack in packs.items():
        try:
            data = backend.get(pack_key(pack_id))
        except StorageError as exc:
            problems.append(f"pack {pack_id}: {exc}")
            continue
        if len(data) != pack.size:
            problems.append(f"pack {pack_id} has {len(data)} bytes, the index says {pack.size}")
        try:
            entries = read_pack_index(data)
        except CorruptObject as exc:
            problems.append(f"pack {pack_id}: {exc}")
            continue
        in_pack = {e.hash: e for e in entries}
        for e in entries:
            payload = data[e.offset : e.offset + e.length]
            loc_any = by_pack.get(pack_id, {}).get(e.hash)
            if loc_any is None:
                continue  # a duplicate copy left by racing writers; gc keeps the indexed one
            try:
                ChunkStore.decode(e.hash, loc_any, payload, dctx)
                checked_chunks += 1
            except CorruptObject as exc:
                problems.append(f"pack {pack_id}: {exc}")
        for digest, loc in by_pack.get(pack_id, {}).items():
            e2 = in_pack.get(digest)
            if e2 is None or (e2.offset, e2.length) != (loc.offset, loc.length):
                problems.append(
                    f"chunk {digest.hex()}: the index and pack {pack_id}'s footer disagree"
                )

    orphans = [o.key for o in backend.list("packs/") if o.key.split("/")[-1] not in packs]
    if orphans:
        notes.append(
            f"{len(orphans)} pack object(s) are not indexed (left by an interrupted write); "
            "tusk gc removes them after the grace period"
        )
    dead = len(index.keys() - live_chunks)
    if dead:
        notes.append(f"{dead} chunk(s) are not referenced by any commit; tusk gc can remove them")
    return FsckReport(
        ok=not problems,
        problems=problems,
        notes=notes,
        counts={
            "repos": len(repos),
            "commits": len(commits),
            "branches": len(branches),
            "nodes": len(live_nodes),
            "packs": len(packs),
            "chunks_checked": checked_chunks,
        },
    )
