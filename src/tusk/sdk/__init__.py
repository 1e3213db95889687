"""The Python SDK. ``Client()`` runs in-process on the embedded home (``$TUSK_HOME``).

The result types are re-exported here so that callers (and the CLI) need nothing below.
"""

from tusk.pfs.models import (
    BranchInfo,
    CommitInfo,
    DiffEntry,
    FileInfo,
    FsckReport,
    GcReport,
    PutResult,
    RepoInfo,
)
from tusk.pfs.sources import is_url, source_name
from tusk.sdk.client import Client, CommitHandle

__all__ = [
    "BranchInfo",
    "Client",
    "CommitHandle",
    "CommitInfo",
    "DiffEntry",
    "FileInfo",
    "FsckReport",
    "GcReport",
    "PutResult",
    "RepoInfo",
    "is_url",
    "source_name",
]
