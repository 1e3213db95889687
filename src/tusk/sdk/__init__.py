"""The Python SDK. ``Client()`` runs in-process on the embedded home (``$TUSK_HOME``), or
talks HTTP to a server when given ``address=`` or when ``$TUSK_ADDRESS`` is set (then it is a
``RemoteClient``: the same methods, results and exceptions).

The result types are re-exported here so that callers (and the CLI) need nothing below.
``load_spec`` (check a pipeline spec, naming the bad field) and ``RemoteClient`` load on first
use, so that commands that never touch a pipeline spec or a server do not pay for pydantic or
httpx.
"""

from typing import TYPE_CHECKING, Any

from tusk.pfs.models import (
    BranchInfo,
    CommitInfo,
    DiffEntry,
    FileInfo,
    FsckReport,
    GcReport,
    ProjectInfo,
    PutResult,
    RepoInfo,
)
from tusk.pfs.sourcetext import is_url, source_name
from tusk.pps.cached_images import CachedImage
from tusk.pps.models import DatumInfo, JobInfo, LineageStep, LogLine, PipelineInfo
from tusk.sdk.client import Client, CommitHandle
from tusk.sdk.pipelines import read_spec_source

if TYPE_CHECKING:
    from tusk.pps.spec import load_spec
    from tusk.sdk.remote import RemoteClient

__all__ = [
    "BranchInfo",
    "CachedImage",
    "Client",
    "CommitHandle",
    "CommitInfo",
    "DatumInfo",
    "DiffEntry",
    "FileInfo",
    "FsckReport",
    "GcReport",
    "JobInfo",
    "LineageStep",
    "LogLine",
    "PipelineInfo",
    "ProjectInfo",
    "PutResult",
    "RemoteClient",
    "RepoInfo",
    "is_url",
    "load_spec",
    "read_spec_source",
    "source_name",
]


def __getattr__(name: str) -> Any:
    if name == "load_spec":
        from tusk.pps.spec import load_spec

        return load_spec
    if name == "RemoteClient":
        from tusk.sdk.remote import RemoteClient

        return RemoteClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
