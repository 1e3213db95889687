"""Merkle file trees that share structure between commits.

A directory is a node holding its entries sorted by name. A large directory is split into
pages at content-defined boundaries (an entry ends a page when a hash of its name says so, or
when the page is full), and the directory node lists its pages. So adding one file to a
directory of a million entries rewrites one page and the page list, and a commit that changes
one file rewrites only the nodes on its path: O(changed), as is :func:`diff_trees`, which skips
every subtree and page whose hash is equal on both sides.

Nodes are canonical JSON, addressed by BLAKE3 of those bytes and stored zstd-compressed in the
metadata store's ``nodes`` table.
"""

from __future__ import annotations

import json
import threading
import zlib
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import blake3
import zstandard

from tusk.errors import CorruptObject, FileNotFound, PathConflict, StorageError
from tusk.values import frozen

ChunkRef = tuple[bytes, int]
INLINE_CHUNKS = 32


@frozen(slots=True)
class FileEntry:
    size: int
    hash: bytes  # content id: the chunk's BLAKE3 for one chunk, else BLAKE3 of the chunk digests
    chunks: tuple[ChunkRef, ...] | None  # inline chunk list for small files
    chunk_list: bytes | None = None  # node holding the chunk list of a large file


@frozen(slots=True)
class DirEntry:
    node: bytes
    size: int
    files: int


Entry = FileEntry | DirEntry


@frozen(slots=True)
class PageRef:
    first: str
    node: bytes
    count: int
    size: int
    files: int


@frozen
class TreeParams:
    """Page boundaries: on average every ``page_avg`` names, at most ``page_max`` per page."""

    page_avg: int = 512
    page_max: int = 4096


def content_id(chunks: Sequence[ChunkRef]) -> bytes:
    if len(chunks) == 1:
        return chunks[0][0]
    if not chunks:
        return blake3.blake3(b"").digest()
    return blake3.blake3(b"".join(d for d, _ in chunks)).digest()


# Encoding


def _encode(obj: Any) -> tuple[bytes, bytes]:
    raw = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return blake3.blake3(raw).digest(), raw


def _entry_to_json(name: str, e: Entry) -> list[Any]:
    if isinstance(e, DirEntry):
        return [name, "d", e.node.hex(), e.size, e.files]
    chunks: Any = (
        e.chunk_list.hex()
        if e.chunk_list is not None
        else [[d.hex(), n] for d, n in (e.chunks or ())]
    )
    return [name, "f", e.size, e.hash.hex(), chunks]


def _entry_from_json(item: list[Any]) -> tuple[str, Entry]:
    name, kind = item[0], item[1]
    if kind == "d":
        return name, DirEntry(bytes.fromhex(item[2]), item[3], item[4])
    chunks = item[4]
    if isinstance(chunks, str):
        return name, FileEntry(item[2], bytes.fromhex(item[3]), None, bytes.fromhex(chunks))
    fromhex = bytes.fromhex
    if len(chunks) == 1:  # most files: no generator for one chunk (a 10,000-file walk)
        ((digest, n),) = chunks
        return name, FileEntry(item[2], fromhex(item[3]), ((fromhex(digest), n),))
    return name, FileEntry(item[2], fromhex(item[3]), tuple([(fromhex(d), n) for d, n in chunks]))


def _summary(entries: Sequence[tuple[str, Entry]]) -> tuple[int, int]:
    size = files = 0
    for _, e in entries:
        size += e.size
        files += e.files if isinstance(e, DirEntry) else 1
    return size, files


EMPTY_TREE, _EMPTY_RAW = _encode({"e": []})


