"""What PPS operations return: frozen value objects with ``to_dict`` for JSON output."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from tusk.pfs.models import _Dict
from tusk.values import frozen


@frozen
class CheckInfo(_Dict):
    """A check (``kind: check``, tusk.pps.checks): ``cmd`` must pass on a candidate of a
    branch of ``repo`` that ``branch`` (a glob) matches before it moves, ``on`` a commit
    finishing and/or a merge; in ``image`` (pinned at ``image_digest``) when given."""

    name: str
    repo: str
    branch: str
    on: list[str]
    cmd: list[str]
    stdin: list[str]
    image: str | None
    image_digest: str | None
    timeout: float
    env: dict[str, str]
    description: str = ""


@frozen
class PipelineVersion(_Dict):
    version: int
    spec_hash: str
    created_at: float
    salt: str
    origin: dict[str, Any]
    spec: dict[str, Any]


@frozen
class PipelineInfo(_Dict):
    name: str
    version: int
    state: str  # "running" or "paused"
    description: str
    input: str  # a one-line summary such as "cross(images:/*, edges:/)"
    output_branch: str
    created_at: float
    updated_at: float
    spec: dict[str, Any]
    last_job: str | None = None
    last_job_state: str | None = None
    versions: list[PipelineVersion] = field(default_factory=list)
    # One line per resource setting and what applies it here (tusk.pps.resources.describe).
    resources: list[str] = field(default_factory=list)
    # A spout's or a service's process: running, restarting, crashed or stopped
    # (tusk.pps.supervisor)
    process_state: str | None = None
    restarts: int = 0
    # why it last exited (exit code and last stderr lines); where a service serves
    process_detail: str = ""


@frozen
class JobInfo(_Dict):
    pipeline: str
    id: str
    version: int
    output_commit: str
    state: str  # created, running, egressing, success, failure, killed
    reason: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    datums_total: int
    processed: int
    skipped: int
    failed: int
    recovered: int = 0
    input_commits: list[str] = field(default_factory=list)
    image_digest: str | None = None  # sha256:<hex> of the image its datums ran in

    @property
    def done(self) -> bool:
        return self.state in ("success", "failure", "killed")


@frozen
class DatumInfo(_Dict):
    pipeline: str
    job: str
    id: str
    state: str  # pending, running, success, skipped, failed, recovered
    files: list[dict[str, Any]]
    attempts: int
    exit_code: int | None
    error: str
    stderr_tail: str
    started_at: float | None
    finished_at: float | None
    output_files: int | None = None


@frozen
class DatumRun(_Dict):
    """What one datum of a job ran with, enough to run it again elsewhere (``tusk debug
    datum``): its files, each with the commit the job read it from (``files``: a
    :meth:`tusk.pps.datums.DatumFile.to_json` dict plus ``commit``), the pipeline version
    (spec, its hash, where it came from and the code commit), and the image the job ran it
    in (``image_digest``; None: on the host). Secrets are named in the spec, never valued."""

    pipeline: str
    job: str
    datum: str
    state: str
    attempts: int
    exit_code: int | None
    error: str
    stderr_tail: str
    output_commit: str
    version: int
    spec_hash: str
    spec: dict[str, Any]
    origin: dict[str, Any]  # spec_file, working_dir and git facts recorded at create/apply
    code: dict[str, Any]  # the code commit, as lineage shows it
    image: str | None
    image_digest: str | None
    files: list[dict[str, Any]] = field(default_factory=list)

    @property
    def executor(self) -> str:
        """``image`` when the job ran its datums in the pinned image, else ``host``."""
        return "image" if self.image_digest else "host"


@frozen
class LogLine(_Dict):
    id: int
    pipeline: str
    job: str
    datum: str
    ts: float
    stream: str
    line: str


@frozen
class LineageStep(_Dict):
    """How one file came to be: the job and datum that wrote it and what they read."""

    repo: str
    commit: str
    path: str
    pipeline: str | None = None
    job: str | None = None
    datum: str | None = None
    pipeline_version: int | None = None
    spec_hash: str | None = None
    code: dict[str, Any] = field(default_factory=dict)
    image: str | None = None
    image_digest: str | None = None  # what ``image`` resolved to for that job
    inputs: list[LineageStep] = field(default_factory=list)
    # Data put in a merge commit (tusk merge): both its parents, and the one whose version of
    # the file it holds (None: neither, a conflict resolved with new content).
    merge_parents: list[str] = field(default_factory=list)
    merged_from: str | None = None


@frozen
class ApplyChange(_Dict):
    """One line of an apply plan: what happens (or happened) to one repo, pipeline or check."""

    kind: str  # "repo", "pipeline" or "check"
    name: str
    action: str  # "create", "update", "delete", "unchanged" or "unmanaged"
    source: str = ""  # the file (and document) that declares it
    diff: str = ""  # for an update: a unified diff of the stored spec and the new one
    version: int | None = None  # a pipeline's version after the apply
    reprocess: bool = False  # an update that reruns every datum


@frozen
class ApplyResult(_Dict):
    """What ``tusk apply`` planned and, unless it was a dry run, did (in one transaction)."""

    dry_run: bool
    changes: list[ApplyChange] = field(default_factory=list)
    commit_sets: list[str] = field(default_factory=list)  # started by this apply
    jobs: list[str] = field(default_factory=list)  # "pipeline@job-id"
    warnings: list[str] = field(default_factory=list)


@frozen
class SecretInfo(_Dict):
    """A stored secret as shown (``tusk inspect secret``): its keys, never their values."""

    name: str
    keys: list[str] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    created_by: str = ""
