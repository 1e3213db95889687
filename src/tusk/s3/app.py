"""The S3 gateway's ASGI application: ``create_s3_app(pfs, pps, auth)``.

One Starlette route takes every request; :func:`operation` names the S3 operation from the
method, the bucket, the key and the query (as S3 does), and the operation's name is what
the one permission gate checks: ``AuthService.authorize("s3", <operation>, token, repo=...)``
with the rules of :data:`tusk.auth.permissions.S3`. The token is the Tusk token whose id is
the request's access key id, once its AWS Signature V4 has been verified
(:mod:`tusk.s3.sigv4`); an unsigned request is anonymous, allowed only while auth is off.

Writes become commits like any other: PutObject, DeleteObject(s), CopyObject and
CompleteMultipartUpload on a branch make one commit each, or join the branch's open commit
(``tusk start commit``), so a job writing a thousand objects makes one commit. Bodies stream
into the chunk store through a bounded buffer (:class:`tusk.api.streams.BodyPipe`), decoded
and checked (aws-chunked signatures, Content-MD5, x-amz-content-sha256) as they are read; a
body that fails a check, or a client that goes away, commits nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO, cast
from urllib.parse import parse_qsl, quote, unquote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tusk.api.streams import BodyPipe, ClientGone, content_length, reader
from tusk.auth.permissions import REPO_CREATE, REPO_READ, REPO_WRITE
from tusk.auth.service import OFF, AuthService, Caller
from tusk.errors import RepoNotFound, TuskError
from tusk.pfs.refs import Address, parse_ref
from tusk.pfs.service import PfsService
from tusk.pfs.sources import StreamSource
from tusk.pfs.tree import FileEntry
from tusk.pfs.uploads import MAX_PARTS, multipart_etag
from tusk.pps.service import PpsService
from tusk.s3 import sigv4
from tusk.s3 import xml as X
from tusk.s3.batch import SMALL, SmallPuts
from tusk.s3.errors import S3Error, from_tusk
from tusk.s3.listing import Item, iter_keys
from tusk.s3.names import Bucket, bucket_name, check_key, parse_bucket
from tusk.s3.offload import Offloaded
from tusk.storage.chunks import ChunkRef
from tusk.storage.meta.records import CommitRecord
from tusk.storage.meta.store import MetaTx
from tusk.storage.meta.store_s3 import S3Session

EDGE = "s3"
REGION = "us-east-1"
MAX_PUT = 5 << 30  # S3's limit for one PutObject or part
MIN_PART = 5 << 20  # every part but the last
MAX_KEYS = 1000
MAX_DELETE = 1000
EMPTY_MD5 = hashlib.md5(b"").hexdigest()
# Sub-resources S3 has that the gateway does not: named in the NotImplemented answer.
_UNSUPPORTED = {
    "accelerate", "acl", "analytics", "cors", "encryption", "intelligent-tiering",
    "inventory", "legal-hold", "lifecycle", "logging", "metrics", "notification",
    "object-lock", "ownershipControls", "policy", "policyStatus", "publicAccessBlock",
    "replication", "requestPayment", "restore", "retention", "select", "tagging", "torrent",
    "website", "attributes",
}  # fmt: skip
# Operations whose bodies stream into the store (the others read a small body, or none)
_STREAMED = {"PutObject", "UploadPart"}
_WRITES = {
    "PutObject", "CopyObject", "DeleteObject", "DeleteObjects", "CreateMultipartUpload",
    "UploadPart", "UploadPartCopy", "CompleteMultipartUpload", "AbortMultipartUpload",
}  # fmt: skip
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_SESSION_KEY = re.compile(r"^[0-9a-f]{16}$")


@dataclass
class Call:
    """One request, as the handlers see it."""

    request_id: str
    op: str
    bucket: Bucket | None
    key: str | None
    query: dict[str, str]
    headers: dict[str, str]
    caller: Caller = OFF
    signed: sigv4.Signed | None = None
    resource: str = "/"
    session: S3Session | None = None  # a datum's own view: its buckets only (tusk.pps.s3io)

    @property
    def path(self) -> str:
        assert self.key is not None
        return check_key(self.key)

    def need_bucket(self) -> Bucket:
        assert self.bucket is not None
        return self.bucket


def operation(method: str, bucket: str | None, key: str | None, q: dict[str, str],
              headers: dict[str, str]) -> str:  # fmt: skip
    """The S3 operation a request is, as S3 names it."""
    unsupported = next((s for s in q if s in _UNSUPPORTED), None)
    if unsupported is not None:
        raise S3Error("NotImplemented", f"the {unsupported} sub-resource is not supported")
    if bucket is None:
        if method == "GET":
            return "ListBuckets"
        raise S3Error("MethodNotAllowed", f"{method} / is not an S3 operation")
    if key is None:
        table = {
            "PUT": "CreateBucket",
            "DELETE": "DeleteBucket",
            "HEAD": "HeadBucket",
        }
        if method in table:
            if method == "PUT" and "versioning" in q:
                raise S3Error("NotImplemented", "PutBucketVersioning: commits are versions")
            return table[method]
        if method == "GET":
            for sub, name in (
                ("location", "GetBucketLocation"),
                ("versioning", "GetBucketVersioning"),
                ("uploads", "ListMultipartUploads"),
                ("versions", "ListObjectVersions"),
            ):
                if sub in q:
                    return name
            return "ListObjectsV2" if q.get("list-type") == "2" else "ListObjects"
        if method == "POST" and "delete" in q:
            return "DeleteObjects"
        raise S3Error("NotImplemented", f"{method} on a bucket with {sorted(q)} is not supported")
    copy = "x-amz-copy-source" in headers
    if method == "PUT":
        if "uploadId" in q or "partNumber" in q:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "GET":
        return "ListParts" if "uploadId" in q else "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
    if method == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
    raise S3Error("NotImplemented", f"{method} on an object with {sorted(q)} is not supported")


class Md5Reader(io.RawIOBase):
    """A body read through MD5; ``expected`` (Content-MD5, base64) is checked at its end."""

    def __init__(self, raw: BinaryIO, expected: str | None) -> None:
        self.raw = raw
        self.md5 = Offloaded(hashlib.md5())
        self.size = 0
        self.expected: bytes | None = None
        if expected is not None:
            try:
                self.expected = base64.b64decode(expected, validate=True)
            except (binascii.Error, ValueError):
                self.expected = b""
            if len(self.expected) != 16:
                raise S3Error("InvalidDigest", "Content-MD5 is not the base64 of 16 bytes")

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            self.md5.update(data)
            self.size += len(data)
            if self.size > MAX_PUT:
                raise S3Error("EntityTooLarge", f"a body may hold at most {MAX_PUT >> 30} GiB")
        elif self.expected is not None and self.md5.digest() != self.expected:
            raise S3Error("BadDigest", "the body's MD5 differs from its Content-MD5")
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def hexdigest(self) -> str:
        return self.md5.hexdigest()


class IterReader(io.RawIOBase):
    """A blocking stream over an iterator of byte strings."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self.blocks = blocks
        self.left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self.left:
            nxt = next(self.blocks, None)
            if nxt is None:
                return 0
            self.left = nxt
        n = min(len(b), len(self.left))
        b[:n] = self.left[:n]
        self.left = self.left[n:]
        return n


