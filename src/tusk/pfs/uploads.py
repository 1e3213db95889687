"""Multipart uploads and object ETags: what the S3 gateway keeps beside the file trees.

A multipart upload is a row (repo, branch, key); each part is stored as it arrives, in
bounded memory, as chunks and a *detached tree* holding one file, ``/part``, whose root is
on the part's row. gc treats part trees as roots (like datum outputs) while the upload is
alive, and drops uploads nobody touched within its grace period, so abandoned parts are
reclaimed. Completing an upload commits one file whose chunk list is the parts' chunk lists
end to end: no byte is read or copied again.

ETags are what S3 clients compare: the MD5 of a file put in one piece, ``md5-of-md5s-N`` for
a multipart one. They are recorded by content id (a file's BLAKE3 ``hash``), once, when the
gateway writes the file, so that a GET or a listing never reads data to compute one. A file
put by other means (``tusk put file``, a pipeline) has no recorded MD5; its ETag is derived
from its content id in the multipart form (``<32 hex>-1``), which clients do not take for an
MD5 of the bytes.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tusk.errors import InvalidArgument, NotFound
from tusk.pfs.models import CommitInfo
from tusk.pfs.sources import Source
from tusk.storage.chunks import ChunkRef
from tusk.storage.meta.store_s3 import S3Part, S3Upload

if TYPE_CHECKING:
    from tusk.pfs.service import PfsService

PART_FILE = ("part",)
MAX_PARTS = 10_000


class UploadNotFound(NotFound):
    code = "upload_not_found"


def derived_etag(content_id: bytes) -> str:
    """The ETag of a file whose MD5 was never recorded (written outside the gateway)."""
    return content_id.hex()[:32] + "-1"


def multipart_etag(part_md5s: Sequence[str]) -> str:
    """S3's ETag of a multipart object: MD5 of the parts' binary MD5s, dash, part count."""
    joined = b"".join(bytes.fromhex(m) for m in part_md5s)
    return f"{hashlib.md5(joined).hexdigest()}-{len(part_md5s)}"


class Uploads:
    """Multipart uploads and recorded ETags over one :class:`PfsService`."""

    def __init__(self, pfs: PfsService) -> None:
        self.pfs = pfs
        self.meta = pfs.meta

    # ETags

    def etags(self, content_ids: Sequence[bytes]) -> dict[bytes, str]:
        """The ETag of each content id: recorded, else derived."""
        if not content_ids:
            return {}
        with self.meta.read() as tx:
            known = tx.s3_etags(list(set(content_ids)))
        return {h: known.get(h) or derived_etag(h) for h in content_ids}

    # Multipart uploads

    def create(self, repo: str, branch: str, key: str, principal: str = "") -> S3Upload:
        now = time.time()
        upload = S3Upload(uuid.uuid4().hex, repo, branch, key, principal, now, now)
        with self.meta.write() as tx:
            tx.s3_create_upload(upload)
        return upload

    def get(self, upload_id: str, repo: str | None = None, key: str | None = None) -> S3Upload:
        with self.meta.read() as tx:
            upload = tx.s3_get_upload(upload_id) if _is_upload_id(upload_id) else None
        if upload is None or (repo is not None and upload.repo != repo):
            raise UploadNotFound(f"no multipart upload {upload_id[:40]!r}: it was completed, "
                                 "aborted or never started")  # fmt: skip
        if key is not None and upload.key != key:
            raise UploadNotFound(f"multipart upload {upload_id} is for another key")
        return upload

    def in_bucket(self, repo: str, branch: str) -> list[S3Upload]:
        with self.meta.read() as tx:
            return tx.s3_list_uploads(repo, branch)

    def parts(self, upload_id: str) -> list[S3Part]:
        with self.meta.read() as tx:
            return tx.s3_parts(upload_id)

    def put_part(self, upload: S3Upload, number: int, source: Source, md5: object) -> S3Part:
        """Store one part from ``source``; ``md5`` is a hashlib object the source feeds as
        it is read (its hex digest is the part's ETag)."""
        if not 1 <= number <= MAX_PARTS:
            raise InvalidArgument(f"part number {number} is not between 1 and {MAX_PARTS}")
        pfs = self.pfs
        with pfs.chunks.writer() as writer:
            chunks = source.write_to(writer, None)
            index, durable = writer.flush_deferred()
        durable()
        size = sum(n for _, n in chunks)
        etag = md5.hexdigest()  # type: ignore[attr-defined]
        with self.meta.write() as tx:
            if tx.s3_get_upload(upload.id) is None:  # aborted or completed meanwhile
                raise UploadNotFound(f"multipart upload {upload.id} ended while a part arrived")
            pfs.chunks.index_packs(tx, index)
            (root,) = pfs.write_detached_trees(tx, [[(PART_FILE, chunks)]])
            part = S3Part(upload.id, number, root, size, etag, time.time())
            tx.s3_put_part(part)
        return part

    def part_chunks(self, part: S3Part) -> list[ChunkRef]:
        return self.pfs.file_chunks(part.tree, "/part")

    def complete(
        self, upload: S3Upload, chunks: Sequence[ChunkRef], etag: str, description: str = ""
    ) -> CommitInfo:
        """Commit the file made of ``chunks`` at the upload's key, record its ETag, and
        end the upload (all chunks are indexed already, by their parts)."""
        from tusk.pfs.paths import split_path
        from tusk.pfs.service import PutOp
        from tusk.pfs.tree import content_id

        commit = self.pfs.modify(
            upload.repo, upload.branch, [PutOp(tuple(split_path(upload.key)), tuple(chunks))],
            description,
        )  # fmt: skip
        with self.meta.write() as tx:
            tx.s3_put_etags([(content_id(chunks), etag)])
            tx.s3_delete_upload(upload.id)
        return commit

    def abort(self, upload: S3Upload) -> None:
        with self.meta.write() as tx:
            tx.s3_delete_upload(upload.id)


def _is_upload_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)
