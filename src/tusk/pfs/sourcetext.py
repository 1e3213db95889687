"""What a source text names (``-`` for stdin, an http(s) URL, or a local path), the file name
it keeps when put into a directory, and the one-line error for a local file that cannot be
read. A leaf: the SDK reads sources with it without loading the chunk store."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from tusk.errors import InvalidArgument, SourceError


def is_url(text: str) -> bool:
    """An http(s) URL, or an ``s3://`` object (read with boto3's credentials)."""
    return text.startswith(("http://", "https://", "s3://"))


def source_name(text: str) -> str:
    """The name a CLI-style source keeps when put into a directory (its base name)."""
    if text == "-":
        raise InvalidArgument("reading stdin (-f -) needs a destination path: repo@branch:/path")
    if is_url(text):
        name = urlsplit(text).path.rstrip("/").rsplit("/", 1)[-1]
    else:
        name = os.path.basename(text.rstrip("/" + os.sep))
        if name in ("", ".", ".."):
            name = os.path.basename(os.path.abspath(text))
    if not name:
        raise InvalidArgument(f"cannot derive a file name from {text!r}; give a path")
    return name


def local_error(exc: OSError, what: str) -> SourceError:
    name = exc.filename or what
    if isinstance(exc, FileNotFoundError):
        return SourceError(f"no such local file {name!r}")
    if isinstance(exc, IsADirectoryError):
        return SourceError(f"{name!r} is a directory: use -r to put a directory")
    if isinstance(exc, PermissionError):
        return SourceError(f"cannot read {name!r}: permission denied")
    return SourceError(f"cannot read {name!r}: {exc.strerror or exc}")
