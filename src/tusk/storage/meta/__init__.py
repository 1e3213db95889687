"""The metadata store: SQLAlchemy Core over SQLite (default, WAL) or PostgreSQL."""

from tusk.storage.meta.records import (
    BranchRecord,
    ChunkLocation,
    CommitRecord,
    DatumRecord,
    JobRecord,
    LogRecord,
    PackRecord,
    PipelineRecord,
    PipelineVersionRecord,
    RepoRecord,
)
from tusk.storage.meta.store import MetaStore, MetaTx

__all__ = [
    "BranchRecord",
    "ChunkLocation",
    "CommitRecord",
    "DatumRecord",
    "JobRecord",
    "LogRecord",
    "MetaStore",
    "MetaTx",
    "PackRecord",
    "PipelineRecord",
    "PipelineVersionRecord",
    "RepoRecord",
]
