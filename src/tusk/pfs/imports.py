"""Data where it already lives: ``tusk import`` (a commit of references to objects, no byte
copied), ``tusk materialize`` (their bytes into the chunk store), and checking references.

A referenced file is an ordinary file entry whose chunks are *pieces* of its object (``PIECE``
bytes each): each piece is indexed like a chunk, with codec 2 and the pack ``ref:<id>``, and
the reference row ``<id>`` says where the object is (URL, endpoint) and which version of it
was seen (ETag, version id, size). So every path that reads chunks (get file, ranges, the S3
gateway, pipelines, SQL, diff by content id, lineage) reads referenced files too, fetching
only the pieces a read overlaps, each with ``If-Match`` on the recorded ETag: a source that
changed or vanished gives ReferenceBroken, never other bytes. A piece's digest is derived
from the reference and the piece's index (the bytes are not read at import), so the same
object imported twice is the same file, and a changed object a different one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import blake3

from tusk.errors import SourceError
from tusk.pfs.models import CommitInfo
from tusk.pfs.paths import split_path
from tusk.pfs.service import PutOp
from tusk.storage.chunks import ChunkRef
from tusk.storage.meta.records import ChunkLocation
from tusk.storage.meta.store import MetaTx
from tusk.storage.meta.store_refs import RefRecord
from tusk.storage.packs import CODEC_REF, REF_PREFIX
from tusk.values import frozen

if TYPE_CHECKING:
    from tusk.pfs.service import PfsService
    from tusk.storage.backends.objects import RemoteObject

PIECE = 4 * 1024 * 1024  # bytes of a referenced object fetched at once, at most


@frozen
class BrokenRef:
    """A reference whose object is not what was recorded any more (``fsck --references``)."""

    url: str
    problem: str


def ref_id(obj: RemoteObject, endpoint: str | None) -> str:
    key = "\0".join((endpoint or "", obj.url, obj.etag, obj.version or "", str(obj.size)))
    return blake3.blake3(key.encode()).hexdigest()[:32]


def pieces(rid: str, size: int) -> tuple[list[ChunkRef], list[tuple[bytes, ChunkLocation]]]:
    """The chunk refs of a referenced object of ``size`` bytes, and their index rows."""
    refs: list[ChunkRef] = []
    rows: list[tuple[bytes, ChunkLocation]] = []
    for i, offset in enumerate(range(0, size, PIECE)):
        length = min(PIECE, size - offset)
        digest = blake3.blake3(b"tusk-ref\0" + rid.encode() + i.to_bytes(8, "big")).digest()
        refs.append((digest, length))
        rows.append((digest, ChunkLocation(REF_PREFIX + rid, offset, length, length, CODEC_REF)))
    return refs, rows


def import_objects(
    pfs: PfsService,
    repo: str,
    ref: str,
    path: str,
    url: str,
    *,
    exclude: Sequence[str] = (),
    endpoint: str | None = None,
    description: str = "",
) -> tuple[CommitInfo, int]:
    """Commit one file per object below ``url`` at ``path`` of ``repo@ref``, by reference;
    returns the commit and how many files it imported."""
    from tusk.storage.backends.objects import s3_objects

    objects = s3_objects(endpoint)
    base = split_path(path)
    now = time.time()
    ops = []
    refs: list[RefRecord] = []
    rows: list[tuple[bytes, ChunkLocation]] = []
    selected, listed = objects.select(url, exclude)
    for obj, parts in selected:
        rid = ref_id(obj, endpoint)
        chunks, index = pieces(rid, obj.size)
        ops.append(PutOp(base + parts, tuple(chunks)))
        refs.append(RefRecord(rid, obj.url, obj.etag, obj.version, endpoint, obj.size, now))
        rows.extend(index)
    if not ops:
        why = f"all {listed} excluded" if listed else "none found"
        raise SourceError(f"no objects to import under {url} ({why})")

    def record(tx: MetaTx) -> None:
        tx.put_refs(refs)
        tx.add_chunk_rows(rows)

    info = pfs.modify(repo, ref, ops, description or f"import {url}", also=record)
    return info, len(ops)


def referenced(pfs: PfsService, repo: str, ref: str, path: str) -> Iterator[tuple[str, bool]]:
    """(file path, whether it is a reference) of every file at or below ``path``."""
    page: list[tuple[str, bytes | None]] = []

    def flush() -> Iterator[tuple[str, bool]]:
        firsts = [h for _, h in page if h is not None]
        locs = pfs.chunks.meta.locate_chunks(firsts) if firsts else {}
        for p, h in page:
            loc = locs.get(h) if h is not None else None
            yield p, loc is not None and loc.codec == CODEC_REF

    reader = pfs.reader()
    for p, entry in pfs.walk_files(repo, ref, path):
        first = next(iter(reader.chunks(entry)), None)
        page.append((p, first[0] if first is not None else None))
        if len(page) >= 1024:
            yield from flush()
            page = []
    yield from flush()


def check_references(pfs: PfsService, threads: int = 16) -> tuple[int, list[BrokenRef]]:
    """HEAD every object a live reference names, in parallel: (how many checked, those whose
    object is gone or changed)."""
    from tusk.storage.backends.objects import s3_objects

    with pfs.meta.read() as tx:
        refs = tx.live_refs()

    def one(r: RefRecord) -> BrokenRef | None:
        try:
            now = s3_objects(r.endpoint).head(r.url)
        except SourceError as exc:
            return BrokenRef(r.url, exc.message)
        if now is None:
            return BrokenRef(r.url, "gone: no such object")
        if now.etag != r.etag or (r.version and now.version and now.version != r.version):
            return BrokenRef(r.url, f"changed: ETag {r.etag} when imported, now {now.etag}")
        if now.size != r.size:
            return BrokenRef(r.url, f"changed: {r.size} bytes when imported, now {now.size}")
        return None

    with ThreadPoolExecutor(threads) as pool:
        broken = [b for b in pool.map(one, refs) if b is not None]
    return len(refs), broken


def materialize(
    pfs: PfsService, repo: str, ref: str, path: str, description: str = ""
) -> tuple[CommitInfo | None, int]:
    """Copy the referenced files at or below ``path`` into the chunk store, as one new commit
    (their bytes read from their sources, checked as any read); (the commit, how many).
    None and 0 when nothing there is a reference."""
    from tusk.pfs.sources import BlockStream, StreamSource

    pinned = pfs.inspect_commit(repo, ref).id  # every file read from the same commit
    files = [p for p, is_ref in referenced(pfs, repo, pinned, path) if is_ref]
    if not files:
        return None, 0

    def source(p: str) -> StreamSource:
        import io

        return StreamSource(io.BufferedReader(BlockStream(pfs.read_file(repo, pinned, p))))

    result = pfs.put_files(
        repo, ref, ((p, source(p)) for p in files),
        description=description or f"materialize {repo}@{ref}:{path}",
    )  # fmt: skip
    return result.commit, len(files)
