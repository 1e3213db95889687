"""Bucket names and object keys, as Pachyderm's S3 gateway names them.

A bucket is ``[commit.]branch.repo[.project]``; ``repo`` alone means ``master.repo``:

- ``master.images``: branch master of repo images (project default), read-write;
- ``master.images.research``: the same in project research;
- ``<32-hex commit id>.master.images``: one commit, read-only.

Branch, repo and project names never hold a dot, so the split is unambiguous. Names follow
S3's rules where Tusk's allow more: 3-63 characters, lower-case letters, digits, ``-``,
``_`` and ``.``, no ``..`` (a repo with upper-case letters in its name is not reachable as a
bucket). A key is a file's path without the leading slash: at most 1,024 bytes of UTF-8, no
NUL, no ``.`` or ``..`` segment.
"""

from __future__ import annotations

import re

from tusk.ids import DEFAULT_PROJECT, is_commit_id
from tusk.s3.errors import S3Error
from tusk.values import frozen

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_PART = re.compile(r"^[a-z0-9_-]{1,63}$")
MAX_KEY_BYTES = 1024


@frozen
class Bucket:
    name: str
    repo: str  # as stored: "images", or "research/images" for another project
    branch: str
    commit: str | None = None  # a commit bucket: read-only
    # A job's bucket "out" (s3_out): ``branch`` is then the id of an open commit on no branch,
    # written and read by that id (tusk.pps.s3io).
    staging: bool = False

    @property
    def ref(self) -> str:
        return self.commit or self.branch

    @property
    def writable(self) -> bool:
        return self.commit is None


def bucket_name(repo: str, branch: str, commit: str | None = None) -> str:
    """The bucket of a branch (or of one commit on it) of a stored repo name."""
    project, _, bare = repo.rpartition("/")
    name = f"{branch}.{bare}" + (f".{project}" if project and project != DEFAULT_PROJECT else "")
    return f"{commit}.{name}" if commit else name


def parse_bucket(name: str) -> Bucket:
    """The repo, branch and commit a bucket name stands for; InvalidBucketName otherwise."""
    if not _BUCKET.match(name) or ".." in name:
        raise S3Error(
            "InvalidBucketName",
            f"invalid bucket name {name[:80]!r}: use [commit.]branch.repo[.project], 3-63 "
            "lower-case letters, digits, '-', '_' and single dots",
        )
    parts = name.split(".")
    commit = parts.pop(0) if len(parts) > 1 and is_commit_id(parts[0]) else None
    if not parts or len(parts) > 3 or not all(_PART.match(p) for p in parts):
        raise S3Error(
            "InvalidBucketName",
            f"invalid bucket name {name[:80]!r}: use [commit.]branch.repo[.project]",
        )
    if len(parts) == 1:
        branch, repo, project = "master", parts[0], DEFAULT_PROJECT
    elif len(parts) == 2:
        (branch, repo), project = parts, DEFAULT_PROJECT
    else:
        branch, repo, project = parts
    stored = repo if project == DEFAULT_PROJECT else f"{project}/{repo}"
    return Bucket(name, stored, branch, commit)


def check_key(key: str) -> str:
    """A key as a file path (with its leading slash); the S3 error for a bad one."""
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", f"the key is longer than {MAX_KEY_BYTES} bytes")
    if not key:
        raise S3Error("InvalidArgument", "an empty key names no object")
    if "\x00" in key:
        raise S3Error("InvalidArgument", "a key may not hold a NUL character")
    segments = key.rstrip("/").split("/")
    if any(s in (".", "..") for s in segments):
        raise S3Error("InvalidArgument", f"key {key[:100]!r} has a '.' or '..' segment")
    if any(s == "" for s in segments):
        raise S3Error("InvalidArgument", f"key {key[:100]!r} has an empty segment ('//')")
    return "/" + key
