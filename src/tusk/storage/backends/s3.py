"""S3-compatible object storage as an object backend (AWS S3, MinIO, Ceph RGW, GCS interop).

Open it by URL::

    s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&addressing=path

Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE`` or ``?profile=``, ``~/.aws``, instance roles), never from the URL. See
``docs/deploy.md`` for every option.

How the contract of :class:`ObjectBackend` maps onto S3:

- A PUT is atomic and durable when it returns, so ``durable``/``sync_soon`` need nothing and
  :meth:`S3Backend.sync` is a no-op.
- Objects of ``multipart_threshold`` bytes or more go up as a multipart upload, cut into parts
  straight from the caller's buffers (never one joined copy of the whole object), several parts
  at a time; a failed upload is aborted, so readers see the old object or nothing.
- An interrupted multipart upload is S3's "temp file": invisible, but billed.
  :meth:`S3Backend.remove_stale_temp` aborts those initiated before the cutoff, so ``gc``
  cleans them as it cleans temp files of the local backend (a bucket lifecycle rule
  ``AbortIncompleteMultipartUpload`` is the belt to these braces).
- Requests are retried by botocore's ``standard`` retry mode; a body that breaks off while it
  is read is fetched again here, as botocore does not retry the stream.
- Every botocore error becomes a :class:`tusk.errors.StorageError` with one line that says what
  failed and what to do; the botocore exception stays as ``__cause__`` for debugging.

boto3 is imported by this module only, and this module only when an ``s3://`` URL is opened.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import re
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlparse

import boto3
import botocore.exceptions as bex
from botocore.config import Config

from tusk.errors import InvalidArgument, StorageError
from tusk.storage.backends.base import ObjectBackend, ObjectInfo

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

DEFAULT_MULTIPART_THRESHOLD = 64 * MiB
DEFAULT_PART_SIZE = 16 * MiB
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_UPLOAD_THREADS = 4
MIN_PART_SIZE = 5 * MiB  # S3's own floor for every part but the last
MAX_PARTS = 10_000  # S3's ceiling on parts per upload
MAX_KEY_BYTES = 1024

_MISSING_CODES = {"NoSuchKey", "NotFound", "404"}
_DENIED_CODES = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
}
_BUSY_CODES = {"SlowDown", "503", "ServiceUnavailable", "RequestLimitExceeded", "Throttling"}

# Options the URL query may carry, with how to parse each.
_URL_OPTIONS = (
    "endpoint",
    "region",
    "addressing",
    "profile",
    "max_attempts",
    "connect_timeout",
    "read_timeout",
    "multipart_threshold",
    "part_size",
    "upload_threads",
    "checksums",
)


class S3Backend(ObjectBackend):
    """Objects under ``prefix/`` in one bucket of an S3-compatible store."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        addressing: str | None = None,
        profile: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
        upload_threads: int = DEFAULT_UPLOAD_THREADS,
        checksums: str | None = None,
        list_page_size: int = 1000,
    ) -> None:
        if not bucket or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}", bucket):
            raise InvalidArgument(f"invalid S3 bucket name {bucket!r}")
        prefix = prefix.strip("/")
        if prefix:
            _check_key(prefix, what="S3 prefix")
        endpoint = endpoint_url(endpoint)
        if addressing is None:
            # Custom endpoints (MinIO, Ceph, moto, an IP address) rarely have the wildcard DNS
            # that virtual-hosted buckets need; AWS and GCS handle either.
            addressing = "path" if endpoint else "auto"
        if addressing not in ("path", "virtual", "auto"):
            raise InvalidArgument(
                f"invalid S3 addressing {addressing!r}: use path, virtual or auto"
            )
        if checksums is None:
            # botocore >= 1.36 adds CRC checksums to every upload by default, which stores
            # other than AWS S3 (GCS, older MinIO and Ceph) may reject. Tusk verifies every
            # chunk by its BLAKE3 hash on read and in fsck either way.
            checksums = "when_required" if endpoint else "when_supported"
        if checksums not in ("when_required", "when_supported"):
            raise InvalidArgument(
                f"invalid S3 checksums {checksums!r}: use when_required or when_supported"
            )
        if max_attempts < 1:
            raise InvalidArgument("S3 max_attempts must be at least 1")
        if part_size < MIN_PART_SIZE:
            raise InvalidArgument(f"S3 part_size must be at least {MIN_PART_SIZE} bytes (5 MiB)")
        if multipart_threshold < 1:
            raise InvalidArgument("S3 multipart_threshold must be positive")
        if upload_threads < 1:
            raise InvalidArgument("S3 upload_threads must be at least 1")

        self.bucket = bucket
        self.prefix = prefix
        self._base = f"{prefix}/" if prefix else ""
        self.location = f"s3://{bucket}/{prefix}"
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.upload_threads = upload_threads
        self.max_attempts = max_attempts
        self._page_size = list_page_size
        # ``url`` reopens the same backend elsewhere (Dask workers do), so it keeps every
        # option that differs from its default.
        query: dict[str, object] = {
            k: v
            for k, v, default in (
                ("endpoint", endpoint, None),
                ("region", region, None),
                ("addressing", addressing, "path" if endpoint else "auto"),
                ("profile", profile, None),
                ("max_attempts", max_attempts, DEFAULT_MAX_ATTEMPTS),
                ("connect_timeout", connect_timeout, DEFAULT_CONNECT_TIMEOUT),
                ("read_timeout", read_timeout, DEFAULT_READ_TIMEOUT),
                ("multipart_threshold", multipart_threshold, DEFAULT_MULTIPART_THRESHOLD),
                ("part_size", part_size, DEFAULT_PART_SIZE),
                ("upload_threads", upload_threads, DEFAULT_UPLOAD_THREADS),
                ("checksums", checksums, "when_required" if endpoint else "when_supported"),
            )
            if v is not None and v != default
        }
        self.url = self.location + (f"?{urlencode(query, safe=':/')}" if query else "")

        config_args: dict[str, Any] = {
            "retries": {"mode": "standard", "total_max_attempts": max_attempts},
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "max_pool_connections": max(10, 2 * upload_threads + 4),
            "s3": {"addressing_style": addressing},
        }
        if region:
            config_args["region_name"] = region
        if "request_checksum_calculation" in Config.OPTION_DEFAULTS:
            config_args["request_checksum_calculation"] = checksums
            config_args["response_checksum_validation"] = checksums
        try:
            session = boto3.session.Session(profile_name=profile)
            if endpoint and not region and not session.region_name:
                # MinIO, Ceph and moto accept any region; SigV4 needs one to sign with.
                config_args["region_name"] = "us-east-1"
            self._client = session.client("s3", endpoint_url=endpoint, config=Config(**config_args))
        except bex.ProfileNotFound as exc:
            raise InvalidArgument(f"AWS profile {profile!r} not found ({exc})") from exc
        except bex.BotoCoreError as exc:
            raise StorageError(f"cannot set up the S3 client for {self.location}: {exc}") from exc
        self.endpoint = str(self._client.meta.endpoint_url)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> S3Backend:
        """Open ``s3://bucket/prefix?option=value&...`` (options: see ``docs/deploy.md``)."""
        parsed = urlparse(url)
        if parsed.scheme != "s3":
            raise InvalidArgument(f"not an s3:// URL: {url!r}")
        if "@" in parsed.netloc:
            raise InvalidArgument(
                "do not put credentials in the storage URL: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            )
        if not parsed.netloc:
            raise InvalidArgument(f"S3 URL {url!r} names no bucket: use s3://bucket/prefix")
        opts = dict(parse_qsl(parsed.query, keep_blank_values=True))
        unknown = sorted(set(opts) - set(_URL_OPTIONS))
        if unknown:
            raise InvalidArgument(
                f"unknown S3 URL option {unknown[0]!r}: known are {', '.join(_URL_OPTIONS)}"
            )
        kwargs: dict[str, Any] = {}
        for name in ("endpoint", "region", "addressing", "profile", "checksums"):
            if opts.get(name):
                kwargs[name] = opts[name]
        for name in ("max_attempts", "upload_threads"):
            if name in opts:
                kwargs[name] = _parse_int(name, opts[name])
        for name in ("connect_timeout", "read_timeout"):
            if name in opts:
                kwargs[name] = _parse_float(name, opts[name])
        for name in ("multipart_threshold", "part_size"):
            if name in opts:
                kwargs[name] = parse_size(name, opts[name])
        # The netloc, not urlparse's lower-cased hostname: other stores allow upper case.
        return cls(parsed.netloc, parsed.path, **kwargs)

    # keys and errors

    def _key(self, key: str) -> str:
        _check_key(key)
        full = self._base + key
        if len(full.encode()) > MAX_KEY_BYTES:
            raise InvalidArgument(f"object key {key!r} is longer than S3 allows")
        return full

    def _fail(self, exc: Exception, action: str, key: str | None = None) -> NoReturn:
        """Raise the one-line :class:`StorageError` that stands for a botocore error."""
        what = (
            f"{action} {self.location}" if key is None else f"{action} {key!r} in {self.location}"
        )
        if isinstance(exc, bex.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            detail = _one_line(str(err.get("Message") or code or status))
            if code == "NoSuchBucket":
                raise StorageError(
                    f"bucket {self.bucket!r} does not exist at {self.endpoint}: create it first"
                ) from exc
            if code in _MISSING_CODES or (status == 404 and key is not None):
                raise StorageError(f"object {key!r} is missing from {self.location}") from exc
            if code in _DENIED_CODES or status == 403:
                raise StorageError(
                    f"access denied to {self.location} at {self.endpoint} ({code or status}): "
                    "check the credentials and the bucket policy"
                ) from exc
            if code in _BUSY_CODES or status == 503:
                raise StorageError(
                    f"object store at {self.endpoint} is overloaded ({code or status}) after "
                    f"{self.max_attempts} attempts to {what}; retry later"
                ) from exc
            raise StorageError(
                f"object store failed to {what}: {code or status}: {detail}"
            ) from exc
        if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
            raise StorageError(
                f"no usable credentials for {self.location}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            ) from exc
        if isinstance(exc, bex.SSLError):
            raise StorageError(
                f"TLS to the object store at {self.endpoint} failed: {_one_line(str(exc))}"
            ) from exc
        if isinstance(exc, bex.ConnectionError | bex.HTTPClientError | bex.IncompleteReadError):
            raise StorageError(
                f"object store unreachable at {self.endpoint} (retry when it is back)"
            ) from exc
        raise StorageError(f"object store failed to {what}: {_one_line(str(exc))}") from exc

    @contextlib.contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        try:
            yield
        except (bex.BotoCoreError, bex.ClientError) as exc:
            self._fail(exc, action, key)

    # reads

    def _read(self, action: str, key: str, **extra: Any) -> tuple[bytes, int]:
        """GET the object (or a range of it); return its body and the HTTP status."""
        full = self._key(key)
        attempt = 1
        while True:
            with self._errors(action, key):
                resp = self._client.get_object(Bucket=self.bucket, Key=full, **extra)
                status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 200))
                try:
                    return resp["Body"].read(), status
                except (
                    bex.IncompleteReadError,
                    bex.ResponseStreamingError,
                    bex.ReadTimeoutError,
                    bex.ConnectionClosedError,
                ):
                    # botocore retries requests, not a body that broke off midway.
                    if attempt >= self.max_attempts:
                        raise
                    attempt += 1
                    log.info("re-reading %s after a broken response body", key)
                finally:
                    resp["Body"].close()

    def get(self, key: str) -> bytes:
        return self._read("read", key)[0]

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise InvalidArgument(f"invalid range {offset}+{length} of object {key!r}")
        if length == 0:
            if not self.exists(key):
                raise StorageError(f"object {key!r} is missing from {self.location}")
            return b""
        try:
            data, status = self._read("read", key, Range=f"bytes={offset}-{offset + length - 1}")
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, bex.ClientError) and (
                cause.response.get("Error", {}).get("Code") == "InvalidRange"
                or cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 416
            ):
                raise StorageError(
                    f"object {key!r} is shorter than expected ({offset}+{length} bytes)"
                ) from cause
            raise
        if status == 200:  # a store that ignored the Range header sent the whole object
            data = data[offset : offset + length]
        if len(data) != length:
            raise StorageError(f"object {key!r} is shorter than expected ({offset}+{length} bytes)")
        return data

    def exists(self, key: str) -> bool:
        full = self._key(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=full)
        except bex.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _MISSING_CODES or status == 404:
                return False
            self._fail(exc, "look up", key)
        except bex.BotoCoreError as exc:
            self._fail(exc, "look up", key)
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = len(self._base)
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self._base + prefix,
            PaginationConfig={"PageSize": self._page_size},
        )
        with self._errors("list"):
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield ObjectInfo(obj["Key"][base:], int(obj["Size"]), _mtime(obj))

    # writes

    def put(self, key: str, data: bytes | memoryview) -> None:
        self.put_parts(key, [data])

    def put_parts(
        self,
        key: str,
        parts: Sequence[bytes | memoryview],
        durable: bool = True,
        sync_soon: bool = False,
    ) -> None:
        full = self._key(key)
        total = sum(memoryview(p).nbytes for p in parts)
        if total >= self.multipart_threshold:
            self._put_multipart(key, full, _cut(parts, self._part_size_for(total)))
            return
        single = parts[0] if len(parts) == 1 else None
        body = single if isinstance(single, bytes) else b"".join(parts)
        with self._errors("write", key):
            self._client.put_object(Bucket=self.bucket, Key=full, Body=body)

    def put_stream(
        self,
        key: str,
        blocks: Iterable[bytes | memoryview],
        size: int | None = None,
        durable: bool = True,
    ) -> None:
        """One PUT when the stream ends below ``multipart_threshold``; else a multipart upload
        of parts cut as the blocks come: memory stays at the threshold plus the parts in
        flight, whatever the object's size. Without ``size`` the part size is ``part_size``,
        so the object may be at most ``MAX_PARTS`` of them (160 GiB by default)."""
        full = self._key(key)
        stream = iter(blocks)
        head: list[bytes | memoryview] = []
        have = 0
        for block in stream:
            head.append(block)
            have += memoryview(block).nbytes
            if have >= self.multipart_threshold:
                part_size = self._part_size_for(size) if size else self.part_size
                self._put_multipart(key, full, _cut(itertools.chain(head, stream), part_size))
                return
        self.put_parts(key, head)

    def _part_size_for(self, total: int) -> int:
        # Grow the part size when the object would need more parts than S3 allows.
        return max(self.part_size, math.ceil(total / MAX_PARTS))

    def _put_multipart(self, key: str, full: str, bodies: Iterable[bytes]) -> None:
        with self._errors("start a multipart upload of", key):
            upload_id = self._client.create_multipart_upload(Bucket=self.bucket, Key=full)[
                "UploadId"
            ]
        try:
            done: list[dict[str, Any]] = []
            inflight: deque[Future[dict[str, Any]]] = deque()
            pool = self._uploader()
            for number, body in enumerate(bodies, start=1):
                if number > MAX_PARTS:
                    raise StorageError(
                        f"object {key!r} needs more than {MAX_PARTS} parts of this size: "
                        "raise the part_size option of the S3 URL"
                    )
                # Bounded: at most upload_threads parts wait in memory besides the one cut.
                while len(inflight) >= self.upload_threads:
                    done.append(inflight.popleft().result())
                inflight.append(pool.submit(self._upload_part, key, full, upload_id, number, body))
            while inflight:
                done.append(inflight.popleft().result())
            with self._errors("finish the multipart upload of", key):
                self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": done},
                )
        except BaseException:
            for f in inflight:
                f.cancel()
            for f in inflight:
                with contextlib.suppress(BaseException):
                    f.result()
            try:
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id
                )
            except (bex.BotoCoreError, bex.ClientError) as exc:
                # remove_stale_temp (gc) or a lifecycle rule aborts it later.
                log.warning("could not abort the multipart upload of %s: %s", key, exc)
            raise

    def _upload_part(
        self, key: str, full: str, upload_id: str, number: int, body: bytes
    ) -> dict[str, Any]:
        with self._errors(f"upload part {number} of", key):
            resp = self._client.upload_part(
                Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=body
            )
        return {"ETag": resp["ETag"], "PartNumber": number}

    def _uploader(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.upload_threads, thread_name_prefix="tusk-s3-upload"
                )
            return self._pool

    def sync(self, keys: Sequence[str]) -> None:
        """Nothing to do: an S3 PUT is durable when it returns."""

    def delete(self, key: str) -> None:
        full = self._key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=full)
        except bex.ClientError as exc:
            # S3 answers 204 for a missing key; GCS's interop API answers 404.
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in _MISSING_CODES:
                self._fail(exc, "delete", key)
        except bex.BotoCoreError as exc:
            self._fail(exc, "delete", key)

    def remove_stale_temp(self, older_than: float) -> int:
        """Abort multipart uploads under the prefix initiated before ``older_than``.

        They are what an interrupted put leaves in S3: invisible to reads and lists, but
        stored and billed until aborted. Without permission to list them, return 0.
        """
        removed = 0
        paginator = self._client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._base):
                for up in page.get("Uploads", ()):
                    initiated = up.get("Initiated")
                    if initiated is None or initiated.timestamp() >= older_than:
                        continue
                    try:
                        self._client.abort_multipart_upload(
                            Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                        )
                    except bex.ClientError as exc:
                        if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                            raise
                        continue  # finished or aborted meanwhile
                    removed += 1
        except bex.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _DENIED_CODES or code == "NotImplemented":
                log.info("cannot list multipart uploads in %s (%s)", self.location, code)
                return removed
            self._fail(exc, "clean up interrupted uploads in")
        except bex.BotoCoreError as exc:
            self._fail(exc, "clean up interrupted uploads in")
        return removed

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        with contextlib.suppress(Exception):
            self._client.close()

    def __repr__(self) -> str:
        return f"S3Backend({self.url!r})"


