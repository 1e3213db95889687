"""Random reads of one chunked file: bytes ``[start, stop)`` from its chunk list.

``ChunkStore.read_chunks`` streams whole chunks, each cut out of its pack read as a copy of
its own, and looks their locations up on every call. A reader that is asked for many ranges
of one file (DuckDB scanning a Parquet file through ``tusk sql``: a read per column chunk)
keeps the locations it looked up (a page of chunks at a time), reads each run of neighbours
in a pack with one ranged read, verifies each chunk in place (BLAKE3 over a view of the
pack's bytes) and copies the asked-for bytes once, into the result.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections import OrderedDict
from collections.abc import Sequence

import blake3
import zstandard

from tusk.errors import CorruptObject, StorageError
from tusk.storage.chunks import ChunkRef, ChunkStore
from tusk.storage.meta.records import ChunkLocation
from tusk.storage.packs import CODEC_RAW, pack_key

PAGE = 1024  # chunks whose locations are looked up together (one query)
PAGES_KEPT = 64  # ~64K chunks, ~8 GiB of file at the default chunk size
COALESCE = 16 * 1024 * 1024  # at most this much of a pack in one ranged read


class SpanReader:
    """Bytes of one file by offset, from its chunk list ``refs`` in ``chunks``."""

    def __init__(self, chunks: ChunkStore, refs: Sequence[ChunkRef], verify: bool = True) -> None:
        self._store = chunks
        self._refs = refs
        self._ends = list(itertools.accumulate(n for _, n in refs))
        self.size = self._ends[-1] if self._ends else 0
        self._verify = verify
        self._pages: OrderedDict[int, dict[bytes, ChunkLocation]] = OrderedDict()
        self._lock = threading.Lock()
        self._last: tuple[int, memoryview] | None = None  # the last chunk read, whole

    def read(self, start: int, stop: int) -> bytes:
        """Bytes ``start`` up to ``stop`` (clipped to the file)."""
        start, stop = max(start, 0), min(stop, self.size)
        if stop <= start:
            return b""
        first = bisect.bisect_right(self._ends, start)  # the chunk holding byte `start`
        last = bisect.bisect_left(self._ends, stop)  # ... and byte `stop - 1`
        direct = self._direct(first, last, start, stop)
        if direct is not None:
            return direct
        pieces: list[memoryview] = []
        i = first
        cached = self._last
        if cached is not None and cached[0] == first:  # a scan's next read starts in it
            pieces.append(cached[1])
            i += 1
        dctx = zstandard.ZstdDecompressor()
        while i <= last:
            loc = self._locate(i)
            j, end = i + 1, loc.offset + loc.length
            while j <= last:  # neighbours in the same pack: one ranged read
                nxt = self._locate(j)
                if nxt.pack != loc.pack or nxt.offset != end or end - loc.offset > COALESCE:
                    break
                end += nxt.length
                j += 1
            blob = memoryview(self._get(loc.pack, loc.offset, end))
            for k in range(i, j):
                at = self._locate(k)
                rel = at.offset - loc.offset
                pieces.append(self._decode(k, at, blob[rel : rel + at.length], dctx))
            i = j
        self._last = (last, pieces[-1])
        base = self._ends[first - 1] if first else 0
        if len(pieces) == 1:
            return bytes(pieces[0][start - base : stop - base])
        pieces[-1] = pieces[-1][: stop - self._ends[last - 1]]
        pieces[0] = pieces[0][start - base :]
        return b"".join(pieces)

    def _direct(self, first: int, last: int, start: int, stop: int) -> bytes | None:
        """The common case of a big read, without copying the bytes again: chunks stored raw
        and back to back in one pack are the file's bytes, so ``[start, stop)`` is one read of
        the pack; the chunks at its two ends, if cut, are read whole to be verified. None
        when the span is not laid out so (compressed chunks, several packs)."""
        if last - first < 2:
            return None
        locs = [self._locate(k) for k in range(first, last + 1)]
        head = locs[0]
        if head.codec != CODEC_RAW or any(
            b.codec != CODEC_RAW or b.pack != head.pack or b.offset != a.offset + a.length
            for a, b in itertools.pairwise(locs)
        ):
            return None
        base = self._ends[first - 1] if first else 0
        out = self._get(head.pack, head.offset + start - base, head.offset + stop - base)
        view = memoryview(out)
        for k, loc in enumerate(locs, first):
            lo = (self._ends[k - 1] if k else 0) - start  # the chunk's place in `out`
            hi = self._ends[k] - start
            if lo >= 0 and hi <= len(out):
                whole = view[lo:hi]
            else:  # cut by the range: read it whole (the scan's next read starts in it)
                cached = self._last
                if cached is not None and cached[0] == k:
                    whole = cached[1]
                else:
                    whole = memoryview(self._get(loc.pack, loc.offset, loc.offset + loc.length))
            self._check(k, loc, whole)
            if k == last:
                self._last = (k, whole)
        return out

    def _get(self, pack: str, offset: int, end: int) -> bytes:
        return self._store.backend.get_range(pack_key(pack), offset, end - offset)

    def _locate(self, index: int) -> ChunkLocation:
        page = index // PAGE
        with self._lock:  # DuckDB's threads read through one reader
            locs = self._pages.get(page)
            if locs is not None:
                self._pages.move_to_end(page)
        if locs is None:
            hashes = [h for h, _ in self._refs[page * PAGE : (page + 1) * PAGE]]
            locs = self._store.meta.locate_chunks(hashes)
            with self._lock:
                self._pages[page] = locs
                if len(self._pages) > PAGES_KEPT:
                    self._pages.popitem(last=False)
        loc = locs.get(self._refs[index][0])
        if loc is None:
            raise StorageError(
                f"chunk {self._refs[index][0].hex()} is missing from the chunk index "
                "(run tusk fsck)"
            )
        return loc

    def _decode(
        self, index: int, loc: ChunkLocation, payload: memoryview, dctx: zstandard.ZstdDecompressor
    ) -> memoryview:
        raw = ChunkStore.decode(self._refs[index][0], loc, payload, dctx, self._verify)
        return raw if isinstance(raw, memoryview) else memoryview(raw)

    def _check(self, index: int, loc: ChunkLocation, raw: memoryview) -> None:
        digest, size = self._refs[index]
        if self._verify and (len(raw) != size or blake3.blake3(raw).digest() != digest):
            raise CorruptObject(f"chunk {digest.hex()} in pack {loc.pack} fails its hash check")