def _quote_etag(etag: str) -> str:
    return f'"{etag}"'


def _etag_matches(header: str, etag: str) -> bool:
    for item in header.split(","):
        item = item.strip()
        if item == "*":
            return True
        if item.startswith("W/"):
            item = item[2:]
        if item.strip('"') == etag:
            return True
    return False


def _since(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _precondition(headers: dict[str, str], etag: str, mtime: float, get: bool) -> int | None:
    """304 or 412 when a conditional header says so (RFC 7232 order, as S3 applies it)."""
    match, none_match = headers.get("if-match"), headers.get("if-none-match")
    if match is not None and not _etag_matches(match, etag):
        return 412
    unmodified = headers.get("if-unmodified-since")
    if match is None and unmodified is not None:
        since = _since(unmodified)
        if since is not None and int(mtime) > since:
            return 412
    if none_match is not None and _etag_matches(none_match, etag):
        return 304 if get else 412
    modified = headers.get("if-modified-since")
    if none_match is None and modified is not None:
        since = _since(modified)
        if since is not None and int(mtime) <= since:
            return 304
    return None


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, stop) of a Range header; None for the whole object; InvalidRange past its end."""
    if header is None or size == 0:
        return None  # (an empty object has no byte to range over: S3 sends it whole)
    m = _RANGE.match(header.strip())
    if m is None or (m.group(1) == "" and m.group(2) == ""):
        return None  # not one byte range: S3 answers the whole object
    first, last = m.group(1), m.group(2)
    if first == "":
        n = int(last)
        if n == 0:
            raise _invalid_range(size)
        return max(0, size - n), size
    start = int(first)
    if start >= size:
        raise _invalid_range(size)
    stop = size if last == "" else min(size, int(last) + 1)
    if stop <= start:
        return None
    return start, stop


def _invalid_range(size: int) -> S3Error:
    err = S3Error("InvalidRange", "the requested range is not satisfiable")
    err.headers = {"content-range": f"bytes */{size}"}  # type: ignore[attr-defined]
    return err


def _xml(el: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(X.to_bytes(el), status, headers=headers, media_type="application/xml")


def _encode(value: str, url: bool) -> str:
    return quote(value, safe="/") if url else value


def _int_param(
    q: dict[str, str], name: str, default: int, low: int = 0, high: int = MAX_KEYS
) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise S3Error("InvalidArgument", f"{name} must be an integer, not {raw[:40]!r}") from None
    if value < low:
        raise S3Error("InvalidArgument", f"{name} must be {low} or more")
    return min(value, high)


class Gateway:
    """The handlers, over the services. Sync handlers run on the thread pool."""

    def __init__(self, pfs: PfsService, pps: PpsService, auth: AuthService,
                 domain: str | None = None) -> None:  # fmt: skip
        self.pfs = pfs
        self.pps = pps
        self.auth = auth
        self.domain = domain.lower().strip(".") if domain else None
        self.small = SmallPuts(pfs)
        self._active, self._active_at = False, -10.0

    # The edge: addressing, the gate, errors

    def target(self, request: Request) -> tuple[str | None, str | None, str]:
        """(bucket, key, resource) of a request, path-style or virtual-host style."""
        raw = request.scope.get("raw_path") or request.url.path.encode()
        path = unquote(raw.decode("latin-1").split("?", 1)[0], errors="surrogatepass")
        host = request.headers.get("host", "").split(":", 1)[0].lower()
        if self.domain and host.endswith("." + self.domain):
            bucket = host[: -len(self.domain) - 1]
            key = path[1:] or None
            return bucket, key, path
        rest = path[1:]
        if not rest:
            return None, None, "/"
        bucket, slash, key = rest.partition("/")
        return bucket, (key if slash and key else None), path

    def authenticate(self, request: Request, call: Call) -> None:
        """Verify the signature (auth on), then pass the one gate; sets the caller."""
        headers = call.headers
        raw_query = request.scope.get("query_string", b"").decode("latin-1")
        signed_request = "authorization" in headers or any(
            q in call.query
            for q in ("X-Amz-Signature", "Signature")  # SigV2: refused below
        )
        active = self._auth_active() if signed_request else True
        token: str | None = None
        if signed_request and active:
            tokens: dict[str, str] = {}

            def secret_for(access_key: str) -> str | None:
                found = self.auth.s3_token(access_key)
                if found is None:
                    return None
                tokens[access_key] = found
                return found.split("_", 2)[2]

            raw = request.scope.get("raw_path") or request.url.path.encode()
            call.signed = sigv4.authenticate(
                request.method, raw.decode("latin-1"), raw_query, headers, secret_for
            )
            if call.signed is not None:
                token = tokens.get(call.signed.access_key)
        repo = call.bucket.repo if call.bucket is not None else None
        call.caller = self.auth.authorize(EDGE, call.op, token, repo=repo, detail=call.resource)
        if call.op in _WRITES and call.bucket is not None:
            self._check_writable(call)

    def _auth_active(self) -> bool:
        """Whether auth is on, read at most once a second. A stale answer never lets anyone
        in: just turned on, a signed request is taken as unsigned and ``authorize`` (which
        reads the store) refuses it; just turned off, its tokens are gone, and a signed
        request is refused for that second."""
        now = time.monotonic()
        if now - self._active_at > 1.0:
            self._active = self.auth.is_active()
            self._active_at = now
        return self._active

    def _check_writable(self, call: Call) -> None:
        bucket = call.need_bucket()
        if not bucket.writable:
            raise S3Error("AccessDenied", f"bucket {bucket.name} is one commit: it is read-only")
        if bucket.staging:
            return  # the datum's own output, which its pipeline writes
        if self.pps.is_pipeline(bucket.repo) and call.caller.principal != f"pipeline:{bucket.repo}":
            raise S3Error(
                "AccessDenied",
                f"{bucket.repo} is the output repo of pipeline {bucket.repo}: only the pipeline "
                "writes to it",
            )

    # Reads of a bucket's commit

    def snapshot(self, bucket: Bucket, version: str | None = None) -> CommitRecord | None:
        """The commit a bucket (or a version id) reads; None for a branch with no commit."""
        if version is not None:
            if not re.fullmatch(r"[0-9a-f]{32}", version):
                raise S3Error("InvalidArgument", f"invalid version id {version[:40]!r}")
            try:
                return self.pfs.resolve_commit(bucket.repo, version)
            except TuskError as exc:
                if exc.code == "commit_not_found":
                    raise S3Error("NoSuchVersion", f"no version {version}") from None
                raise
        if bucket.commit is not None:
            return self.pfs.resolve_commit(bucket.repo, bucket.commit)
        if bucket.staging:
            return self.pfs.resolve_commit(bucket.repo, bucket.branch)
        return self.head(bucket)

    def head(self, bucket: Bucket) -> CommitRecord | None:
        """The head commit of a branch bucket (open or not); None before its first commit."""
        try:
            return self.pfs.branch_head(bucket.repo, bucket.branch)
        except TuskError as exc:
            if exc.code in ("repo_not_found", "branch_not_found", "invalid_name"):
                raise S3Error("NoSuchBucket", f"bucket {bucket.name} does not exist") from None
            raise

    def object_entry(self, call: Call) -> tuple[CommitRecord, FileEntry, str]:
        """(commit, file entry, ETag) of the object a GET/HEAD names."""
        bucket = call.need_bucket()
        path = call.path
        commit = self.snapshot(bucket, call.query.get("versionId"))
        if commit is None:
            raise S3Error("NoSuchKey", f"no such key {call.key}")
        entry = self.pfs.tree_entry(commit.tree, path)
        if not isinstance(entry, FileEntry):
            raise S3Error("NoSuchKey", f"no such key {call.key}")
        etag = self.pfs.uploads.etags([entry.hash])[entry.hash]
        return commit, entry, etag

    # Service and buckets

    def session_of(self, request: Request) -> S3Session | None:
        """The datum session whose access key signs ``request``, if any."""
        key = sigv4.access_key_of(request.headers.get("authorization", ""), request.url.query)
        if key is None or not _SESSION_KEY.match(key):
            return None
        with self.pfs.meta.read() as tx:
            return tx.s3_get_session(key)

    @staticmethod
    def session_bucket(session: S3Session, name: str) -> Bucket:
        """A bucket as a datum names it: one of its inputs (one commit, read-only) or ``out``
        (its s3_out output); no other bucket exists for it."""
        if name == "out" and session.staging is not None:
            return Bucket("out", session.pipeline, session.staging, staging=True)
        found = session.buckets.get(name)
        if found is None:
            names = sorted([*session.buckets, *(["out"] if session.staging else [])])
            raise S3Error(
                "NoSuchBucket",
                f"bucket {name[:80]} does not exist for this job: its buckets are "
                f"{', '.join(names)}",
            )
        repo, branch, commit = found
        return Bucket(name, repo, branch, commit)

    def ListBuckets(self, call: Call) -> Response:
        if call.session is not None:
            owner = [("ID", call.session.pipeline), ("DisplayName", call.session.pipeline)]
            names = sorted(call.session.buckets) + (["out"] if call.session.staging else [])
            created = X.iso(call.session.created_at)
            buckets = [("Bucket", [("Name", n), ("CreationDate", created)]) for n in names]
            return _xml(
                X.document("ListAllMyBucketsResult", [("Owner", owner), ("Buckets", buckets)])
            )
        repos = self.pfs.list_repos()
        readable = self.auth.readable(call.caller, [r.name for r in repos])
        buckets = []
        for repo in repos:
            if repo.name not in readable:
                continue
            for b in sorted(repo.branches):
                name = bucket_name(repo.name, b)
                try:
                    parse_bucket(name)
                except S3Error:
                    continue  # a name S3 cannot address (upper case): not a bucket
                buckets.append(
                    ("Bucket", [("Name", name), ("CreationDate", X.iso(repo.created_at))])
                )
        owner = [
            ("ID", call.caller.principal or "anonymous"),
            ("DisplayName", call.caller.principal or "anonymous"),
        ]
        return _xml(X.document("ListAllMyBucketsResult", [("Owner", owner), ("Buckets", buckets)]))

    def CreateBucket(self, call: Call) -> Response:
        bucket = call.need_bucket()
        if bucket.commit is not None:
            raise S3Error("InvalidBucketName", "a commit bucket cannot be created: name a branch")
        try:
            self.pfs.inspect_repo(bucket.repo)
            exists = True
        except RepoNotFound:
            exists = False
        if exists:
            self.auth.require(call.caller, REPO_WRITE, bucket.repo, edge=EDGE, operation=call.op)
            try:
                self.pfs.inspect_branch(bucket.repo, bucket.branch)
                raise S3Error("BucketAlreadyOwnedByYou", f"bucket {bucket.name} exists already")
            except TuskError as exc:
                if exc.code != "branch_not_found":
                    raise
        else:
            self.auth.require(call.caller, REPO_CREATE, bucket.repo, edge=EDGE, operation=call.op)
            info = self.pfs.create_repo(bucket.repo, description="made by S3 CreateBucket")
            self.auth.grant_creator(call.caller, info.name)  # its creator owns it, as in REST
        self.pfs.create_branch(bucket.repo, bucket.branch)
        self.auth.audit_event(
            call.caller, EDGE, call.op, "repo", bucket.repo, f"bucket {bucket.name}"
        )
        return Response(status_code=200, headers={"location": "/" + bucket.name})

    def DeleteBucket(self, call: Call) -> Response:
        bucket = call.need_bucket()
        if bucket.commit is not None:
            raise S3Error("AccessDenied", f"bucket {bucket.name} is one commit: it is read-only")
        commit = self.head(bucket)
        if commit is not None and commit.files > 0:
            raise S3Error("BucketNotEmpty", f"bucket {bucket.name} is not empty")
        self.pfs.delete_branch(bucket.repo, bucket.branch)
        return Response(status_code=204)

    def HeadBucket(self, call: Call) -> Response:
        self.snapshot(call.need_bucket())
        return Response(status_code=200, headers={"x-amz-bucket-region": REGION})

    def GetBucketLocation(self, call: Call) -> Response:
        self.snapshot(call.need_bucket())
        return _xml(X.document("LocationConstraint"))  # us-east-1 is the empty constraint

    def GetBucketVersioning(self, call: Call) -> Response:
        self.snapshot(call.need_bucket())
        return _xml(X.document("VersioningConfiguration", [("Status", "Enabled")]))

    # Listings

    def _listing(
        self, call: Call, after: str, limit: int
    ) -> tuple[list[Any], list[Any], bool, str]:
        """(contents, common prefixes, truncated, last key or prefix) of one page."""
        bucket = call.need_bucket()
        q = call.query
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        url = q.get("encoding-type") == "url"
        if q.get("encoding-type") not in (None, "", "url"):
            raise S3Error("InvalidArgument", "encoding-type must be url")
        commit = self.snapshot(bucket)
        contents: list[Any] = []
        prefixes: list[Any] = []
        if commit is None or limit == 0:
            return contents, prefixes, False, ""
        items = iter_keys(self.pfs, commit.tree, prefix, delimiter, after)
        page: list[Item] = []
        truncated = False
        for item in items:
            if len(page) == limit:
                truncated = True
                break
            page.append(item)
        files = [i.entry for i in page if i.entry is not None]
        etags = self.pfs.uploads.etags([e.hash for e in files])
        mtime = X.iso(commit.finished_at or commit.started_at)
        for item in page:
            if item.entry is None:
                prefixes.append(("CommonPrefixes", [("Prefix", _encode(item.key, url))]))
            else:
                contents.append(("Contents", [
                    ("Key", _encode(item.key, url)), ("LastModified", mtime),
                    ("ETag", _quote_etag(etags[item.entry.hash])), ("Size", item.entry.size),
                    ("StorageClass", "STANDARD"),
                ]))  # fmt: skip
        return contents, prefixes, truncated, page[-1].key if page else ""

    def ListObjects(self, call: Call) -> Response:
        q = call.query
        limit = _int_param(q, "max-keys", MAX_KEYS)
        marker = q.get("marker", "")
        url = q.get("encoding-type") == "url"
        contents, prefixes, truncated, last = self._listing(call, marker, limit)
        fields: list[tuple[str, Any]] = [
            ("Name", call.need_bucket().name), ("Prefix", _encode(q.get("prefix", ""), url)),
            ("Marker", _encode(marker, url)), ("MaxKeys", limit),
        ]  # fmt: skip
        if q.get("delimiter"):
            fields.append(("Delimiter", _encode(q["delimiter"], url)))
        fields.append(("IsTruncated", truncated))
        if truncated:
            fields.append(("NextMarker", _encode(last, url)))
        if url:
            fields.append(("EncodingType", "url"))
        return _xml(X.document("ListBucketResult", [*fields, *contents, *prefixes]))

    def ListObjectsV2(self, call: Call) -> Response:
        q = call.query
        limit = _int_param(q, "max-keys", MAX_KEYS)
        url = q.get("encoding-type") == "url"
        token = q.get("continuation-token")
        after = q.get("start-after", "")
        if token is not None:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except (binascii.Error, ValueError):
                raise S3Error("InvalidArgument", "the continuation token is not valid") from None
        contents, prefixes, truncated, last = self._listing(call, after, limit)
        fields: list[tuple[str, Any]] = [
            ("Name", call.need_bucket().name), ("Prefix", _encode(q.get("prefix", ""), url)),
            ("KeyCount", len(contents) + len(prefixes)), ("MaxKeys", limit),
        ]  # fmt: skip
        if q.get("delimiter"):
            fields.append(("Delimiter", _encode(q["delimiter"], url)))
        fields.append(("IsTruncated", truncated))
        if token is not None:
            fields.append(("ContinuationToken", token))
        if truncated:
            fields.append(
                ("NextContinuationToken", base64.urlsafe_b64encode(last.encode()).decode())
            )
        if q.get("start-after"):
            fields.append(("StartAfter", _encode(q["start-after"], url)))
        if url:
            fields.append(("EncodingType", "url"))
        return _xml(X.document("ListBucketResult", [*fields, *contents, *prefixes]))

    def ListObjectVersions(self, call: Call) -> Response:
        """Each version is a commit that added or changed the key (a removal is a delete
        marker), newest first per key; the version id is the commit id."""
        bucket = call.need_bucket()
        q = call.query
        prefix = q.get("prefix", "")
        limit = _int_param(q, "max-keys", MAX_KEYS)
        key_marker, version_marker = q.get("key-marker", ""), q.get("version-id-marker", "")
        rows: list[tuple[str, int, str, str, Any]] = []
        if bucket.commit is not None:
            history = [self.pfs.inspect_commit(bucket.repo, bucket.commit)]
        else:
            head = self.head(bucket)
            history = self.pfs.list_commits(bucket.repo, bucket.branch) if head else []
        for n, c in enumerate(history):
            new = Address(bucket.repo, parse_ref(c.id), "/")
            for d in self.pfs.iter_diff(new):
                key = d.path.lstrip("/")
                if key.startswith(prefix):
                    rows.append((key, n, c.id, d.change, d))
        rows.sort(key=lambda r: (r[0], r[1]))
        etags = self.pfs.uploads.etags(
            [bytes.fromhex(r[4].new_hash) for r in rows if r[4].new_hash]
        )
        times = {c.id: X.iso(c.finished_at or c.started_at) for c in history}
        out: list[Any] = []
        seen: set[str] = set()
        skipping = bool(key_marker)
        truncated = False
        last: tuple[str, str] = ("", "")
        for key, _n, commit_id, change, d in rows:
            latest = key not in seen
            seen.add(key)
            if skipping:
                if key < key_marker or (key == key_marker and not version_marker):
                    continue
                if key == key_marker:
                    if commit_id == version_marker:
                        skipping = False
                    continue
                skipping = False
            if len(out) == limit:
                truncated = True
                break
            common = [("Key", key), ("VersionId", commit_id), ("IsLatest", latest),
                      ("LastModified", times[commit_id])]  # fmt: skip
            if change == "removed":
                out.append(("DeleteMarker", common))
            else:
                etag = etags[bytes.fromhex(d.new_hash)]
                more = [("ETag", _quote_etag(etag)), ("Size", d.new_size),
                        ("StorageClass", "STANDARD")]  # fmt: skip
                out.append(("Version", [*common, *more]))
            last = (key, commit_id)
        fields: list[tuple[str, Any]] = [
            ("Name", bucket.name), ("Prefix", prefix), ("KeyMarker", key_marker),
            ("VersionIdMarker", version_marker), ("MaxKeys", limit), ("IsTruncated", truncated),
        ]  # fmt: skip
        if truncated:
            fields += [("NextKeyMarker", last[0]), ("NextVersionIdMarker", last[1])]
        return _xml(X.document("ListVersionsResult", [*fields, *out]))

    # Objects: reads

    def _object_headers(self, commit: CommitRecord, entry: FileEntry, etag: str) -> dict[str, str]:
        return {
            "etag": _quote_etag(etag),
            "last-modified": X.http_date(commit.finished_at or commit.started_at),
            "accept-ranges": "bytes",
            "x-amz-version-id": commit.id,
            "content-type": "binary/octet-stream",
        }

    def HeadObject(self, call: Call) -> Response:
        commit, entry, etag = self.object_entry(call)
        headers = self._object_headers(commit, entry, etag)
        status = _precondition(call.headers, etag, commit.finished_at or commit.started_at, True)
        if status is not None:
            return Response(status_code=status, headers={"etag": headers["etag"]})
        span = byte_range(call.headers.get("range"), entry.size)
        if span is not None:
            headers["content-range"] = f"bytes {span[0]}-{span[1] - 1}/{entry.size}"
            headers["content-length"] = str(span[1] - span[0])
            return Response(status_code=206, headers=headers)
        headers["content-length"] = str(entry.size)
        return Response(status_code=200, headers=headers)

    def GetObject(self, call: Call) -> Response:
        commit, entry, etag = self.object_entry(call)
        headers = self._object_headers(commit, entry, etag)
        mtime = commit.finished_at or commit.started_at
        status = _precondition(call.headers, etag, mtime, True)
        if status == 304:
            return Response(status_code=304, headers={"etag": headers["etag"]})
        if status == 412:
            raise S3Error("PreconditionFailed", "a precondition of the request did not hold")
        span = byte_range(call.headers.get("range"), entry.size)
        if span is None:
            headers["content-length"] = str(entry.size)
            body = self.pfs.read_entry(entry) if entry.size else iter(())
            return StreamingResponse(body, 200, headers=headers)
        start, stop = span
        headers["content-range"] = f"bytes {start}-{stop - 1}/{entry.size}"
        headers["content-length"] = str(stop - start)
        return StreamingResponse(self.pfs.read_range(entry, start, stop), 206, headers=headers)

    # Objects: writes

    def _description(self, call: Call) -> str:
        who = call.caller.principal
        return f"s3 {call.op} {call.key}" + (f" by {who}" if who else "")

    def PutObject(self, call: Call, raw: BinaryIO) -> Response:
        """PutObject from the (decoded, checked) body stream."""
        bucket = call.need_bucket()
        path = call.path
        body = Md5Reader(_body(call, raw),
                         call.headers.get("content-md5"))  # fmt: skip
        if call.key is not None and call.key.endswith("/"):
            # A "folder" marker (the console's, Hadoop's): folders exist by their files here.
            if body.read(1):
                raise S3Error("InvalidArgument", "a key ending with '/' names a folder: no body")
            return Response(status_code=200, headers={"etag": _quote_etag(EMPTY_MD5)})
        size = _body_size(call.headers)
        if size is not None and size <= SMALL:
            # Read whole (checked to its end), then committed, with others into an open commit.
            data = b"".join(iter(lambda: body.read(1 << 20), b""))
            etag = body.hexdigest()
            commit = self.small.put(bucket.repo, bucket.branch, path, data, etag,
                                    self._description(call))  # fmt: skip
        else:

            def record(tx: MetaTx, ids: list[bytes]) -> None:
                tx.s3_put_etags([(ids[0], body.hexdigest())])  # the body is all read by now

            source = StreamSource(cast(BinaryIO, body))
            result = self.pfs.put_objects(
                bucket.repo, bucket.branch, [(path, source)], self._description(call), record
            )
            commit, etag = result.commit.id, body.hexdigest()
        return Response(
            status_code=200, headers={"etag": _quote_etag(etag), "x-amz-version-id": commit}
        )

    def _copy_source(self, call: Call) -> tuple[Bucket, str, CommitRecord, FileEntry, str]:
        raw = unquote(call.headers["x-amz-copy-source"]).lstrip("/")
        raw, _, version_q = raw.partition("?")
        version = dict(parse_qsl(version_q)).get("versionId") if version_q else None
        name, _, key = raw.partition("/")
        src = self.session_bucket(call.session, name) if call.session else parse_bucket(name)
        path = check_key(key)
        self.auth.require(call.caller, REPO_READ, src.repo, edge=EDGE, operation=call.op)
        commit = self.snapshot(src, version)
        entry = self.pfs.tree_entry(commit.tree, path) if commit is not None else None
        if not isinstance(entry, FileEntry):
            raise S3Error("NoSuchKey", f"no such key {key} in bucket {name}")
        etag = self.pfs.uploads.etags([entry.hash])[entry.hash]
        return src, path, commit, entry, etag  # type: ignore[return-value]

    def CopyObject(self, call: Call) -> Response:
        bucket = call.need_bucket()
        src, path, commit, _entry, etag = self._copy_source(call)
        status = _precondition(
            {k[len("x-amz-copy-source-"):]: v for k, v in call.headers.items()
             if k.startswith("x-amz-copy-source-if-")},
            etag, commit.finished_at or commit.started_at, False,
        )  # fmt: skip
        if status is not None:
            raise S3Error("PreconditionFailed", "a copy-source precondition did not hold")
        source = Address(src.repo, parse_ref(commit.id), path)
        done = self.pfs.copy_file(source, bucket.repo, bucket.branch, call.path)
        result = X.document("CopyObjectResult", [
            ("LastModified", X.iso(done.finished_at or done.started_at)),
            ("ETag", _quote_etag(etag)),
        ])  # fmt: skip
        return _xml(result, headers={"x-amz-version-id": done.id})

    def DeleteObject(self, call: Call) -> Response:
        bucket = call.need_bucket()
        path = call.path
        commit = self.snapshot(bucket)
        entry = self.pfs.tree_entry(commit.tree, path) if commit is not None else None
        if isinstance(entry, FileEntry):  # deleting what is not there is not an error in S3
            self.pfs.delete_files(bucket.repo, bucket.branch, [path], self._description(call))
        return Response(status_code=204)

    def DeleteObjects(self, call: Call, body: bytes) -> Response:
        bucket = call.need_bucket()
        self._check_md5(call, body)
        doc = X.parse(body)
        if doc.tag != "Delete":
            raise S3Error("MalformedXML", "the body must be a <Delete> document")
        quiet = (X.text(doc, "Quiet") or "").strip().lower() == "true"
        keys = [X.text(o, "Key") for o in doc.findall("Object")]
        if not keys or len(keys) > MAX_DELETE or any(k is None for k in keys):
            raise S3Error("MalformedXML", f"<Delete> holds 1 to {MAX_DELETE} <Object><Key>s")
        commit = self.snapshot(bucket)
        deleted: list[Any] = []
        errors: list[Any] = []
        paths: list[str] = []
        for key in keys:
            assert key is not None
            try:
                path = check_key(key)
            except S3Error as exc:
                errors.append(
                    ("Error", [("Key", key), ("Code", exc.code), ("Message", exc.message)])
                )
                continue
            entry = self.pfs.tree_entry(commit.tree, path) if commit is not None else None
            if isinstance(entry, FileEntry) and path not in paths:
                paths.append(path)
            if not quiet:
                deleted.append(("Deleted", [("Key", key)]))
        if paths:
            self.pfs.delete_files(bucket.repo, bucket.branch, paths,
                                  f"s3 DeleteObjects ({len(paths)} keys)")  # fmt: skip
        return _xml(X.document("DeleteResult", [*deleted, *errors]))

    def _check_md5(self, call: Call, body: bytes) -> None:
        sent = call.headers.get("content-md5")
        if sent is not None:
            reader = Md5Reader(io.BytesIO(body), sent)
            while reader.read(1 << 20):
                pass

    # Multipart uploads

    def CreateMultipartUpload(self, call: Call) -> Response:
        bucket = call.need_bucket()
        call.path  # noqa: B018 - checks the key
        assert call.key is not None
        upload = self.pfs.uploads.create(
            bucket.repo, bucket.branch, call.key, call.caller.principal
        )
        return _xml(X.document("InitiateMultipartUploadResult", [
            ("Bucket", bucket.name), ("Key", call.key), ("UploadId", upload.id),
        ]))  # fmt: skip

    def _upload(self, call: Call) -> Any:
        bucket = call.need_bucket()
        upload = self.pfs.uploads.get(call.query.get("uploadId", ""), bucket.repo, call.key)
        if upload.branch != bucket.branch:
            raise S3Error("NoSuchUpload", "that upload is for another bucket")
        return upload

    def _part_number(self, call: Call) -> int:
        raw = call.query.get("partNumber", "")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PARTS:
            raise S3Error("InvalidArgument", f"partNumber must be 1 to {MAX_PARTS}")
        return int(raw)

    def UploadPart(self, call: Call, raw: BinaryIO) -> Response:
        upload = self._upload(call)
        number = self._part_number(call)
        body = Md5Reader(_body(call, raw),
                         call.headers.get("content-md5"))  # fmt: skip
        part = self.pfs.uploads.put_part(
            upload, number, StreamSource(cast(BinaryIO, body)), body.md5
        )
        return Response(status_code=200, headers={"etag": _quote_etag(part.etag)})

    def UploadPartCopy(self, call: Call) -> Response:
        upload = self._upload(call)
        number = self._part_number(call)
        _src, _path, _commit, entry, _etag = self._copy_source(call)
        span: tuple[int, int] = (0, entry.size)
        spec = call.headers.get("x-amz-copy-source-range")
        if spec is not None:
            m = _RANGE.match(spec.strip())
            if m is None or not m.group(1) or not m.group(2) or int(m.group(2)) < int(m.group(1)):
                raise S3Error("InvalidArgument", "x-amz-copy-source-range must be bytes=FIRST-LAST")
            if int(m.group(2)) >= entry.size:
                raise _invalid_range(entry.size)
            span = (int(m.group(1)), int(m.group(2)) + 1)
        blocks = self.pfs.read_range(entry, *span) if span[1] > span[0] else iter(())
        body = Md5Reader(IterReader(blocks), None)  # type: ignore[arg-type]
        source = StreamSource(cast(BinaryIO, body))
        part = self.pfs.uploads.put_part(upload, number, source, body.md5)
        result = X.document("CopyPartResult", [
            ("LastModified", X.iso(part.created_at)), ("ETag", _quote_etag(part.etag)),
        ])  # fmt: skip
        return _xml(result)

    def CompleteMultipartUpload(self, call: Call, body: bytes) -> Response:
        bucket = call.need_bucket()
        upload = self._upload(call)
        doc = X.parse(body)
        if doc.tag != "CompleteMultipartUpload":
            raise S3Error("MalformedXML", "the body must be a <CompleteMultipartUpload> document")
        wanted: list[tuple[int, str]] = []
        for el in doc.findall("Part"):
            num, tag = X.text(el, "PartNumber"), X.text(el, "ETag")
            if num is None or not num.strip().isdigit() or tag is None:
                raise S3Error("MalformedXML", "each <Part> needs a <PartNumber> and an <ETag>")
            wanted.append((int(num), tag.strip().strip('"')))
        if not wanted:
            raise S3Error("MalformedXML", "name at least one part to complete an upload")
        numbers = [n for n, _ in wanted]
        if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
            raise S3Error("InvalidPartOrder", "the parts must be listed in ascending order")
        stored = {p.number: p for p in self.pfs.uploads.parts(upload.id)}
        chunks: list[ChunkRef] = []
        md5s: list[str] = []
        for number, etag in wanted:
            part = stored.get(number)
            if part is None or part.etag != etag:
                raise S3Error("InvalidPart", f"part {number} was not uploaded, or its ETag differs")
        for i, (number, _etag) in enumerate(wanted):
            part = stored[number]
            if i < len(wanted) - 1 and part.size < MIN_PART:
                raise S3Error(
                    "EntityTooSmall",
                    f"part {number} is {part.size} bytes: every part but the last must be at "
                    f"least {MIN_PART >> 20} MiB",
                )
            chunks.extend(self.pfs.uploads.part_chunks(part))
            md5s.append(part.etag)
        etag = multipart_etag(md5s)
        commit = self.pfs.uploads.complete(upload, chunks, etag, self._description(call))
        result = X.document("CompleteMultipartUploadResult", [
            ("Location", f"/{bucket.name}/{quote(upload.key)}"), ("Bucket", bucket.name),
            ("Key", upload.key), ("ETag", _quote_etag(etag)),
        ])  # fmt: skip
        return _xml(result, headers={"x-amz-version-id": commit.id})

    def AbortMultipartUpload(self, call: Call) -> Response:
        self.pfs.uploads.abort(self._upload(call))
        return Response(status_code=204)

    def ListParts(self, call: Call) -> Response:
        bucket = call.need_bucket()
        upload = self._upload(call)
        limit = _int_param(call.query, "max-parts", MAX_KEYS)
        marker = _int_param(call.query, "part-number-marker", 0, high=MAX_PARTS)
        parts = [p for p in self.pfs.uploads.parts(upload.id) if p.number > marker]
        page, truncated = parts[:limit], len(parts) > limit
        fields: list[tuple[str, Any]] = [
            ("Bucket", bucket.name), ("Key", upload.key), ("UploadId", upload.id),
            ("PartNumberMarker", marker), ("MaxParts", limit), ("IsTruncated", truncated),
            ("StorageClass", "STANDARD"),
        ]  # fmt: skip
        if page:
            fields.append(("NextPartNumberMarker", page[-1].number))
        rows = [
            ("Part", [("PartNumber", p.number), ("LastModified", X.iso(p.created_at)),
                      ("ETag", _quote_etag(p.etag)), ("Size", p.size)])
            for p in page
        ]  # fmt: skip
        return _xml(X.document("ListPartsResult", [*fields, *rows]))

    def ListMultipartUploads(self, call: Call) -> Response:
        bucket = call.need_bucket()
        q = call.query
        prefix = q.get("prefix", "")
        limit = _int_param(q, "max-uploads", MAX_KEYS)
        key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
        uploads = [
            u for u in self.pfs.uploads.in_bucket(bucket.repo, bucket.branch)
            if u.key.startswith(prefix)
            and (u.key > key_marker or (u.key == key_marker and id_marker and u.id > id_marker))
        ]  # fmt: skip
        page, truncated = uploads[:limit], len(uploads) > limit
        fields: list[tuple[str, Any]] = [
            ("Bucket", bucket.name), ("KeyMarker", key_marker), ("UploadIdMarker", id_marker),
            ("Prefix", prefix), ("MaxUploads", limit), ("IsTruncated", truncated),
        ]  # fmt: skip
        if truncated and page:
            fields += [("NextKeyMarker", page[-1].key), ("NextUploadIdMarker", page[-1].id)]
        rows = [("Upload", [("Key", u.key), ("UploadId", u.id), ("StorageClass", "STANDARD"),
                            ("Initiated", X.iso(u.created_at))]) for u in page]  # fmt: skip
        return _xml(X.document("ListMultipartUploadsResult", [*fields, *rows]))


def create_s3_app(pfs: PfsService, pps: PpsService, auth: AuthService,
                  domain: str | None = None) -> Starlette:  # fmt: skip
    """The S3 gateway over the services (the caller owns and closes them)."""
    gw = Gateway(pfs, pps, auth, domain)

    async def handle(request: Request) -> Response:
        request_id = uuid.uuid4().hex[:16].upper()
        call: Call | None = None
        try:
            bucket_text, key, resource = gw.target(request)
            query = dict(parse_qsl(request.url.query, keep_blank_values=True))
            headers = {k.lower(): v for k, v in request.headers.items()}
            op = operation(request.method, bucket_text, key, query, headers)
            session = await run_in_threadpool(gw.session_of, request)
            if session is not None and op in ("CreateBucket", "DeleteBucket"):
                raise S3Error(
                    "AccessDenied", f"a job's buckets are given to it, not made ({op} refused)"
                )
            bucket = None
            if bucket_text is not None:
                bucket = (
                    gw.session_bucket(session, bucket_text)
                    if session is not None
                    else parse_bucket(bucket_text)
                )
            call = Call(request_id, op, bucket, key, query, headers, resource=resource,
                        session=session)  # fmt: skip
            await run_in_threadpool(gw.authenticate, request, call)
            if op in _STREAMED:
                response = await _streamed(request, call, getattr(gw, op))
            elif op in ("DeleteObjects", "CompleteMultipartUpload"):
                body = await _small_body(request, call)
                response = await run_in_threadpool(getattr(gw, op), call, body)
            else:
                response = await run_in_threadpool(getattr(gw, op), call)
        except S3Error as exc:
            response = _error(exc, request, request_id)
        except TuskError as exc:
            response = _error(from_tusk(exc), request, request_id)
        response.headers["x-amz-request-id"] = request_id
        return response

    methods = ["GET", "HEAD", "PUT", "POST", "DELETE"]
    routes = [Route("/{path:path}", handle, methods=methods)]
    app = Starlette(routes=routes)
    app.state.gateway = gw
    return app


def _body(call: Call, raw: BinaryIO, *, header_checksums: bool = True) -> BinaryIO:
    """The request's bytes, decoded and checked; an unsigned request (auth off: nothing to
    verify chunk signatures with) is de-chunked all the same."""
    return sigv4.body_reader(
        call.signed, call.headers, raw, header_checksums=header_checksums,
        unchecked=call.signed is None,
    )  # fmt: skip


def _body_size(headers: dict[str, str]) -> int | None:
    """The size of a request's object: its decoded length (aws-chunked), else Content-Length."""
    for name in ("x-amz-decoded-content-length", "content-length"):
        value = headers.get(name)
        if value is not None and value.isdigit():
            return int(value)
    return None


