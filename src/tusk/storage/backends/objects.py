"""Objects where they already live: listing, reading and checking ``s3://`` objects that a
commit refers to instead of copying (``tusk import``), and reading them to copy them
(``tusk put file -f s3://...``, ``tusk materialize``).

boto3, for S3 and what speaks it (MinIO, Ceph RGW, GCS's interoperability endpoint, moto): it
is already Tusk's S3 client (:mod:`tusk.storage.backends.s3`), maintained by AWS, and it does
what a reference needs exactly: paginated listings that carry each object's size and ETag
(an import reads no object, and lists 1,000 keys a request), ranged GETs with ``If-Match``
(a read of a referenced file gets the recorded bytes or an error, never different ones), and
HEAD requests for ``tusk fsck --references``. obstore or fsspec would add ``gs://`` and
``az://`` but bring a second S3 client with its own credential rules; those schemes are
refused with an error that says so. Credentials and the endpoint come from boto3's usual
chain (``AWS_ACCESS_KEY_ID``..., ``AWS_PROFILE``, ``~/.aws``) and ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL``, or an explicit ``endpoint`` (``--endpoint-url``).

Every botocore error becomes one Tusk error naming the URL: a missing bucket or object, or
wrong credentials, is a SourceError (the source cannot be read); a referenced object that
changed or vanished since it was recorded is ReferenceBroken.
"""

from __future__ import annotations

import fnmatch
import io
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO, NoReturn, cast
from urllib.parse import quote, urlparse

import boto3
import botocore.exceptions as bex
from botocore.config import Config

from tusk.errors import InvalidArgument, ReferenceBroken, SourceError
from tusk.storage.backends.s3 import endpoint_url
from tusk.values import frozen

SCHEMES = ("s3",)
FETCH_WORKERS = 8  # objects fetched at once by fetch_many
SMALL_OBJECT = 8 * 1024 * 1024  # fetched whole into memory ahead of the reader


@frozen(slots=True)
class RemoteObject:
    """One object: its URL, its key below the listed prefix, size, ETag (quotes kept, as S3
    sends it) and version id (None in an unversioned bucket)."""

    url: str
    key: str
    size: int
    etag: str
    version: str | None = None


