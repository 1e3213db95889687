"""Object backends: where pack objects live. Open one by URL with :func:`open_backend`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from tusk.errors import InvalidArgument
from tusk.storage.backends.base import ObjectBackend, ObjectInfo
from tusk.storage.backends.local import LocalBackend

__all__ = ["LocalBackend", "ObjectBackend", "ObjectInfo", "open_backend"]


def open_backend(url: str) -> ObjectBackend:
    """``file:///path`` or a plain path opens a :class:`LocalBackend`.

    ``s3://bucket/prefix?endpoint=...&region=...`` opens an S3-compatible store
    (:class:`tusk.storage.backends.s3.S3Backend`, options in ``docs/deploy.md``); boto3 is
    imported only then, so commands that never touch S3 do not pay for it.
    """
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return LocalBackend(Path(parsed.path if parsed.scheme else url))
    if parsed.scheme == "s3":
        from tusk.storage.backends.s3 import S3Backend

        return S3Backend.from_url(url)
    raise InvalidArgument(
        f"unsupported storage URL scheme {parsed.scheme!r}: "
        "use a local path, a file:// URL or an s3:// URL"
    )