async def _streamed(request: Request, call: Call,
                    work: Callable[[Call, BinaryIO], Response]) -> Response:  # fmt: skip
    """Run ``work`` on a worker thread over the request body, streamed through a BodyPipe."""
    length = content_length(call.headers)
    size = _body_size(call.headers)
    if size is not None and size > MAX_PUT:
        raise S3Error("EntityTooLarge", f"one PUT may carry at most {MAX_PUT >> 30} GiB")
    body = BodyPipe(request.receive)
    filling = asyncio.ensure_future(body.fill())
    try:
        return await run_in_threadpool(work, call, reader(body, length))
    except ClientGone:
        raise S3Error("IncompleteBody", "the client closed the connection mid-body") from None
    finally:
        body.discard()
        await filling


async def _small_body(request: Request, call: Call) -> bytes:
    """An XML request body, read whole (bounded), decoded and checked."""
    data = bytearray()
    async for piece in request.stream():
        data += piece
        if len(data) > X.MAX_BODY + (1 << 16):
            raise S3Error("MalformedXML", f"the XML body is over {X.MAX_BODY >> 20} MiB")
    raw = io.BytesIO(bytes(data))

    def decode() -> bytes:
        # x-amz-checksum-* of CompleteMultipartUpload describe the object, not this XML.
        whole = call.op != "CompleteMultipartUpload"
        return _body(call, raw, header_checksums=whole).read()

    return await run_in_threadpool(decode)


def _error(exc: S3Error, request: Request, request_id: str) -> Response:
    headers = dict(getattr(exc, "headers", {}) or {})
    if request.method in ("PUT", "POST"):
        # The body may be unread (refused before it was read, or after a client sent it
        # despite "Expect: 100-continue"): what is left must not be read as the next request.
        headers["connection"] = "close"
    if request.method == "HEAD":  # no body on a HEAD: the status says it
        return Response(status_code=exc.status, headers=headers)
    body = X.error_document(exc.code, exc.message, request.url.path, request_id)
    return Response(body, exc.status, headers=headers, media_type="application/xml")
