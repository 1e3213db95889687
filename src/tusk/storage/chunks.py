"""Content-defined chunks, BLAKE3-addressed, zstd-compressed where it pays, stored in packs.

:class:`ChunkStore` knows bytes and digests only. Writing goes through a :class:`ChunkWriter`
session: chunks are deduplicated against the index in batches, appended to a pack, and each
sealed pack is stored by a background thread and then indexed, in that order, so the index
never names a chunk whose pack is not durable.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple, Protocol, overload

import blake3
import zstandard
from pyfastcdc.cy import FastCDC

from tusk.config import StoreConfig
from tusk.errors import CorruptObject, StorageError
from tusk.storage.backends.base import ObjectBackend
from tusk.storage.meta.records import ChunkLocation, PackRecord
from tusk.storage.meta.store import MetaStore, MetaTx
from tusk.storage.meta.store_refs import RefRecord
from tusk.storage.packs import CODEC_RAW, CODEC_REF, CODEC_ZSTD, REF_PREFIX, PackBuilder, pack_key
from tusk.values import frozen


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


# One pack's index rows: the pack, and (digest, location) for each chunk in it.
IndexEntry = tuple[PackRecord, list[tuple[bytes, ChunkLocation]]]

# A chunk reference as stored in file entries: (blake3 digest, raw length).
ChunkRef = tuple[bytes, int]
Progress = Callable[[int], None]

# Hashing work is handed to the workers in batches of this size...
_BATCH_BYTES = 8 * 1024 * 1024
_BATCH_CHUNKS = 2048
# ...and new chunks are looked up in the index in larger ones (one query each).
_DEDUP_BYTES = 64 * 1024 * 1024
_DEDUP_CHUNKS = 4096
_READ_COALESCE = 16 * 1024 * 1024
# A server answering ranged reads (S3 GETs of 8 MiB parts, ten at a time) holds one read per
# request: smaller reads keep its memory bounded at the same speed (bench/bench_s3.py).
RANGE_COALESCE = 2 * 1024 * 1024
# Packs are synced and indexed in groups of about this many bytes (see _checkpoint).
_CHECKPOINT_BYTES = 1024 * 1024 * 1024


@frozen(slots=True)
class WriteStats:
    chunks: int
    new_chunks: int
    bytes_in: int
    bytes_stored: int
    packs: int

    def __add__(self, other: WriteStats) -> WriteStats:
        return WriteStats(
            self.chunks + other.chunks,
            self.new_chunks + other.new_chunks,
            self.bytes_in + other.bytes_in,
            self.bytes_stored + other.bytes_stored,
            self.packs + other.packs,
        )


class ChunkStore:
    def __init__(self, backend: ObjectBackend, meta: MetaStore, config: StoreConfig) -> None:
        self.backend = backend
        self.meta = meta
        self.config = config
        self._refs: dict[str, RefRecord] = {}
        self._refs_lock = threading.Lock()

    def writer(self) -> ChunkWriter:
        return ChunkWriter(self)

    def index_packs(self, tx: MetaTx, rows: Sequence[IndexEntry]) -> set[bytes]:
        """Insert packs' index rows in ``tx`` (a write transaction); return their digests.

        Each pack must still exist: checked under the write lock that gc's sweep of
        unindexed packs also takes, so an index row never names a pack gc removed.
        """
        digests: set[bytes] = set()
        for pack, entries in rows:
            if not self.backend.exists(pack_key(pack.id)):
                raise StorageError(
                    f"pack {pack.id} vanished before it was indexed (a gc ran with a grace "
                    "period shorter than this upload); retry the put"
                )
            tx.add_pack(pack, entries)
            digests.update(d for d, _ in entries)
        return digests

    def chunker(self) -> FastCDC:
        c = self.config
        return FastCDC(c.chunk_avg, min_size=c.chunk_min, max_size=c.chunk_max)

    def read_chunks(
        self, refs: Sequence[ChunkRef], verify: bool = True, coalesce: int = _READ_COALESCE
    ) -> Iterator[bytes]:
        """Yield each chunk's raw bytes in order; neighbours in a pack are read together, up
        to ``coalesce`` bytes a read."""
        dctx = zstandard.ZstdDecompressor()
        for start in range(0, len(refs), 1024):
            batch = refs[start : start + 1024]
            locs = self.meta.locate_chunks([h for h, _ in batch])
            i = 0
            while i < len(batch):
                # Coalesce neighbours in the same pack into one ranged read.
                first = _need(locs, batch[i][0])
                if first.codec == CODEC_REF:  # a piece of an object where it lives
                    yield self.read_ref(batch[i][0], first)
                    i += 1
                    continue
                j = i + 1
                end = first.offset + first.length
                while j < len(batch):
                    loc = locs.get(batch[j][0])
                    if loc is None or loc.pack != first.pack or loc.offset != end:
                        break
                    if loc.codec == CODEC_REF:
                        break
                    if end + loc.length - first.offset > coalesce:
                        break
                    end += loc.length
                    j += 1
                blob = self.backend.get_range(
                    pack_key(first.pack), first.offset, end - first.offset
                )
                for digest, _size in batch[i:j]:
                    loc = locs[digest]
                    rel = loc.offset - first.offset
                    payload = blob[rel : rel + loc.length]
                    yield self.decode(digest, loc, payload, dctx, verify)
                i = j

    def read_ref(self, digest: bytes, loc: ChunkLocation, path: str = "") -> bytes:
        """A piece of a referenced object (codec 2), from where it lives, checked against the
        version recorded when it was imported (ReferenceBroken if it changed or vanished)."""
        from tusk.storage.backends.objects import s3_objects

        ref = self.reference(loc.pack[len(REF_PREFIX) :])
        if ref is None:
            raise StorageError(
                f"chunk {digest.hex()} names reference {loc.pack}, which is not recorded "
                "(run tusk fsck)"
            )
        objects = s3_objects(ref.endpoint)
        return objects.get_range(ref.url, loc.offset, loc.length, ref.etag, ref.version, path)

    def reference(self, ref_id: str) -> RefRecord | None:
        """A reference's record (they never change: kept for the process)."""
        with self._refs_lock:
            found = self._refs.get(ref_id)
        if found is None:
            with self.meta.read() as tx:
                found = tx.get_refs([ref_id]).get(ref_id)
            if found is not None:
                with self._refs_lock:
                    self._refs[ref_id] = found
        return found

    @overload
    @staticmethod
    def decode(
        digest: bytes,
        loc: ChunkLocation,
        payload: bytes,
        dctx: zstandard.ZstdDecompressor,
        verify: bool = True,
    ) -> bytes: ...

    @overload
    @staticmethod
    def decode(
        digest: bytes,
        loc: ChunkLocation,
        payload: memoryview,
        dctx: zstandard.ZstdDecompressor,
        verify: bool = True,
    ) -> bytes | memoryview: ...

    @staticmethod
    def decode(
        digest: bytes,
        loc: ChunkLocation,
        payload: bytes | memoryview,
        dctx: zstandard.ZstdDecompressor,
        verify: bool = True,
    ) -> bytes | memoryview:
        """A chunk's bytes from its stored payload, checked against its digest (``verify``).
        A raw payload comes back as given (a view stays a view: no copy)."""
        raw: bytes | memoryview
        if loc.codec == CODEC_ZSTD:
            try:
                raw = dctx.decompress(payload, max_output_size=loc.raw_length)
            except zstandard.ZstdError as exc:
                raise CorruptObject(
                    f"chunk {digest.hex()} in pack {loc.pack} does not decompress"
                ) from exc
        elif loc.codec == CODEC_RAW:
            raw = payload
        else:
            raise CorruptObject(f"chunk {digest.hex()} has unknown codec {loc.codec}")
        if verify and (len(raw) != loc.raw_length or blake3.blake3(raw).digest() != digest):
            raise CorruptObject(f"chunk {digest.hex()} in pack {loc.pack} fails its hash check")
        return raw


