"""Rows of the metadata store as frozen value objects."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RepoRecord:
    name: str
    description: str
    created_at: float


@dataclass(frozen=True, slots=True)
class BranchRecord:
    repo: str
    name: str
    head: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class CommitRecord:
    id: str
    repo: str
    branch: str | None
    parent: str | None
    tree: bytes
    state: str  # "open" or "finished"
    description: str
    started_at: float
    finished_at: float | None
    size: int
    files: int
    commit_set: str

    @property
    def finished(self) -> bool:
        return self.state == "finished"


@dataclass(frozen=True, slots=True)
class ChunkLocation:
    pack: str
    offset: int
    length: int
    raw_length: int
    codec: int


@dataclass(frozen=True, slots=True)
class PackRecord:
    id: str
    size: int
    chunks: int
    created_at: float