class NodeCodec:
    """Compression of node bytes for storage.

    zstd contexts are not safe to share between threads (the server answers requests on
    many). A decompression context stays small (~100 KB) and each thread keeps its own. A
    compression context keeps a workspace sized by the largest input it has compressed
    (level 3: 0.1 MB after 4 KB, 1.9 MB after 300 KB, 2.6 MB after 1 MB), so one per thread
    made every request thread of a server grow with the repos' directory pages (under
    ``bench/bench_load.py``, malloc'd memory kept rising after warm-up while Python's
    objects stayed flat). Nodes are compressed inside write transactions, a few at a time, so
    compression contexts are pooled instead: one per concurrent ``pack``, not per thread.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._idle: list[zstandard.ZstdCompressor] = []
        self._lock = threading.Lock()
        self.compressors = 0  # compression contexts made so far

    def pack(self, raw: bytes) -> bytes:
        with self._lock:
            cctx = self._idle.pop() if self._idle else None
            if cctx is None:
                self.compressors += 1
        if cctx is None:
            cctx = zstandard.ZstdCompressor(level=3)
        try:
            return cctx.compress(raw)
        finally:
            with self._lock:
                self._idle.append(cctx)

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        dctx: zstandard.ZstdDecompressor | None = getattr(self._local, "dctx", None)
        if dctx is None:
            dctx = self._local.dctx = zstandard.ZstdDecompressor()
        return dctx

    def unpack(self, digest: bytes, data: bytes, verify: bool = False) -> bytes:
        try:
            raw = self._decompressor().decompress(data)
        except zstandard.ZstdError as exc:
            raise CorruptObject(f"tree node {digest.hex()} does not decompress") from exc
        if verify and blake3.blake3(raw).digest() != digest:
            raise CorruptObject(f"tree node {digest.hex()} fails its hash check")
        return raw


class NodeCache:
    """Decoded nodes by hash. Nodes never change, so one cache serves every transaction.

    Bounded by count and by the stored size of what it holds (a decoded node takes several
    times its JSON in memory): a server whose directory pages grow large over thousands of
    commits must not grow with them (measured before the byte bound: +1 MiB/s under load).
    """

    def __init__(self, capacity: int = 20000, max_bytes: int = 16 * 1024 * 1024) -> None:
        self._items: OrderedDict[bytes, tuple[Any, int]] = OrderedDict()
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0

    def get(self, digest: bytes) -> Any | None:
        item = self._items.get(digest)
        if item is None:
            return None
        self._items.move_to_end(digest)
        return item[0]

    def put(self, digest: bytes, value: Any, size: int = 0) -> None:
        old = self._items.pop(digest, None)
        if old is not None:
            self.bytes -= old[1]
        self._items[digest] = (value, size)
        self.bytes += size
        while self._items and (len(self._items) > self.capacity or self.bytes > self.max_bytes):
            _, (_, dropped) = self._items.popitem(last=False)
            self.bytes -= dropped


@frozen(slots=True)
class _Page:
    names: list[str]
    entries: list[Entry]
    # This page as the only page of its directory ([] when empty), summed once at decode.
    refs: list[PageRef]


@frozen(slots=True)
class _PageList:
    refs: list[PageRef]
    firsts: list[str]  # each page's first name, for bisecting a lookup


class TreeReader:
    """Reads nodes through ``load`` (hashes -> stored bytes) with a shared cache."""

    def __init__(
        self,
        load: Callable[[Sequence[bytes]], dict[bytes, bytes]],
        cache: NodeCache | None = None,
        codec: NodeCodec | None = None,
    ) -> None:
        self._load = load
        self.cache = cache if cache is not None else NodeCache()
        self.codec = codec or NodeCodec()
        self.pending: dict[bytes, bytes] = {}  # raw bytes of nodes not yet stored

    def prefetch(self, digests: Sequence[bytes]) -> None:
        """Load the nodes not cached yet in one call (many small trees: one query, not many)."""
        missing = [
            d
            for d in dict.fromkeys(digests)
            if d != EMPTY_TREE and d not in self.pending and self.cache.get(d) is None
        ]
        if not missing:
            return
        found = self._load(missing)
        for digest in missing:
            if digest in found:
                self._decode(digest, self.codec.unpack(digest, found[digest]))

    def children(self, digest: bytes) -> list[bytes]:
        """The directory and page nodes a cached node refers to (for prefetching a level)."""
        value = self.cache.get(digest)
        if isinstance(value, _Page):
            return [e.node for e in value.entries if isinstance(e, DirEntry)]
        if isinstance(value, _PageList):
            return [r.node for r in value.refs]
        return []

    def raw_node(self, digest: bytes) -> Any:
        cached = self.cache.get(digest)
        if cached is not None:
            return cached
        if digest in self.pending:
            raw = self.pending[digest]
        elif digest == EMPTY_TREE:
            raw = _EMPTY_RAW
        else:
            found = self._load([digest])
            if digest not in found:
                raise StorageError(f"tree node {digest.hex()} is missing (run tusk fsck)")
            raw = self.codec.unpack(digest, found[digest])
        return self._decode(digest, raw)

    def _decode(self, digest: bytes, raw: bytes) -> Any:
        obj = json.loads(raw)
        if "e" in obj:
            entries = [_entry_from_json(item) for item in obj["e"]]
            size, files = _summary(entries)
            refs = [PageRef(entries[0][0], digest, len(entries), size, files)] if entries else []
            value: Any = _Page([n for n, _ in entries], [e for _, e in entries], refs)
        elif "p" in obj:
            refs = [PageRef(p[0], bytes.fromhex(p[1]), p[2], p[3], p[4]) for p in obj["p"]]
            value = _PageList(refs, [r.first for r in refs])
        elif "c" in obj:
            value = tuple((bytes.fromhex(d), n) for d, n in obj["c"])
        elif "cp" in obj:
            value = _ChunkPages(tuple(bytes.fromhex(p[0]) for p in obj["cp"]))
        else:
            raise CorruptObject(f"tree node {digest.hex()} has an unknown shape")
        self.cache.put(digest, value, len(raw))
        return value

    def pages(self, node: bytes) -> list[PageRef]:
        value = self.raw_node(node)
        if isinstance(value, (_Page, _PageList)):
            return value.refs
        raise CorruptObject(f"node {node.hex()} is not a directory")

    def page(self, node: bytes) -> _Page:
        value = self.raw_node(node)
        if not isinstance(value, _Page):
            raise CorruptObject(f"node {node.hex()} is not a directory page")
        return value

    def child(self, node: bytes, name: str) -> Entry | None:
        value = self.raw_node(node)
        if isinstance(value, _PageList):
            i = max(bisect_right(value.firsts, name) - 1, 0)
            page = self.page(value.refs[i].node)
        elif isinstance(value, _Page):
            page = value
        else:
            raise CorruptObject(f"node {node.hex()} is not a directory")
        j = bisect_left(page.names, name)
        if j < len(page.names) and page.names[j] == name:
            return page.entries[j]
        return None

    def iter_dir(self, node: bytes) -> Iterator[tuple[str, Entry]]:
        for ref in self.pages(node):
            page = self.page(ref.node)
            yield from zip(page.names, page.entries, strict=True)

    def lookup(self, root: bytes, parts: Sequence[str]) -> Entry | None:
        """The entry at ``parts``; the root itself for ``()``."""
        if not parts:
            size, files = self.summary(root)
            return DirEntry(root, size, files)
        entry: Entry | None = None
        node = root
        for i, name in enumerate(parts):
            entry = self.child(node, name)
            if entry is None:
                return None
            if isinstance(entry, FileEntry):
                return entry if i == len(parts) - 1 else None
            node = entry.node
        return entry

    def summary(self, node: bytes) -> tuple[int, int]:
        pages = self.pages(node)
        return sum(p.size for p in pages), sum(p.files for p in pages)

    def walk(self, node: bytes, prefix: str = "") -> Iterator[tuple[str, FileEntry]]:
        """Every file below ``node`` in path order, with full paths."""
        for name, entry in self.iter_dir(node):
            path = f"{prefix}/{name}"
            if isinstance(entry, DirEntry):
                yield from self.walk(entry.node, path)
            else:
                yield path, entry

    def chunks(self, entry: FileEntry) -> tuple[ChunkRef, ...]:
        if entry.chunk_list is None:
            return entry.chunks or ()
        value = self.raw_node(entry.chunk_list)
        if isinstance(value, _ChunkPages):
            out: list[ChunkRef] = []
            for page in value.pages:
                out.extend(self._chunk_page(page))
            return tuple(out)
        return self._chunk_page(entry.chunk_list)

    def _chunk_page(self, digest: bytes) -> tuple[ChunkRef, ...]:
        value = self.raw_node(digest)
        if not isinstance(value, tuple):
            raise CorruptObject(f"node {digest.hex()} is not a chunk list")
        return value

    def children_nodes(self, digest: bytes) -> Iterator[bytes]:
        """Node hashes one step below ``digest`` (pages, subdirectories, chunk lists)."""
        value = self.raw_node(digest)
        if isinstance(value, _PageList):
            for p in value.refs:
                yield p.node
        elif isinstance(value, _ChunkPages):
            yield from value.pages
        elif isinstance(value, _Page):
            for e in value.entries:
                if isinstance(e, DirEntry):
                    yield e.node
                elif e.chunk_list is not None:
                    yield e.chunk_list

    def node_chunks(self, digest: bytes) -> Iterator[bytes]:
        """Chunk digests named directly by a node (inline file chunks and chunk lists)."""
        value = self.raw_node(digest)
        if isinstance(value, tuple):
            for d, _ in value:
                yield d
        elif isinstance(value, _Page):
            for e in value.entries:
                if isinstance(e, FileEntry) and e.chunks:
                    for d, _ in e.chunks:
                        yield d


def node_refs(raw: bytes) -> tuple[list[bytes], list[bytes]]:
    """(child nodes, chunk digests) a node's raw bytes name: pages, subdirectories and chunk
    lists below it, and the chunks of its inline files. Decodes no entries and caches
    nothing (fsck's mark reads every node of a store once). Raises ValueError, KeyError,
    IndexError or TypeError for bytes that are not a node, CorruptObject for an unknown shape.
    """
    obj = json.loads(raw)
    children: list[bytes] = []
    chunks: list[bytes] = []
    if "e" in obj:
        for item in obj["e"]:
            if item[1] == "d":
                children.append(bytes.fromhex(item[2]))
            elif isinstance(item[4], str):
                children.append(bytes.fromhex(item[4]))
            else:
                chunks.extend(bytes.fromhex(d) for d, _ in item[4])
    elif "p" in obj:
        children = [bytes.fromhex(p[1]) for p in obj["p"]]
    elif "c" in obj:
        chunks = [bytes.fromhex(d) for d, _ in obj["c"]]
    elif "cp" in obj:
        children = [bytes.fromhex(p[0]) for p in obj["cp"]]
    else:
        raise CorruptObject("not a tree node: unknown shape")
    return children, chunks


@frozen(slots=True)
class _ChunkPages:
    pages: tuple[bytes, ...]


# A long chunk list is cut into pages after every chunk whose digest ends in a byte below
# 4 (1 in 64, content-defined) or at 1024 chunks, so an edit in the middle of a 100 GiB file
# (800,000 chunks) stores a page or two and the page list, not the whole list again.
_CHUNK_PAGE_CUT = 4
_CHUNK_PAGE_MAX = 1024


def make_file_entry(chunks: Sequence[ChunkRef]) -> tuple[FileEntry, dict[bytes, bytes]]:
    """A file entry, and the chunk-list nodes when the list is too long to keep inline."""
    if len(chunks) == 1:
        return FileEntry(chunks[0][1], chunks[0][0], tuple(chunks)), {}
    size = sum(n for _, n in chunks)
    cid = content_id(chunks)
    if len(chunks) <= INLINE_CHUNKS:
        return FileEntry(size, cid, tuple(chunks)), {}
    nodes: dict[bytes, bytes] = {}
    pages: list[list[Any]] = []
    page: list[list[Any]] = []
    for d, n in chunks:
        page.append([d.hex(), n])
        if d[-1] < _CHUNK_PAGE_CUT or len(page) >= _CHUNK_PAGE_MAX:
            pages.append(page)
            page = []
    if page:
        pages.append(page)
    if len(pages) == 1:
        digest, raw = _encode({"c": pages[0]})
        return FileEntry(size, cid, None, digest), {digest: raw}
    refs = []
    for p in pages:
        digest, raw = _encode({"c": p})
        nodes[digest] = raw
        refs.append([digest.hex(), len(p), sum(n for _, n in p)])
    digest, raw = _encode({"cp": refs})
    nodes[digest] = raw
    return FileEntry(size, cid, None, digest), nodes


class _MDir:
    """A directory being edited: its base node and the changes on top of it."""

    __slots__ = ("base", "changes")

    def __init__(self, base: bytes | None) -> None:
        self.base = base
        self.changes: dict[str, Entry | _MDir | None] = {}


class TreeEditor:
    """Applies puts and deletes to a tree and writes only the nodes that changed."""

    def __init__(self, reader: TreeReader, root: bytes, params: TreeParams | None = None) -> None:
        self.reader = reader
        self.params = params or TreeParams()
        self.root = _MDir(root)
        self.new_nodes: dict[bytes, bytes] = {}
        # The directory of the last file put: bulk puts come folder by folder.
        self._last: tuple[tuple[str, ...], _MDir] | None = None

    # Navigation

    def _current(self, mdir: _MDir, name: str) -> Entry | _MDir | None:
        if name in mdir.changes:
            return mdir.changes[name]
        return self.reader.child(mdir.base, name) if mdir.base else None

    def _dir_for_write(self, parts: Sequence[str], create: bool) -> _MDir:
        mdir = self.root
        for i, name in enumerate(parts):
            cur = self._current(mdir, name)
            if isinstance(cur, _MDir):
                mdir = cur
                continue
            if isinstance(cur, FileEntry):
                where = "/" + "/".join(parts[: i + 1])
                raise PathConflict(f"{where} is a file, not a directory")
            if cur is None and not create:
                raise FileNotFound(f"no such directory /{'/'.join(parts[: i + 1])}")
            child = _MDir(cur.node if isinstance(cur, DirEntry) else None)
            mdir.changes[name] = child
            mdir = child
        return mdir

    def kind(self, parts: Sequence[str]) -> str | None:
        """'file', 'dir' or None for the path as edited so far."""
        cur: Entry | _MDir | None = self.root
        for name in parts:
            if isinstance(cur, _MDir):
                cur = self._current(cur, name)
            elif isinstance(cur, DirEntry):
                cur = self.reader.child(cur.node, name)
            else:
                return None
            if cur is None:
                return None
        return "file" if isinstance(cur, FileEntry) else "dir"

    def get_file(self, parts: Sequence[str]) -> FileEntry | None:
        if not parts or self.kind(parts) != "file":
            return None
        cur = self._dir_for_write(parts[:-1], create=False)
        entry = self._current(cur, parts[-1])
        return entry if isinstance(entry, FileEntry) else None

    def put(self, parts: Sequence[str], entry: Entry) -> None:
        if not parts:
            if isinstance(entry, FileEntry):
                raise PathConflict("/ is a directory; give a file path")
            self.root = _MDir(entry.node)
            self._last = None
            return
        prefix = tuple(parts[:-1])
        if self._last is not None and self._last[0] == prefix:
            parent = self._last[1]
        else:
            parent = self._dir_for_write(prefix, create=True)
            self._last = (prefix, parent)
        cur = self._current(parent, parts[-1])
        if isinstance(entry, FileEntry) and isinstance(cur, (DirEntry, _MDir)):
            raise PathConflict(f"/{'/'.join(parts)} is a directory; give a file path")
        if isinstance(entry, DirEntry) and isinstance(cur, FileEntry):
            raise PathConflict(f"/{'/'.join(parts)} is a file, not a directory")
        if isinstance(entry, DirEntry):
            self._last = None  # a directory replaced here may be the cached one
        parent.changes[parts[-1]] = entry

    def delete(self, parts: Sequence[str]) -> None:
        """Delete a file or a whole directory; ``()`` empties the tree."""
        self._last = None
        if not parts:
            self.root = _MDir(None)
            return
        if self.kind(parts) is None:
            raise FileNotFound(f"no such file or directory /{'/'.join(parts)}")
        parent = self._dir_for_write(parts[:-1], create=False)
        parent.changes[parts[-1]] = None

    def add_nodes(self, nodes: dict[bytes, bytes]) -> None:
        self.new_nodes.update(nodes)
        self.reader.pending.update(nodes)

    # Writing

    def finish(self) -> tuple[bytes, int, int]:
        """Write changed nodes; return (root hash, total size, file count)."""
        entry = self._finish(self.root)
        self._last = None
        if entry is None:
            self.root = _MDir(None)
            return EMPTY_TREE, 0, 0
        self.root = _MDir(entry.node)
        self._last = None
        return entry.node, entry.size, entry.files

    def _boundary(self, name: str) -> bool:
        # CRC-32 spreads names well enough to place page ends, and costs a fraction of BLAKE3.
        return zlib.crc32(name.encode()) % self.params.page_avg == 0

    def _write(self, obj: Any) -> bytes:
        digest, raw = _encode(obj)
        self.new_nodes[digest] = raw
        self.reader.pending[digest] = raw
        return digest

    def _emit(self, entries: list[tuple[str, Entry]], out: list[PageRef]) -> None:
        node = self._write({"e": [_entry_to_json(n, e) for n, e in entries]})
        size, files = _summary(entries)
        out.append(PageRef(entries[0][0], node, len(entries), size, files))

    def _cut(
        self, acc: list[tuple[str, Entry]], out: list[PageRef], final: bool
    ) -> list[tuple[str, Entry]]:
        start = 0
        for j, (name, _) in enumerate(acc):
            if self._boundary(name) or j - start + 1 >= self.params.page_max:
                self._emit(acc[start : j + 1], out)
                start = j + 1
        rest = acc[start:]
        if final and rest:
            self._emit(rest, out)
            return []
        return rest

    def _finish(self, mdir: _MDir) -> DirEntry | None:
        if not mdir.changes:
            if mdir.base is None:
                return None
            pages = self.reader.pages(mdir.base)
            if not pages:
                return None
            return DirEntry(mdir.base, sum(p.size for p in pages), sum(p.files for p in pages))
        resolved: dict[str, Entry | None] = {}
        for name, change in mdir.changes.items():
            resolved[name] = self._finish(change) if isinstance(change, _MDir) else change
        pages = self.reader.pages(mdir.base) if mdir.base else []
        firsts = [p.first for p in pages]
        by_page: dict[int, dict[str, Entry | None]] = {}
        for name, value in resolved.items():
            i = max(bisect_right(firsts, name) - 1, 0)
            by_page.setdefault(i, {})[name] = value
        out: list[PageRef] = []
        acc: list[tuple[str, Entry]] = []
        if not pages:
            merged = {n: e for n, e in resolved.items() if e is not None}
            acc = sorted(merged.items())
        for i, ref in enumerate(pages):
            if i not in by_page and not acc:
                out.append(ref)
                continue
            page = self.reader.page(ref.node)
            items: dict[str, Entry | None] = dict(zip(page.names, page.entries, strict=True))
            if i in by_page:
                items.update(by_page[i])
                acc.extend(sorted((n, e) for n, e in items.items() if e is not None))
            else:
                acc.extend((n, e) for n, e in items.items() if e is not None)
            acc = self._cut(acc, out, final=False)
        self._cut(acc, out, final=True)
        if not out:
            return None
        if len(out) == 1:
            return DirEntry(out[0].node, out[0].size, out[0].files)
        node = self._write({"p": [[p.first, p.node.hex(), p.count, p.size, p.files] for p in out]})
        return DirEntry(node, sum(p.size for p in out), sum(p.files for p in out))


@frozen(slots=True)
class Change:
    path: str
    old: FileEntry | None
    new: FileEntry | None

    @property
    def kind(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed"


def diff_trees(reader: TreeReader, old: bytes, new: bytes, prefix: str = "") -> Iterator[Change]:
    """Files added, removed or changed from ``old`` to ``new``, in path order."""
    if old == new:
        return
    old_pages = {p.node for p in reader.pages(old)}
    new_pages = {p.node for p in reader.pages(new)}
    common = old_pages & new_pages
    a = {n: e for p in reader.pages(old) if p.node not in common for n, e in _page_items(reader, p)}
    b = {n: e for p in reader.pages(new) if p.node not in common for n, e in _page_items(reader, p)}
    for name in sorted(a.keys() | b.keys()):
        ea, eb = a.get(name), b.get(name)
        path = f"{prefix}/{name}"
        if isinstance(ea, DirEntry) and isinstance(eb, DirEntry):
            yield from diff_trees(reader, ea.node, eb.node, path)
            continue
        if isinstance(ea, FileEntry) and isinstance(eb, FileEntry):
            if ea.hash != eb.hash or ea.size != eb.size:
                yield Change(path, ea, eb)
            continue
        if isinstance(ea, DirEntry):
            for sub, fe in reader.walk(ea.node, path):
                yield Change(sub, fe, None)
        elif isinstance(ea, FileEntry):
            yield Change(path, ea, None)
        if isinstance(eb, DirEntry):
            for sub, fe in reader.walk(eb.node, path):
                yield Change(sub, None, fe)
        elif isinstance(eb, FileEntry):
            yield Change(path, None, eb)


def _page_items(reader: TreeReader, ref: PageRef) -> Iterator[tuple[str, Entry]]:
    page = reader.page(ref.node)
    return zip(page.names, page.entries, strict=True)
