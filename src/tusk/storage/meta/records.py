"""Rows of the metadata store as frozen value objects."""

from __future__ import annotations

from tusk.values import frozen


@frozen(slots=True)
class RepoRecord:
    name: str
    description: str
    created_at: float


@frozen(slots=True)
class BranchRecord:
    repo: str
    name: str
    head: str | None
    created_at: float


@frozen(slots=True)
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
    merge_parent: str | None = None  # a merge commit's second parent

    @property
    def finished(self) -> bool:
        return self.state == "finished"

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(p for p in (self.parent, self.merge_parent) if p is not None)


@frozen(slots=True)
class ChunkLocation:
    pack: str
    offset: int
    length: int
    raw_length: int
    codec: int


@frozen(slots=True)
class PackRecord:
    id: str
    size: int
    chunks: int
    created_at: float


@frozen(slots=True)
class PipelineRecord:
    name: str
    version: int
    state: str  # "running" or "paused"
    created_at: float
    updated_at: float


@frozen(slots=True)
class PipelineVersionRecord:
    pipeline: str
    version: int
    spec: str  # canonical JSON
    spec_hash: str
    salt: str
    origin: str  # JSON: where the spec came from (file, directory, git)
    created_at: float
    image_digest: str | None = None  # what transform.image resolved to, once per version


@frozen(slots=True)
class JobRecord:
    pipeline: str
    id: str  # the commit set id (Pachyderm's global id)
    version: int
    output_commit: str
    state: str  # created, running, finishing, success, failure, killed
    reason: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    datums_total: int
    processed: int
    skipped: int
    failed: int
    owner: str | None
    lease_until: float | None
    image_digest: str | None = None  # sha256:<hex> of the image its datums ran in


@frozen(slots=True)
class DatumRecord:
    pipeline: str
    job: str
    id: str
    seq: int
    hash: str
    state: str  # pending, running, success, skipped, failed
    files: str  # JSON list of the datum's input files
    output_tree: bytes | None
    attempts: int
    exit_code: int | None
    error: str
    stderr_tail: str
    owner: str | None
    lease_until: float | None
    started_at: float | None
    finished_at: float | None


@frozen(slots=True)
class LogRecord:
    pipeline: str
    job: str
    datum: str
    ts: float
    stream: str
    line: str


@frozen(slots=True)
class ProcessRecord:
    """A spout's or a service's long-running process, as its supervisor last saw it."""

    pipeline: str
    kind: str  # spout or service
    state: str  # starting, running, restarting, crashed, stopped
    restarts: int
    pid: int | None
    owner: str | None  # the scheduler that runs it
    started_at: float | None
    updated_at: float
    detail: str  # why it restarted or crashed (exit code, last lines); a service's port
