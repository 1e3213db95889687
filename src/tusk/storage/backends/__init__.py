"""Object backends: where pack objects live. Open one by URL with :func:`open_backend`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from tusk.errors import InvalidArgument
from tusk.storage.backends.base import ObjectBackend, ObjectInfo
from tusk.storage.backends.local import LocalBackend

__all__ = ["LocalBackend", "ObjectBackend", "ObjectInfo", "open_backend"]


def open_backend(url: str) -> ObjectBackend:
    """``file:///path`` or a plain path opens a :class:`LocalBackend`."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return LocalBackend(Path(parsed.path if parsed.scheme else url))
    raise InvalidArgument(
        f"unsupported storage URL scheme {parsed.scheme!r}: use a local path or file:// URL"
    )