def _need(locs: dict[bytes, ChunkLocation], digest: bytes) -> ChunkLocation:
    loc = locs.get(digest)
    if loc is None:
        raise StorageError(f"chunk {digest.hex()} is missing from the chunk index (run tusk fsck)")
    return loc


class ChunkWriter:
    """One write session. Use as a context manager; :meth:`close` waits for every pack.

    Large files run as a pipeline: the chunker (main thread) hands 8 MiB batches to two
    worker threads that hash and compress them (BLAKE3, zstd and the chunker all release the
    GIL), and sealed packs are written by an I/O thread. Small files stay on the calling
    thread: their work is mostly Python, and handing it to threads only adds GIL contention
    (measured: twice as slow for 20,000 files of 4 KiB).
    """

    def __init__(self, store: ChunkStore) -> None:
        self.store = store
        self._cdc = store.chunker()
        self._local = threading.local()
        self._pending: list[Prepared] = []
        self._pending_bytes = 0
        self._seen: set[bytes] = set()
        self._pack = PackBuilder()
        self._small_limit = store.config.chunk_min
        self._sample_ratio = store.config.compress_sample_ratio
        self._main_ctx: tuple[zstandard.ZstdCompressor, zstandard.ZstdCompressor] | None = None
        self._workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tusk-hash")
        self._sealer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tusk-pack")
        self._inflight: list[Future[None]] = []
        self._unsynced: list[tuple[str, PackBuilder]] = []  # written, not yet synced/indexed
        self._unsynced_bytes = 0
        self.chunks = 0
        self.new_chunks = 0
        self.bytes_in = 0
        self.bytes_stored = 0
        self.packs = 0

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # Sources

    def write_file(
        self, path: str | os.PathLike[str], progress: Progress | None = None
    ) -> list[ChunkRef]:
        # A file that fits in one chunk (most files of a many-file put) takes a straight path
        # on this thread: a handful of calls a file, as its work is mostly the interpreter's.
        # os.open/os.read: a buffered file object costs more than the read on small files.
        limit = self._small_limit
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.read(fd, limit + 1)
        finally:
            os.close(fd)
        if len(data) > limit:
            return self._pipeline((c.data for c in self._cdc.cut_file(os.fspath(path))), progress)
        if not data:
            return []
        digest = blake3.blake3(data).digest()
        size = len(data)
        ctx = self._main_ctx
        if ctx is None:
            ctx = self._main_ctx = self._contexts()
        # The whole chunk is the sample (it is at most chunk_min): see _prepare.
        probe = ctx[0].compress(data)
        if len(probe) <= self._sample_ratio * size:
            packed = ctx[1].compress(data)
            if len(packed) < size:
                self._pending.append(Prepared(digest, size, packed, CODEC_ZSTD))
            else:
                self._pending.append(Prepared(digest, size, data, CODEC_RAW))
        else:
            self._pending.append(Prepared(digest, size, data, CODEC_RAW))
        self.chunks += 1
        self.bytes_in += size
        self._pending_bytes += size
        if progress is not None:
            progress(size)
        if self._pending_bytes >= _DEDUP_BYTES or len(self._pending) >= _DEDUP_CHUNKS:
            self._flush_pending()
        return [(digest, size)]

    def write_stream(self, stream: Readable, progress: Progress | None = None) -> list[ChunkRef]:
        # cut_stream reuses its buffer, so each chunk is copied before the next is cut.
        return self._pipeline((bytes(c.data) for c in self._cdc.cut_stream(stream)), progress)

    def write_bytes(self, data: bytes, progress: Progress | None = None) -> list[ChunkRef]:
        if not data:
            return []
        if len(data) <= self._small_limit:
            return [self._accept_one(self._prepare(data), progress)]
        return self._pipeline((c.data for c in self._cdc.cut_buf(data)), progress)

    # Internals

    def _pipeline(
        self, pieces: Iterable[bytes | memoryview], progress: Progress | None
    ) -> list[ChunkRef]:
        refs: list[ChunkRef] = []
        queue: deque[Future[list[Prepared]]] = deque()
        batch: list[bytes | memoryview] = []
        batch_bytes = 0
        for piece in pieces:
            batch.append(piece)
            batch_bytes += len(piece)
            if batch_bytes >= _BATCH_BYTES or len(batch) >= _BATCH_CHUNKS:
                queue.append(self._workers.submit(self._prepare_all, batch))
                batch, batch_bytes = [], 0
                while len(queue) > 2:
                    refs.extend(self._accept_one(p, progress) for p in queue.popleft().result())
        if batch:
            queue.append(self._workers.submit(self._prepare_all, batch))
        while queue:
            refs.extend(self._accept_one(p, progress) for p in queue.popleft().result())
        return refs

    def _prepare_all(self, pieces: list[bytes | memoryview]) -> list[Prepared]:
        return [self._prepare(p) for p in pieces]

    def _contexts(self) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdCompressor]:
        """Compressors for one thread: a fast probe (does this data compress?) and the real one."""
        return (
            zstandard.ZstdCompressor(level=-5),
            zstandard.ZstdCompressor(level=self.store.config.compress_level),
        )

    def _prepare(self, data: bytes | memoryview) -> Prepared:
        """Hash, and compress where an 8 KiB sample says it pays (runs on worker threads)."""
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = self._local.ctx = self._contexts()
        digest = blake3.blake3(data).digest()
        sample = data[:8192]
        if len(ctx[0].compress(sample)) <= self._sample_ratio * len(sample):
            packed = ctx[1].compress(data)
            if len(packed) < len(data):
                return Prepared(digest, len(data), packed, CODEC_ZSTD)
        return Prepared(digest, len(data), data, CODEC_RAW)

    def _accept_one(self, p: Prepared, progress: Progress | None) -> ChunkRef:
        """Queue one prepared chunk for dedup and packing; return its reference."""
        self.chunks += 1
        self.bytes_in += p.raw_length
        self._pending.append(p)
        self._pending_bytes += p.raw_length
        if progress is not None:
            progress(p.raw_length)
        if self._pending_bytes >= _DEDUP_BYTES or len(self._pending) >= _DEDUP_CHUNKS:
            self._flush_pending()
        return (p.digest, p.raw_length)

    def _flush_pending(self) -> None:
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        fresh = list(dict.fromkeys(p.digest for p in pending if p.digest not in self._seen))
        known = self.store.meta.find_chunks(fresh) if fresh else set()
        if known:
            # Reusing a stored chunk: touch it so gc's grace period protects it.
            self.store.meta.touch_chunks(list(known))
        for p in pending:
            if p.digest in self._seen or p.digest in known:
                continue
            self._seen.add(p.digest)
            self._pack.add(p.digest, p.payload, p.raw_length, p.codec)
            self.new_chunks += 1
            self.bytes_stored += len(p.payload)
            if self._pack.size >= self.store.config.pack_target:
                self._seal()

    def _seal(self) -> None:
        if not len(self._pack):
            return
        pack, self._pack = self._pack, PackBuilder()
        self.packs += 1
        # At most two packs in flight keeps memory bounded on huge files.
        while len(self._inflight) >= 2:
            self._inflight.pop(0).result()
        self._inflight.append(self._sealer.submit(self._store_pack, pack))
        if self._unsynced_bytes >= _CHECKPOINT_BYTES:
            self._checkpoint()

    def _store_pack(self, pack: PackBuilder) -> None:
        pack_id = uuid.uuid4().hex
        parts = pack.seal()
        self.store.backend.put_parts(
            pack_key(pack_id), parts, durable=False, sync_soon=self.store.config.sync == "full"
        )
        # Written: keep only what indexing needs, so a big put holds a pack or two in memory,
        # not everything since the last checkpoint.
        pack.release()
        self._unsynced.append((pack_id, pack))
        self._unsynced_bytes += pack.size

    def _checkpoint(self, index: bool = True) -> list[IndexEntry]:
        """Make the packs written so far durable, then index them: data first, index after.

        With ``index=False`` the index rows are returned instead, for the caller to insert in
        its own transaction (a commit inserts them with the tree that names them).
        """
        rows, durable = self._written("now")
        durable()
        if rows and index:
            with self.store.meta.write() as tx:
                self.store.index_packs(tx, rows)
            return []
        return rows

    def _written(
        self, sync: str, others: Sequence[str] = ()
    ) -> tuple[list[IndexEntry], Callable[[], None]]:
        """Index rows of the packs written so far, and a call that returns once they are durable.

        ``sync``: "now" flushes them to disk before returning; "background" starts the flush
        on its own thread and the call waits for it; "none" leaves it to whoever indexes them
        (a put's helper process: the parent flushes its packs with its own, ``others``).
        """
        while self._inflight:
            self._inflight.pop(0).result()
        if not self._unsynced and not others:
            return [], _done
        written, self._unsynced, self._unsynced_bytes = self._unsynced, [], 0
        durable = _done
        if self.store.config.sync == "full" and sync != "none":
            keys = [pack_key(pack_id) for pack_id, _ in written]
            keys += [pack_key(pack_id) for pack_id in others]
            if sync == "background":
                flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tusk-sync")
                synced = flusher.submit(self.store.backend.sync, keys)
                flusher.shutdown(wait=False)
                durable = synced.result
            else:
                self.store.backend.sync(keys)
        now = time.time()
        rows = [
            (
                PackRecord(pack_id, pack.size, len(pack), now),
                [
                    (e.hash, ChunkLocation(pack_id, e.offset, e.length, e.raw_length, e.codec))
                    for e in pack.entries
                ],
            )
            for pack_id, pack in written
        ]
        return rows, durable

    def flush(self) -> None:
        """Make every chunk written so far durable and indexed."""
        self._flush_pending()
        self._seal()
        self._checkpoint()

    def flush_unindexed(self) -> list[IndexEntry]:
        """Make every chunk durable and return the index rows still to insert."""
        self._flush_pending()
        self._seal()
        return self._checkpoint(index=False)

    def seal(self) -> None:
        """Start writing every chunk accepted so far (without waiting for it)."""
        self._flush_pending()
        self._seal()

    def flush_deferred(
        self, others: Sequence[str] = ()
    ) -> tuple[list[IndexEntry], Callable[[], None]]:
        """Write every chunk; return the index rows and a call that waits until they are durable.

        The disk flush runs while the caller builds its tree; the caller must call the
        returned function before committing anything that names these chunks. ``others``
        are packs another process wrote for the same commit, flushed along with these.
        """
        self._flush_pending()
        self._seal()
        return self._written("background", others)

    def flush_unsynced(self) -> list[IndexEntry]:
        """Write every chunk and return the index rows, leaving the flush to disk to the
        process that will index them (see :meth:`flush_deferred`'s ``others``)."""
        self._flush_pending()
        self._seal()
        return self._written("none")[0]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._workers.shutdown(wait=True)
            self._sealer.shutdown(wait=True)

    def abort(self) -> None:
        self._pending.clear()
        self._workers.shutdown(wait=True, cancel_futures=True)
        self._sealer.shutdown(wait=True, cancel_futures=True)

    def stats(self) -> WriteStats:
        return WriteStats(
            self.chunks, self.new_chunks, self.bytes_in, self.bytes_stored, self.packs
        )


def _done() -> None:
    """A durability barrier that has nothing to wait for."""


class Prepared(NamedTuple):
    """A chunk ready to pack (a named tuple: cheap to make, a few per small file)."""

    digest: bytes
    raw_length: int
    payload: bytes | memoryview
    codec: int
