"""The S3 gateway's records in the metadata store (ETags, multipart uploads and their parts),
and gc: a part is a root while its upload is in use, and garbage once the upload is stale."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest
import sqlalchemy as sa

from tusk.pfs.service import PfsService
from tusk.storage.meta import schema
from tusk.storage.meta.store_s3 import S3Part, S3Upload
from tusk.storage.store import Storage

ENGINES = ("sqlite", "postgresql")


@pytest.fixture
def pfs(home: Path, engine: str) -> Iterator[PfsService]:
    service = PfsService(Storage.open(home))
    yield service
    service.close()


def upload(upload_id: str, key: str, created: float, branch: str = "master") -> S3Upload:
    return S3Upload(upload_id, "data", branch, key, "user:alice", created, created)


def part(pfs: PfsService, upload_id: str, number: int, data: bytes, now: float) -> S3Part:
    """Store ``data`` as a detached one-file tree and record it as a part of ``upload_id``."""
    with pfs.chunks.writer() as w:
        refs = w.write_bytes(data)
    with pfs.meta.write() as tx:
        (root,) = pfs.write_detached_trees(tx, [[(("part",), refs)]])
        p = S3Part(upload_id, number, root, len(data), f"{number:032x}", now)
        tx.s3_put_part(p)
    return p


def test_etags_uploads_and_parts(pfs: PfsService) -> None:
    hashes = [blake3.blake3(b"%d" % i).digest() for i in range(1201)]  # 3 batches
    with pfs.meta.write() as tx:
        tx.s3_put_etags([(h, f"etag-{i}") for i, h in enumerate(hashes)])
        tx.s3_put_etags([(hashes[0], "etag-new")])  # an upsert
    with pfs.meta.read() as tx:
        found = tx.s3_etags([*hashes, b"\0" * 32])
        assert tx.s3_etags([]) == {}
    assert len(found) == len(hashes) and found[hashes[0]] == "etag-new"
    assert found[hashes[1200]] == "etag-1200"

    with pfs.meta.write() as tx:
        tx.s3_create_upload(upload("u2", "b/key", 2.0))
        tx.s3_create_upload(upload("u1", "a/key", 3.0))
        tx.s3_create_upload(upload("u3", "b/key", 1.0))
        tx.s3_create_upload(upload("u4", "a/key", 1.0, branch="other"))
    for number in (2, 1):
        part(pfs, "u2", number, b"part %d" % number, 10.0 + number)
    replaced = part(pfs, "u2", 1, b"part 1, again", 20.0)
    with pfs.meta.read() as tx:
        assert [u.id for u in tx.s3_list_uploads("data", "master")] == ["u1", "u3", "u2"]
        assert tx.s3_get_upload("u1") == upload("u1", "a/key", 3.0)
        assert tx.s3_get_upload("nope") is None
        parts = tx.s3_parts("u2")
        assert [(p.number, p.size) for p in parts] == [(1, 13), (2, 6)] and parts[0] == replaced
        assert tx.s3_get_upload("u2").updated_at == 20.0  # type: ignore[union-attr]
        assert sorted(tx.s3_part_roots()) == sorted(p.tree for p in parts)
        assert tx.s3_stale_uploads(3.0) == ["u3", "u4"]
    with pfs.meta.write() as tx:
        tx.s3_delete_upload("u2")
    with pfs.meta.read() as tx:
        assert tx.s3_get_upload("u2") is None and tx.s3_parts("u2") == []
        assert tx.s3_part_roots() == []


def test_gc_keeps_the_parts_of_a_live_upload_and_reclaims_a_stale_one(pfs: PfsService) -> None:
    data = blake3.blake3(b"part").digest(length=300_000)  # a few chunks
    with pfs.meta.write() as tx:
        tx.s3_create_upload(upload("u1", "big.bin", time.time()))
    p = part(pfs, "u1", 1, data, time.time() + 3600)  # in use for another hour

    # No commit names the part; with no grace only the upload keeps it.
    report = pfs.gc(grace=0)
    assert report.chunks_deleted == 0 and report.uploads_expired == 0
    refs = pfs.file_chunks(p.tree, "/part")
    assert b"".join(pfs.chunks.read_chunks(refs)) == data
    fsck = pfs.fsck()
    assert fsck.ok, fsck.problems
    assert not any("not referenced" in n for n in fsck.notes), fsck.notes

    # Abandoned: the next gc expires the upload and sweeps its part.
    with pfs.meta.write() as tx:
        tx.conn.execute(sa.update(schema.s3_uploads).values(updated_at=time.time() - 60))
    report = pfs.gc(grace=0)
    assert report.uploads_expired == 1
    assert report.chunks_deleted == len(refs) and report.packs_deleted >= 1
    with pfs.meta.read() as tx:
        assert tx.s3_get_upload("u1") is None and tx.s3_part_roots() == []
        assert tx.locate_chunks([d for d, _ in refs]) == {}
    assert pfs.fsck().ok
