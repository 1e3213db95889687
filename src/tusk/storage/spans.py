"""Random reads of one chunked file: bytes ``[start, stop)`` from its chunk list.

``ChunkStore.read_chunks`` streams whole chunks, each cut out of its pack read as a copy of
its own, and looks their locations up on every call. A reader that is asked for many ranges
of one file (DuckDB scanning a Parquet file through ``tusk sql``: a read per row group, a few
MiB) keeps the locations it looked up (a page of chunks at a time) and builds each answer in
place, because there the copies are the cost (bench/bench_sql.py, docs/benchmarks.md):

- The answer is one ``bytes`` allocated up front. DuckDB's Python file system takes nothing
  else (a bytearray or memoryview is refused) and copies it once more itself, so an answer
  joined from pieces would cost a copy of every byte on top of the read.
- Each run of neighbours in a pack is one read (``preadv`` on the local backend, through its
  ``read_into``) whose buffers are the places in the answer of the chunks stored raw and
  wholly inside the range: the file's bytes land where they belong, read once.
- Every chunk is verified (BLAKE3) as every Tusk read verifies: those over their place in the
  answer; a compressed chunk, or one the range cuts, is read into a buffer of its own,
  decoded and verified whole there, and only then is its part copied into the answer.
- The chunk a read ends inside is kept, verified, for the next read: a scan starts there.

The reads, the decompression and the hashing release the GIL, so DuckDB's threads overlap.
Backends without ``read_into`` (S3) are read with one ranged get per run, copied into place.
"""

from __future__ import annotations

import bisect
import ctypes
import itertools
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import blake3
import zstandard

from tusk.errors import CorruptObject, StorageError
from tusk.storage.chunks import ChunkRef, ChunkStore
from tusk.storage.meta.records import ChunkLocation
from tusk.storage.packs import CODEC_RAW, CODEC_REF, pack_key

PAGE = 1024  # chunks whose locations are looked up together (one query)
PAGES_KEPT = 64  # ~64K chunks, ~8 GiB of file at the default chunk size
COALESCE = 16 * 1024 * 1024  # at most this much of a pack in one read
RUN_CHUNKS = 256  # at most this many chunks in one read (buffers of one preadv)


