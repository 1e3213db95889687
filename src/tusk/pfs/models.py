"""What PFS operations return: frozen value objects with ``to_dict`` for JSON output."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from typing import Any, cast

from tusk.errors import InvalidArgument
from tusk.values import frozen, plain


class _Dict:
    def to_dict(self) -> dict[str, Any]:
        return cast(dict[str, Any], plain(self))


# gc's defaults: keep what was touched within an hour; repack packs less than half live.
DEFAULT_GRACE = 3600.0
DEFAULT_REPACK_THRESHOLD = 0.5


@frozen
class RepoInfo(_Dict):
    name: str
    description: str
    created_at: float
    size: int
    branches: list[str] = field(default_factory=list)


@frozen
class ProjectInfo(_Dict):
    name: str
    description: str
    created_at: float
    repos: list[str] = field(default_factory=list)


@frozen
class BranchTrigger(_Dict):
    """When a branch follows another of its repo (Pachyderm's branch trigger): on a new commit
    of ``branch``, or a cron tick, it moves to that branch's head if the conditions hold since
    its own head: ``size`` more bytes, ``commits`` more commits, a ``cron_spec`` tick since it
    last fired; any of them, or with ``all`` every one; none set: on every commit.
    ``fired_at``: when it last moved (or was set), in epoch seconds."""

    branch: str
    size: str | None = None
    commits: int | None = None
    cron_spec: str | None = None
    all: bool = False
    fired_at: float | None = None

    def describe(self) -> str:
        """``master on size(100MB) or commits(10)`` (as pachctl prints a trigger)."""
        conds = [f"{k}({v})" for k, v in (("size", self.size), ("commits", self.commits),
                                          ("cron", self.cron_spec)) if v]  # fmt: skip
        if not conds:
            return f"{self.branch} on every commit"
        return f"{self.branch} on {(' and ' if self.all else ' or ').join(conds)}"


@frozen
class BranchInfo(_Dict):
    repo: str
    name: str
    head: str | None
    created_at: float
    provenance: list[str] = field(default_factory=list)
    subvenance: list[str] = field(default_factory=list)
    trigger: BranchTrigger | None = None


@frozen
class TagInfo(_Dict):
    repo: str
    name: str
    commit: str
    created_at: float


@frozen
class CommitInfo(_Dict):
    repo: str
    id: str
    branch: str | None
    parent: str | None
    state: str
    description: str
    started_at: float
    finished_at: float | None
    size: int
    files: int
    commit_set: str
    children: list[str] = field(default_factory=list)
    branches: list[str] = field(default_factory=list)
    provenance: list[str] = field(default_factory=list)
    subvenance: list[str] = field(default_factory=list)
    merge_parent: str | None = None  # a merge commit's second parent: the commit merged in

    @property
    def finished(self) -> bool:
        return self.state == "finished"

    @property
    def parents(self) -> list[str]:
        return [p for p in (self.parent, self.merge_parent) if p is not None]


@frozen
class RetentionRule(_Dict):
    """Which old commits of ``repo`` gc expires (``tusk retention set``): all but the
    ``keep_last`` newest of each branch, those finished within ``keep_within`` seconds and,
    with ``keep_tagged``, the tagged ones. Heads, open commits, and what kept outputs were
    computed from are always kept."""

    repo: str
    keep_last: int | None
    keep_within: float | None
    keep_tagged: bool
    updated_at: float


@frozen
class ProtectionInfo(_Dict):
    """A protected branch (``tusk protect branch``): only ``tusk merge`` moves it, after the
    checks it requires (``require_checks``, by name) passed on the merge result."""

    repo: str
    branch: str
    created_at: float
    created_by: str
    require_checks: list[str] = field(default_factory=list)


@frozen
class CheckRunInfo(_Dict):
    """One check's run on a candidate commit of ``repo@branch`` before the branch moved
    (``trigger``: a commit finishing, or a merge): ``state`` passed, failed, timed out or
    error (it could not run), with its exit code, how long it took and its log."""

    commit: str
    name: str
    repo: str
    branch: str
    trigger: str
    state: str
    exit_code: int | None
    started_at: float
    duration: float
    log: str

    @property
    def passed(self) -> bool:
        return self.state == "passed"


@frozen
class MergeSide(_Dict):
    """What one side of a merge holds at a path: a file (its content hash) or a directory
    (its tree node), or nothing (type None) where that side has no such path."""

    type: str | None  # "file", "dir" or None
    hash: str | None
    size: int | None


@frozen
class MergeConflictInfo(_Dict):
    path: str
    base: MergeSide
    ours: MergeSide
    theirs: MergeSide
    resolution: str | None = None  # "ours", "theirs" or "file"; None: unresolved


@frozen
class MergeResult(_Dict):
    """``tusk merge``: ``source`` (a commit id) merged into ``into`` (a branch) of ``repo``
    against ``base``, one of ``bases`` (more than one: a criss-cross merge). ``taken``: paths
    that came from the source without conflict. ``commit``: the merge commit, None on a dry
    run or when the branch already holds the source (``up_to_date``)."""

    repo: str
    source: str
    into: str
    base: str | None
    bases: list[str]
    taken: int
    conflicts: list[MergeConflictInfo]
    commit: CommitInfo | None
    dry_run: bool = False
    up_to_date: bool = False
    checks: list[CheckRunInfo] = field(default_factory=list)  # what gated the move
    # --run-pipelines: the downstream output commits that moved with it (one commit set)
    outputs: list[CommitInfo] = field(default_factory=list)


@frozen
class FileInfo(_Dict):
    repo: str
    commit: str
    path: str
    type: str  # "file" or "dir"
    size: int
    files: int
    hash: str
    chunks: int


@frozen
class DiffEntry(_Dict):
    path: str
    change: str  # "added", "removed" or "changed"
    old_size: int | None
    new_size: int | None
    old_hash: str | None
    new_hash: str | None


@frozen
class PutResult(_Dict):
    commit: CommitInfo
    files: int
    bytes: int
    new_chunks: int
    stored_bytes: int


@frozen
class FsckReport(_Dict):
    ok: bool
    problems: list[str]
    notes: list[str]
    counts: dict[str, int]


@frozen
class ImportResult(_Dict):
    """``tusk import`` (commit: the new commit, ``files`` imported by reference) and
    ``tusk materialize`` (commit None when no file there was a reference)."""

    commit: CommitInfo | None
    files: int


@frozen
class GcReport(_Dict):
    nodes_deleted: int
    chunks_deleted: int
    packs_deleted: int  # pack objects deleted (emptied, repacked, or never indexed)
    bytes_freed: int  # their bytes; the space given back is bytes_freed - bytes_rewritten
    temp_files_deleted: int
    dry_run: bool = False
    packs_repacked: int = 0  # mostly dead packs whose live chunks were copied to new packs
    bytes_rewritten: int = 0  # bytes of the new packs
    scratch_deleted: int = 0  # old webhook checkouts and scratch folders of dead processes
    uploads_expired: int = 0  # S3 multipart uploads abandoned for longer than the grace
    images_deleted: int = 0  # cached images no pipeline version pins (tusk.pps.images)
    image_bytes_freed: int = 0  # their blobs and unpacked files no other image shares
    # what killed processes left (tusk.pfs.holds): checks' candidate commits, s3_out commits,
    # temporary branches of merge --run-pipelines and pipeline checks
    leftovers_removed: int = 0
    # Retention (tusk.pfs.retention): commits expired from the history (repo@id, or would
    # be on a dry run), jobs whose records went with them, and commits a rule expired that
    # kept outputs still need for their lineage (so kept).
    expired: list[str] = field(default_factory=list)
    jobs_expired: int = 0
    kept_for_lineage: int = 0


def check_changes(changes: Sequence[tuple[str, ...]]) -> None:
    """InvalidArgument unless every change is ``("delete", path)`` or ``("copy", source,
    path)`` and there is one at least (``modify_files``, checked by the SDK and the service
    alike)."""
    if not changes:
        raise InvalidArgument("no changes given: nothing to commit")
    for change in changes:
        shape = (change[0] if change else None, len(change))
        if shape not in (("delete", 2), ("copy", 3)) or not all(isinstance(x, str) for x in change):
            raise InvalidArgument(
                f"a change is ('delete', path) or ('copy', source, path), not {tuple(change)!r}"
            )
