"""fsck: verify every pack, chunk, node and reference (gc is in :mod:`tusk.pfs.gc`).

fsck streams: its memory does not grow with the number of tree nodes or chunks. Stored nodes
and index rows are read a page at a time in key order; the mark walks the trees from every
root a batch of nodes at a time, and what it has seen (nodes visited, chunks referenced) goes
to sets in a private SQLite file in a temporary directory, not to Python sets (a set of a
million 32-byte digests takes over 100 MB). Chunks missing from the index and indexed chunks
nothing references come from merging the two sorted streams; packs are checked one at a time
with only their own index rows in hand.
"""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import zstandard

from tusk.errors import CorruptObject, StorageError
from tusk.pfs.models import FsckReport
from tusk.pfs.tree import EMPTY_TREE, NodeCodec, TreeReader, node_refs
from tusk.storage.chunks import ChunkStore
from tusk.storage.meta.records import ChunkLocation, CommitRecord
from tusk.storage.meta.store import MetaStore
from tusk.storage.packs import iter_pack_index, pack_key

_PAGE = 2000  # rows read per query (digests)
_NODE_PAGE = 64  # stored nodes read per query (a directory page may hold 4,096 entries)
_WALK_BATCH = 64  # tree nodes loaded per query during the mark
_SCRATCH_CACHE = "cache_size=-4096"  # KiB of page cache of each scratch SQLite file
_REPORT_MAX = 100  # problems of one kind listed one by one

T = TypeVar("T")


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


