"""The Python SDK. ``Client()`` runs in-process on the embedded home (``$TUSK_HOME``), or
talks HTTP to a server when given ``address=`` or when ``$TUSK_ADDRESS`` is set (then it is a
``RemoteClient``: the same methods, results and exceptions).

The result types are re-exported here so that callers (and the CLI) need nothing below.
``load_spec`` (check a pipeline spec, naming the bad field), ``RemoteClient`` and the SQL
results (``SqlCommit``, ``SqlInput``, ``TableDiff``) load on first use, so that commands that
never touch a pipeline spec, a server or SQL do not pay for pydantic, httpx or DuckDB.
"""

from typing import TYPE_CHECKING, Any

from tusk.pfs.models import (
    BranchInfo,
    CommitInfo,
    DiffEntry,
    FileInfo,
    FsckReport,
    GcReport,
    MergeConflictInfo,
    MergeResult,
    MergeSide,
    ProjectInfo,
    ProtectionInfo,
    PutResult,
    RepoInfo,
    RetentionRule,
)
from tusk.pfs.sourcetext import is_url, source_name
from tusk.sdk.client import Client, CommitHandle
from tusk.sdk.pipelines import read_spec_source

if TYPE_CHECKING:
    from tusk.pps.cached_images import CachedImage
    from tusk.pps.models import DatumInfo, DatumRun, JobInfo, LineageStep, LogLine, PipelineInfo
    from tusk.pps.spec import load_spec
    from tusk.sdk.remote import RemoteClient
    from tusk.sdk.sql import SqlCommit, SqlInput
    from tusk.sdk.tablediff import TableDiff

__all__ = [
    "BranchInfo",
    "CachedImage",
    "Client",
    "CommitHandle",
    "CommitInfo",
    "DatumInfo",
    "DatumRun",
    "DiffEntry",
    "FileInfo",
    "FsckReport",
    "GcReport",
    "JobInfo",
    "LineageStep",
    "LogLine",
    "MergeConflictInfo",
    "MergeResult",
    "MergeSide",
    "PipelineInfo",
    "ProjectInfo",
    "ProtectionInfo",
    "PutResult",
    "RemoteClient",
    "RepoInfo",
    "RetentionRule",
    "SqlCommit",
    "SqlInput",
    "TableDiff",
    "is_url",
    "load_spec",
    "read_spec_source",
    "source_name",
]


_PIPELINE_MODELS = ("DatumInfo", "DatumRun", "JobInfo", "LineageStep", "LogLine", "PipelineInfo")


def __getattr__(name: str) -> Any:
    if name == "load_spec":
        from tusk.pps.spec import load_spec

        return load_spec
    if name == "RemoteClient":
        from tusk.sdk.remote import RemoteClient

        return RemoteClient
    if name in ("SqlCommit", "SqlInput"):  # DuckDB's and fsspec's modules load with them
        from tusk.sdk import sql

        return getattr(sql, name)
    if name in _PIPELINE_MODELS:  # loaded by the commands that show pipelines, not by all
        from tusk.pps import models

        return getattr(models, name)
    if name == "CachedImage":
        from tusk.pps.cached_images import CachedImage

        return CachedImage
    if name == "TableDiff":
        from tusk.sdk.tablediff import TableDiff

        return TableDiff
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