def endpoint_url(endpoint: str | None) -> str | None:
    """The S3 endpoint to talk to: ``endpoint``, else ``AWS_ENDPOINT_URL_S3``, else
    ``AWS_ENDPOINT_URL``, else None (AWS itself); InvalidArgument for one that is not
    ``http(s)://host``."""
    endpoint = (
        endpoint
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or None
    )
    if endpoint is not None and not re.match(r"https?://[^/]", endpoint):
        raise InvalidArgument(
            f"invalid S3 endpoint {endpoint!r}: give http://host:port or https://host"
        )
    return endpoint


def _check_key(key: str, what: str = "object key") -> None:
    """The same keys as the local backend: relative, no empty, ``.`` or ``..`` segments."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts) or "\0" in key:
        raise InvalidArgument(f"invalid {what} {key!r}")


def _cut(parts: Iterable[bytes | memoryview], size: int) -> Iterator[bytes]:
    """Yield the concatenation of ``parts`` as pieces of ``size`` bytes (the last may be less).

    Only one piece is joined at a time, so memory stays at a part, not the whole object.
    """
    pieces: list[memoryview] = []
    have = 0
    for p in parts:
        view = memoryview(p).cast("B")
        while len(view):
            take = min(size - have, len(view))
            pieces.append(view[:take])
            view = view[take:]
            have += take
            if have == size:
                yield b"".join(pieces)
                pieces, have = [], 0
    if pieces:
        yield b"".join(pieces)


def _mtime(obj: dict[str, Any]) -> float:
    modified = obj.get("LastModified")
    return float(modified.timestamp()) if modified is not None else 0.0


def _one_line(text: str) -> str:
    return " ".join(text.split())


_SIZE = re.compile(r"(\d+)\s*([KMG]?)(?:i?B)?", re.IGNORECASE)


def parse_size(name: str, text: str) -> int:
    """``67108864``, ``64MiB``, ``64M`` or ``64MB`` (binary units) -> bytes."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise InvalidArgument(f"invalid S3 option {name}={text!r}: give bytes, or e.g. 64MiB")
    scale = {"": 1, "K": KiB, "M": MiB, "G": GiB}[m.group(2).upper()]
    return int(m.group(1)) * scale


def _parse_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f"invalid S3 option {name}={text!r}: give a whole number") from None


def _parse_float(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidArgument(f"invalid S3 option {name}={text!r}: give a number") from None