# Objects chosen for a put or an import, each with its key as path segments.
Selected = list[tuple[RemoteObject, tuple[str, ...]]]


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key/or/prefix`` -> (bucket, key); InvalidArgument for anything else."""
    parsed = urlparse(url)
    if parsed.scheme in ("gs", "az", "abfs", "gcs"):
        raise InvalidArgument(
            f"{parsed.scheme}:// sources are not supported: Tusk reads s3:// (and what speaks "
            "S3: MinIO, Ceph, GCS's interoperability endpoint with --endpoint-url), http(s) "
            "and local paths"
        )
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InvalidArgument(f"not an S3 URL: {url!r} (give s3://bucket/prefix)")
    return parsed.netloc, parsed.path.lstrip("/")


def object_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


class S3Objects:
    """S3 objects through one client (thread-safe: boto3 clients are)."""

    def __init__(self, endpoint: str | None = None) -> None:
        endpoint = endpoint_url(endpoint)
        config: dict[str, Any] = {
            "retries": {"mode": "standard", "total_max_attempts": 4},
            "connect_timeout": 10,
            "read_timeout": 60,
            "max_pool_connections": 32,
            "s3": {"addressing_style": "path" if endpoint else "auto"},
        }
        session = boto3.session.Session()
        if endpoint and not session.region_name:
            config["region_name"] = "us-east-1"  # S3-compatible stores take any; SigV4 needs one
        self.endpoint = endpoint
        self._client = session.client("s3", endpoint_url=endpoint, config=Config(**config))

    def list(self, url: str) -> Iterator[RemoteObject]:
        """Every object below ``url`` (a prefix: ``s3://b/raw`` lists ``raw/...``; an
        exact key that is an object, and not a prefix, lists that object), a page of 1,000
        keys a request. SourceError if the bucket does not exist or may not be listed."""
        bucket, key = split_url(url)
        prefix = key.rstrip("/") + "/" if key else ""
        found = False
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        try:
            for page in pages:
                for o in page.get("Contents", ()):
                    if o["Key"].endswith("/") and o["Size"] == 0:
                        continue  # a "folder" marker some tools write
                    found = True
                    yield RemoteObject(
                        object_url(bucket, o["Key"]), o["Key"][len(prefix) :], int(o["Size"]),
                        str(o.get("ETag", "")),
                    )  # fmt: skip
        except bex.ClientError as exc:
            _fail(exc, url, "list")
        except bex.BotoCoreError as exc:
            raise SourceError(f"cannot list {url}: {exc}") from exc
        if not found and key and not key.endswith("/"):
            one = self.head(url)
            if one is not None:
                yield RemoteObject(one.url, key.rsplit("/", 1)[-1], one.size, one.etag, one.version)

    def select(self, url: str, exclude: Sequence[str] = ()) -> tuple[Selected, int]:
        """The objects below ``url`` that no ``exclude`` glob (of keys below the prefix)
        matches, each with its key as path segments (InvalidArgument, naming it, for a key
        that cannot be a path), and how many were listed in all."""
        selected: Selected = []
        listed = 0
        for obj in self.list(url):
            listed += 1
            if not any(fnmatch.fnmatchcase(obj.key, g) for g in exclude):
                selected.append((obj, key_parts(obj.key, url)))
        return selected, listed

    def head(self, url: str) -> RemoteObject | None:
        """The object at ``url`` as it is now, or None if there is none."""
        bucket, key = split_url(url)
        try:
            r = self._client.head_object(Bucket=bucket, Key=key)
        except bex.ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            _fail(exc, url, "read")
        except bex.BotoCoreError as exc:
            raise SourceError(f"cannot read {url}: {exc}") from exc
        return RemoteObject(
            url, key, int(r["ContentLength"]), str(r.get("ETag", "")), r.get("VersionId")
        )

    def open(self, url: str) -> Any:
        """The object at ``url`` as a readable stream (for a copy: ``put file -f s3://``)."""
        bucket, key = split_url(url)
        try:
            return self._client.get_object(Bucket=bucket, Key=key)["Body"]
        except bex.ClientError as exc:
            _fail(exc, url, "read")
        except bex.BotoCoreError as exc:
            raise SourceError(f"cannot read {url}: {exc}") from exc

    def fetch_many(
        self, objects: Iterable[RemoteObject], workers: int = FETCH_WORKERS
    ) -> Iterator[BinaryIO]:
        """Each object's bytes as a readable stream, in order, with the small ones (at most
        ``SMALL_OBJECT`` bytes) fetched ``workers`` at a time ahead of the reader into
        memory; a bigger one is streamed when its turn comes (it keeps a connection busy on
        its own). Many small objects are bound by request latency, not bandwidth: this is what
        makes ``put file -r -f s3://`` copy them in parallel."""
        from concurrent.futures import Future, ThreadPoolExecutor

        def fetch(url: str) -> BinaryIO:
            body = self.open(url)
            try:
                return io.BytesIO(body.read())
            except (bex.BotoCoreError, OSError) as exc:
                raise SourceError(f"cannot read {url}: {exc}") from exc
            finally:
                body.close()

        pending: deque[tuple[RemoteObject, Future[BinaryIO] | None]] = deque()
        todo = iter(objects)
        with ThreadPoolExecutor(workers, thread_name_prefix="tusk-s3-fetch") as pool:

            def more() -> None:  # queue objects up to the next small one, which starts
                for obj in todo:
                    small = obj.size <= SMALL_OBJECT
                    pending.append((obj, pool.submit(fetch, obj.url) if small else None))
                    if small:
                        return

            try:
                for _ in range(workers * 2):
                    more()
                while pending:
                    obj, future = pending.popleft()
                    more()
                    yield (
                        future.result()
                        if future is not None
                        else cast(BinaryIO, LazyObject(self, obj.url))
                    )
            finally:
                for _obj, future in pending:
                    if future is not None:
                        future.cancel()

    def get_range(
        self, url: str, offset: int, length: int, etag: str, version: str | None, path: str = ""
    ) -> bytes:
        """Bytes ``offset`` .. ``offset + length`` of the object as it was recorded (its ETag,
        and version where there is one): ReferenceBroken naming ``path`` if it changed or
        vanished since."""
        bucket, key = split_url(url)
        kw: dict[str, Any] = {"Bucket": bucket, "Key": key, "IfMatch": etag}
        if version:
            kw["VersionId"] = version
        if length > 0:
            kw["Range"] = f"bytes={offset}-{offset + length - 1}"
        try:
            body = self._client.get_object(**kw)["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
        except bex.ClientError as exc:
            code = _code(exc)
            where = f"{path} ({url})" if path else url
            if code in ("PreconditionFailed", "412"):
                now = self.head(url)
                what = f"its ETag is {now.etag}" if now is not None else "it is gone"
                raise ReferenceBroken(
                    f"{where} changed at its source since it was recorded (ETag {etag}; "
                    f"now {what}): its bytes are not served; import it again, or materialize "
                    "references before their sources change"
                ) from exc
            if code in ("404", "NoSuchKey", "NoSuchVersion", "NoSuchBucket"):
                raise ReferenceBroken(
                    f"{where} no longer exists at its source: import it again, or materialize "
                    "references before their sources change"
                ) from exc
            _fail(exc, url, "read")
        except bex.BotoCoreError as exc:
            raise SourceError(f"cannot read {url}: {exc}") from exc
        if len(data) != length:
            raise ReferenceBroken(f"{path or url}: its source sent {len(data)} bytes, not {length}")
        return data


_LOCK = threading.Lock()
_CLIENTS: dict[tuple[str | None, ...], S3Objects] = {}


def s3_objects(endpoint: str | None = None) -> S3Objects:
    """One client per endpoint and identity for the process (creating one costs tens of
    milliseconds); other keys or another profile in the environment get another."""
    key = (endpoint_url(endpoint), os.environ.get("AWS_ACCESS_KEY_ID"),
           os.environ.get("AWS_PROFILE"))  # fmt: skip
    with _LOCK:
        found = _CLIENTS.get(key)
        if found is None:
            found = _CLIENTS[key] = S3Objects(endpoint)
        return found


def _code(exc: bex.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _fail(exc: bex.ClientError, url: str, what: str) -> NoReturn:
    code = _code(exc)
    if code == "NoSuchBucket":
        bucket = split_url(url)[0]
        raise SourceError(f"cannot {what} {url}: bucket {bucket} does not exist") from exc
    if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        raise SourceError(
            f"cannot {what} {url}: access denied ({code}); check the AWS credentials "
            "(AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws) and --endpoint-url"
        ) from exc
    if code in ("404", "NoSuchKey", "NotFound"):
        raise SourceError(f"cannot {what} {url}: no such object") from exc
    raise SourceError(f"cannot {what} {url}: {code or exc}") from exc


_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


def key_parts(key: str, url: str) -> tuple[str, ...]:
    """An object key as path segments below the folder it goes to; InvalidArgument for a key
    that would escape it or cannot be a path (``..``, empty segments, control characters)."""
    parts = tuple(key.split("/"))
    if not key or any(p in ("", ".", "..") for p in parts) or any(c in _CONTROL for c in key):
        shown = quote(key, safe="/ ")
        raise InvalidArgument(
            f"object key {shown!r} under {url} cannot be a file path (empty, '.' or '..' "
            "segments, or control characters): nothing was imported; --exclude it"
        )
    return parts


class LazyObject(io.RawIOBase):
    """An object's bytes as a stream that opens on its first read (many objects are put in
    one commit, one open at a time)."""

    def __init__(self, objects: S3Objects, url: str) -> None:
        super().__init__()
        self._objects, self.url = objects, url
        self._body: Any = None
        self.name = url

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._body is None:
            self._body = self._objects.open(self.url)
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
        super().close()