class SpanReader:
    """Bytes of one file by offset, from its chunk list ``refs`` in ``chunks``. Safe to share
    between threads (DuckDB's read one file through one reader)."""

    def __init__(self, chunks: ChunkStore, refs: Sequence[ChunkRef], verify: bool = True) -> None:
        self._store = chunks
        self._refs = refs
        self._ends = list(itertools.accumulate(n for _, n in refs))
        self.size = self._ends[-1] if self._ends else 0
        self._verify = verify
        self._pages: OrderedDict[int, dict[bytes, ChunkLocation]] = OrderedDict()
        self._lock = threading.Lock()
        self._last: tuple[int, memoryview] | None = None  # a chunk read whole, verified
        # Chunks read from the store so far, and their bytes (as in the file): what a lazy
        # input's log reports (tusk.pps.lazy). Counted under the lock.
        self.fetched_chunks = self.fetched_bytes = 0
        # (key, offset, buffers): the local backend's one preadv; others have no such read
        self._read_into: Callable[[str, int, Sequence[memoryview]], None] | None = getattr(
            chunks.backend, "read_into", None
        )

    def read(self, start: int, stop: int) -> bytes:
        """Bytes ``start`` up to ``stop`` (clipped to the file)."""
        start, stop = max(start, 0), min(stop, self.size)
        if stop <= start:
            return b""
        first = bisect.bisect_right(self._ends, start)  # the chunk holding byte `start`
        last = bisect.bisect_left(self._ends, stop)  # ... and byte `stop - 1`
        locs = self._locations(first, last)
        out, view = _blank(stop - start)
        try:
            self._assemble(view, start, stop, first, locs)
        finally:
            view.release()
        return out if isinstance(out, bytes) else bytes(out)

    def _assemble(
        self, view: memoryview, start: int, stop: int, first: int, locs: list[ChunkLocation]
    ) -> None:
        """Fill ``view`` (the answer: bytes ``[start, stop)``) from chunks ``first`` on."""
        ends = self._ends
        i = 0
        cached = self._last
        if cached is not None and cached[0] == first:  # a scan's next read starts in it
            self._place(view, start, stop, first, cached[1])
            i = 1
        while i < len(locs):
            head = locs[i]
            if head.codec == CODEC_REF:  # a piece of an object where it lives (tusk import)
                k = first + i
                raw = memoryview(self._store.read_ref(self._refs[k][0], head))
                self._count(k, k + 1)
                self._place(view, start, stop, k, raw)
                if ends[k] > stop:
                    self._last = (k, raw)
                i += 1
                continue
            j, end = i + 1, head.offset + head.length
            while (  # neighbours in the same pack: one read
                j < len(locs)
                and j - i < RUN_CHUNKS
                and locs[j].pack == head.pack
                and locs[j].offset == end
                and end - head.offset < COALESCE
            ):
                end += locs[j].length
                j += 1
            buffers: list[memoryview] = []
            own: list[bool] = []  # read into a buffer of its own (else: into its place)
            for m in range(i, j):
                k, loc = first + m, locs[m]
                lo, hi = (ends[k - 1] if k else 0), ends[k]
                inside = loc.codec == CODEC_RAW and start <= lo and hi <= stop
                if inside and loc.length == hi - lo:
                    buffers.append(view[lo - start : hi - start])
                    own.append(False)
                else:
                    buffers.append(memoryview(bytearray(loc.length)))
                    own.append(True)
            self._fill(head.pack, head.offset, buffers)
            self._count(first + i, first + j)
            for m in range(i, j):
                k, loc, buf = first + m, locs[m], buffers[m - i]
                if not own[m - i]:
                    self._check(k, loc, buf)
                    continue
                raw = self._decode(k, loc, buf)
                self._place(view, start, stop, k, raw)
                if ends[k] > stop:  # the next read of a scan starts in it
                    self._last = (k, raw)
            i = j

    def _count(self, a: int, b: int) -> None:
        """Chunks ``a`` up to ``b`` were read from the store."""
        size = self._ends[b - 1] - (self._ends[a - 1] if a else 0)
        with self._lock:
            self.fetched_chunks += b - a
            self.fetched_bytes += size

    def _place(self, view: memoryview, start: int, stop: int, k: int, raw: memoryview) -> None:
        """Copy the part of chunk ``k`` (its bytes ``raw``) that ``[start, stop)`` overlaps
        into its place in ``view``."""
        lo = self._ends[k - 1] if k else 0
        a, b = max(lo, start), min(self._ends[k], stop)
        view[a - start : b - start] = raw[a - lo : b - lo]

    def _fill(self, pack: str, offset: int, buffers: Sequence[memoryview]) -> None:
        """Fill ``buffers`` in turn with the bytes of ``pack`` from ``offset`` on: straight
        into them where the backend can, else one ranged get copied into them."""
        if self._read_into is not None:
            self._read_into(pack_key(pack), offset, buffers)
            return
        total = sum(len(b) for b in buffers)
        data = memoryview(self._store.backend.get_range(pack_key(pack), offset, total))
        at = 0
        for b in buffers:
            b[:] = data[at : at + len(b)]
            at += len(b)

    def _locations(self, first: int, last: int) -> list[ChunkLocation]:
        """Where chunks ``first`` to ``last`` are stored, looked up a page at a time."""
        out: list[ChunkLocation] = []
        for page in range(first // PAGE, last // PAGE + 1):
            locs = self._page(page)
            lo, hi = max(first, page * PAGE), min(last + 1, (page + 1) * PAGE)
            for h, _ in self._refs[lo:hi]:
                loc = locs.get(h)
                if loc is None:
                    raise StorageError(
                        f"chunk {h.hex()} is missing from the chunk index (run tusk fsck)"
                    )
                out.append(loc)
        return out

    def _page(self, page: int) -> dict[bytes, ChunkLocation]:
        with self._lock:  # DuckDB's threads read through one reader
            locs = self._pages.get(page)
            if locs is not None:
                self._pages.move_to_end(page)
                return locs
        hashes = [h for h, _ in self._refs[page * PAGE : (page + 1) * PAGE]]
        locs = self._store.meta.locate_chunks(hashes)
        with self._lock:
            self._pages[page] = locs
            if len(self._pages) > PAGES_KEPT:
                self._pages.popitem(last=False)
        return locs

    def _decode(self, index: int, loc: ChunkLocation, payload: memoryview) -> memoryview:
        """Chunk ``index``'s bytes from its stored ``payload``, verified."""
        if loc.codec == CODEC_RAW:
            self._check(index, loc, payload)
            return payload
        dctx = zstandard.ZstdDecompressor()  # a few µs; compressed chunks are the few
        raw = ChunkStore.decode(self._refs[index][0], loc, payload, dctx, self._verify)
        return raw if isinstance(raw, memoryview) else memoryview(raw)

    def _check(self, index: int, loc: ChunkLocation, raw: memoryview) -> None:
        digest, size = self._refs[index]
        if self._verify and (len(raw) != size or blake3.blake3(raw).digest() != digest):
            raise CorruptObject(f"chunk {digest.hex()} in pack {loc.pack} fails its hash check")


# An answer filled in place


_IN_PLACE_MIN = 64 * 1024  # below this, a bytearray and one copy cost next to nothing


def _bytes_allocator() -> Callable[[int], tuple[bytes, memoryview]] | None:
    """CPython's ``PyBytes_FromStringAndSize(NULL, n)``: a new ``bytes`` whose contents are
    to be written before it is shared (as C code builds one), with a writable view of its
    contents. None where that is not available or does not behave (not CPython)."""
    if sys.implementation.name != "cpython":
        return None
    try:
        new = ctypes.pythonapi.PyBytes_FromStringAndSize
    except AttributeError:
        return None
    new.restype = ctypes.py_object
    new.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
    data_at = bytes.__basicsize__ - 1  # offsetof(PyBytesObject, ob_sval)

    def allocate(size: int) -> tuple[bytes, memoryview]:
        out = new(None, size)
        # The view does not keep `out` alive: the caller holds it, and releases the view
        # before `out` is handed on.
        return out, memoryview((ctypes.c_char * size).from_address(id(out) + data_at)).cast("B")

    out, view = allocate(_IN_PLACE_MIN)
    view[:] = bytes(range(256)) * (_IN_PLACE_MIN // 256)
    view.release()
    return allocate if out == bytes(range(256)) * (_IN_PLACE_MIN // 256) else None


_ALLOCATE = _bytes_allocator()


def _blank(size: int) -> tuple[bytes | bytearray, memoryview]:
    """An answer of ``size`` bytes to fill through the view, then release the view: a
    ``bytes`` itself where it can be made so, else a bytearray (to be copied into bytes)."""
    if _ALLOCATE is not None and size >= _IN_PLACE_MIN:
        return _ALLOCATE(size)
    out = bytearray(size)
    return out, memoryview(out)