class _DiskSets:
    """Sets of digests in a private SQLite file (``nodes`` seen, ``chunks`` referenced)."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="tusk-fsck-")
        self.db = sqlite3.connect(Path(self._dir.name) / "mark.db", isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", _SCRATCH_CACHE):
            self.db.execute(f"PRAGMA {pragma}")
        for table in ("nodes", "chunks"):
            self.db.execute(f"CREATE TABLE {table} (h BLOB PRIMARY KEY) WITHOUT ROWID")

    def close(self) -> None:
        self.db.close()
        self._dir.cleanup()

    def add_new(self, table: str, digests: Iterable[bytes]) -> list[bytes]:
        """Add ``digests``; return those that were not in the set yet (once each, in order)."""
        batch = list(dict.fromkeys(digests))
        if not batch:
            return []
        seen: set[bytes] = set()
        for i in range(0, len(batch), 500):
            part = batch[i : i + 500]
            marks = ",".join("?" * len(part))
            rows = self.db.execute(f"SELECT h FROM {table} WHERE h IN ({marks})", part)
            seen.update(r[0] for r in rows)
        new = [d for d in batch if d not in seen]
        self.add(table, new)
        return new

    def add(self, table: str, digests: Iterable[bytes]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany(f"INSERT OR IGNORE INTO {table} VALUES (?)", ((d,) for d in digests))
        self.db.execute("COMMIT")

    def count(self, table: str) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def sorted(self, table: str) -> Iterator[bytes]:
        query = f"SELECT h FROM {table} WHERE h > ? ORDER BY h LIMIT {_PAGE}"

        def page(after: bytes) -> list[bytes]:
            return [h for (h,) in self.db.execute(query, (after,))]

        for hashes in _pages(page, _digest):
            yield from hashes


Load = Callable[[Sequence[bytes]], dict[bytes, bytes]]


def _mark(
    load: Load, codec: NodeCodec, roots: Iterable[bytes], sets: _DiskSets, problems: list[str]
) -> None:
    """Walk every tree below ``roots``, recording nodes seen and chunks referenced.

    Depth first over batches of nodes, each batch one query (``load``): the stack holds the
    batches still to read along the current path (tree depth x fan-out), never the set of all
    nodes, and a node's bytes are dropped once its references are taken. A subtree already
    seen from another root (commits share almost all of theirs) is not read again.
    """
    stack: list[list[bytes]] = []
    pending: list[bytes] = []
    for root in roots:
        if root != EMPTY_TREE:
            pending.append(root)
        if len(pending) >= _WALK_BATCH:
            stack.append(pending)
            pending = []
            _drain(load, codec, stack, sets, problems)
    if pending:
        stack.append(pending)
    _drain(load, codec, stack, sets, problems)


def _drain(
    load: Load, codec: NodeCodec, stack: list[list[bytes]], sets: _DiskSets, problems: list[str]
) -> None:
    while stack:
        batch = sets.add_new("nodes", stack.pop())
        if not batch:
            continue
        stored = load(batch)
        children: list[bytes] = []
        chunks: list[bytes] = []
        for digest in batch:
            data = stored.pop(digest, None)
            if data is None:
                problems.append(
                    f"tree node {digest.hex()}: tree node {digest.hex()} is missing (run tusk fsck)"
                )
                continue
            try:
                kids, named = node_refs(codec.unpack(digest, data))
            except (CorruptObject, ValueError, KeyError, IndexError, TypeError) as exc:
                problems.append(f"tree node {digest.hex()}: {exc}")
                continue
            children.extend(kids)
            chunks.extend(named)
        if chunks:
            sets.add("chunks", chunks)
        for i in range(0, len(children), _WALK_BATCH):
            stack.append(children[i : i + _WALK_BATCH])


def _merge(a: Iterator[bytes], b: Iterator[bytes]) -> Iterator[tuple[bytes | None, bytes | None]]:
    """Two sorted streams of distinct digests: yields (x, None) for x only in ``a``,
    (None, y) for y only in ``b`` (items in both are skipped)."""
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x < y):
            yield x, None
            x = next(a, None)
        elif x is None or y < x:
            yield None, y
            y = next(b, None)
        else:
            x, y = next(a, None), next(b, None)


def _pages(fetch: Callable[[bytes], list[T]], key: Callable[[T], bytes]) -> Iterator[list[T]]:
    """Keyset paging: ``fetch(after)`` returns the rows whose key is above ``after``, a page
    at most, in key order; this yields page after page until one comes back empty."""
    last = b""
    while page := fetch(last):
        yield page
        last = key(page[-1])


def _digest(h: bytes) -> bytes:
    return h


def _first(row: tuple[bytes, Any]) -> bytes:
    return row[0]


def fsck(meta: MetaStore, chunk_store: ChunkStore, codec: NodeCodec) -> FsckReport:
    # Nodes are read from the store (not through a node cache: fsck must see the store, not
    # what this process cached), a batch per query, each dropped once its references are in.
    load: Load = meta.get_nodes
    problems: list[str] = []
    notes: list[str] = []
    backend = chunk_store.backend
    with meta.read() as tx:
        repos = {r.name for r in tx.list_repos()}
        commits: dict[str, CommitRecord] = {c.id: c for c in tx.iter_all_commits()}
        branches = tx.list_branches()
        packs = {p.id: p for p in tx.list_packs()}

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
        for p in c.parents:
            if p not in commits:
                problems.append(f"commit {c.repo}@{c.id} has missing parent {p}")

    # Every stored node must hash to its name (a page of nodes at a time).
    def nodes_page(after: bytes) -> list[tuple[bytes, bytes]]:
        with meta.read() as tx:
            return tx.nodes_page(after, _NODE_PAGE)

    for page in _pages(nodes_page, _first):
        for digest, data in page:
            try:
                codec.unpack(digest, data, verify=True)
            except CorruptObject as exc:
                problems.append(str(exc))
        del page

    sets = _DiskSets()
    try:
        # Trees: every node reachable from a commit exists and decodes; every chunk is indexed.
        trees = list(dict.fromkeys(c.tree for c in commits.values() if c.tree != EMPTY_TREE))
        with meta.read() as tx:
            stored = tx.existing_nodes(trees)
        for c in commits.values():
            if c.tree != EMPTY_TREE and c.tree not in stored:
                problems.append(f"commit {c.repo}@{c.id} has missing root tree {c.tree.hex()}")
        del stored
        node_problems: list[str] = []
        _mark(load, codec, trees, sets, node_problems)
        del trees

        def roots_page(after: bytes) -> list[bytes]:
            with meta.read() as tx:
                return tx.datum_roots_page(after, _PAGE)

        for datum_roots in _pages(roots_page, _digest):
            with meta.read() as tx:
                stored = tx.existing_nodes(datum_roots)
            for root in datum_roots:
                if root != EMPTY_TREE and root not in stored:
                    problems.append(f"a datum's output tree {root.hex()} is missing")
            _mark(load, codec, datum_roots, sets, node_problems)
        # The parts of S3 multipart uploads in progress are roots too (gc keeps them).
        with meta.read() as tx:
            part_roots = tx.s3_part_roots()
            stored = tx.existing_nodes(part_roots)
        for root in part_roots:
            if root != EMPTY_TREE and root not in stored:
                problems.append(f"an S3 upload part's tree {root.hex()} is missing")
        _mark(load, codec, part_roots, sets, node_problems)
        problems.extend(node_problems)
        live_nodes = sets.count("nodes")

        # Chunks referenced but not indexed, and indexed but not referenced: a sorted merge.
        def index_page(after: bytes) -> list[bytes]:
            with meta.read() as tx:
                return tx.chunk_hashes_page(after, _PAGE)

        missing: list[bytes] = []
        n_missing = dead = 0
        indexed = itertools.chain.from_iterable(_pages(index_page, _digest))
        for live, _indexed in _merge(sets.sorted("chunks"), indexed):
            if live is not None:
                n_missing += 1
                if len(missing) < _REPORT_MAX:
                    missing.append(live)
            else:
                dead += 1
    finally:
        sets.close()
    for digest in missing:
        problems.append(f"chunk {digest.hex()} is referenced by a file but missing from the index")
    if n_missing > _REPORT_MAX:
        problems.append(f"... and {n_missing - _REPORT_MAX} more missing chunks")

    # Packs: re-read each one, check its footer, every chunk's hash, and the index against it.
    with meta.read() as tx:
        unknown, n_unknown = tx.chunks_in_unknown_packs(_REPORT_MAX)
    for digest, pack_id in unknown:
        problems.append(f"chunk {digest.hex()} is indexed in missing pack {pack_id}")
    if n_unknown > len(unknown):
        problems.append(f"... and {n_unknown - len(unknown)} more chunks indexed in missing packs")
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
        checked, pack_problems = _check_pack(meta, pack_id, data, dctx)
        checked_chunks += checked
        problems.extend(pack_problems)
        del data

    orphans = sum(1 for o in backend.list("packs/") if o.key.split("/")[-1] not in packs)
    if orphans:
        notes.append(
            f"{orphans} pack object(s) are not indexed (left by an interrupted write); "
            "tusk gc removes them after the grace period"
        )
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
            "nodes": live_nodes,
            "packs": len(packs),
            "chunks_checked": checked_chunks,
        },
    )


def _check_pack(
    meta: MetaStore, pack_id: str, data: bytes, dctx: zstandard.ZstdDecompressor
) -> tuple[int, list[str]]:
    """Check one pack against its footer and the index rows naming it: every indexed chunk
    decodes to its hash where the footer puts it. Returns (chunks checked, problems).

    The footer's entries and the pack's index rows (a pack may hold a million small chunks)
    go to a scratch SQLite file and are joined there, so memory is the pack's bytes only.
    """
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tusk-fsck-pack-") as tmp:
        db = sqlite3.connect(Path(tmp) / "pack.db", isolation_level=None)
        try:
            for pragma in ("journal_mode=OFF", "synchronous=OFF", _SCRATCH_CACHE):
                db.execute(f"PRAGMA {pragma}")
            db.execute("CREATE TABLE footer (h BLOB, off INTEGER, len INTEGER)")
            db.execute(
                "CREATE TABLE idx (h BLOB PRIMARY KEY, off INTEGER, len INTEGER, "
                "raw INTEGER, codec INTEGER) WITHOUT ROWID"
            )
            db.execute("BEGIN")
            try:
                db.executemany(
                    "INSERT INTO footer VALUES (?, ?, ?)",
                    ((e.hash, e.offset, e.length) for e in iter_pack_index(data)),
                )
            except CorruptObject as exc:
                db.execute("ROLLBACK")
                return 0, [f"pack {pack_id}: {exc}"]
            with meta.read() as tx:
                db.executemany(
                    "INSERT OR REPLACE INTO idx VALUES (?, ?, ?, ?, ?)",
                    (
                        (h, loc.offset, loc.length, loc.raw_length, loc.codec)
                        for h, loc in tx.iter_pack_chunks(pack_id)
                    ),
                )
            db.execute("CREATE INDEX footer_h ON footer (h)")
            db.execute("COMMIT")
            checked = 0
            # Every copy the footer lists of an indexed chunk (a duplicate left by racing
            # writers is checked too; one not indexed is gc's to drop).
            rows = db.execute(
                "SELECT f.h, f.off, f.len, i.off, i.len, i.raw, i.codec "
                "FROM footer f JOIN idx i ON i.h = f.h"
            )
            for h, f_off, f_len, off, length, raw, codec in rows:
                loc = ChunkLocation(pack_id, off, length, raw, codec)
                try:
                    ChunkStore.decode(h, loc, data[f_off : f_off + f_len], dctx)
                    checked += 1
                except CorruptObject as exc:
                    problems.append(f"pack {pack_id}: {exc}")
            rows = db.execute(
                "SELECT i.h FROM idx i WHERE NOT EXISTS (SELECT 1 FROM footer f "
                "WHERE f.h = i.h AND f.off = i.off AND f.len = i.len) ORDER BY i.h"
            )
            for (h,) in rows:
                problems.append(f"chunk {h.hex()}: the index and pack {pack_id}'s footer disagree")
        finally:
            db.close()
    return checked, problems
