"""PfsService: the one facade of the versioned file system.

Every change follows one order: chunk data goes to packs first (outside any transaction), then
one metadata transaction writes the new tree nodes and moves the commit or branch pointer. A
crash before that transaction leaves the branch as it was; only unreferenced chunks remain,
which ``gc`` removes after its grace period.
"""

from __future__ import annotations

import fnmatch
import functools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tusk.config import StoreConfig
from tusk.errors import (
    AlreadyExists,
    BranchNotFound,
    BranchProtected,
    CommitFinished,
    CommitNotFound,
    Conflict,
    FileNotFound,
    InUse,
    InvalidArgument,
    MergeConflict,
    NotFound,
    PathConflict,
    ProjectNotFound,
    ReferenceBroken,
    RepoNotFound,
    StorageError,
    TagNotFound,
)
from tusk.gcpause import gc_paused
from tusk.ids import (
    DEFAULT_PROJECT,
    check_branch_name,
    check_project_name,
    check_repo_name,
    is_commit_id,
    new_commit_id,
    split_repo,
)
from tusk.pfs import gates, holds, retention, triggers
from tusk.pfs.models import (
    DEFAULT_GRACE,
    DEFAULT_REPACK_THRESHOLD,
    BranchInfo,
    BranchTrigger,
    CheckRunInfo,
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
    TagInfo,
    check_changes,
)
from tusk.pfs.paths import check_parts, split_path
from tusk.pfs.refs import Address, Ref, parse_ref
from tusk.pfs.sources import Source
from tusk.pfs.tree import (
    EMPTY_TREE,
    DirEntry,
    Entry,
    FileEntry,
    NodeCache,
    NodeCodec,
    TreeEditor,
    TreeParams,
    TreeReader,
    content_id,
    diff_trees,
    make_file_entry,
)
from tusk.polling import poll_until
from tusk.storage.chunks import RANGE_COALESCE, ChunkRef, ChunkWriter, IndexEntry, Progress
from tusk.storage.meta.records import BranchRecord, CommitRecord, RepoRecord
from tusk.storage.meta.store import MetaTx
from tusk.storage.meta.store_holds import HoldRecord
from tusk.storage.meta.store_projects import ProjectRecord
from tusk.storage.meta.store_retention import RetentionRecord
from tusk.storage.meta.store_tags import TagRecord
from tusk.storage.store import Storage
from tusk.values import frozen

if TYPE_CHECKING:
    from tusk.pfs.merge import TreeConflict
    from tusk.pfs.uploads import Uploads

MERGE_STRATEGIES = ("fail", "ours", "theirs")


@frozen
class PutOp:
    parts: tuple[str, ...]
    chunks: tuple[ChunkRef, ...]
    # An append is computed against the file as the upload found it: ``chunks`` is then the
    # whole new file, valid only if the file still has content id ``expect`` (None: absent).
    check: bool = False
    expect: bytes | None = None


@frozen
class DeleteOp:
    parts: tuple[str, ...]
    missing_ok: bool = False  # a path that is not there: nothing to do, not FileNotFound


@frozen
class CopyOp:
    src: Address
    parts: tuple[str, ...]


@frozen
class PlaceOp:
    """Put an entry that is already stored (a pipeline carrying a datum's output forward)."""

    parts: tuple[str, ...]
    entry: FileEntry


Op = PutOp | DeleteOp | CopyOp | PlaceOp
Change = tuple[str, ...]  # ("delete", path) or ("copy", source address, path)


# Commits listed per read transaction: few round trips, and writers wait on none for long.
COMMIT_BATCH = 256


def _tag_info(r: TagRecord) -> TagInfo:
    return TagInfo(r.repo, r.name, r.commit, r.created_at)


def _no_branch(repo: str, branch: str) -> BranchNotFound:
    """Pachyderm's words (its clients match on them), and where to look."""
    return BranchNotFound(
        f"branch {branch} not found in repo {repo} (list branches with: tusk list branch {repo})"
    )


def _fmt(c: CommitRecord) -> str:
    return f"{c.repo}@{c.id}"


class PfsService:
    def __init__(self, storage: Storage, tree_params: TreeParams | None = None) -> None:
        self.storage = storage
        self.meta = storage.meta
        self.chunks = storage.chunks
        self.tree_params = tree_params or TreeParams()
        self.node_cache = NodeCache()
        self.codec = NodeCodec()
        # The clock of branch triggers (tests bring their own; see fire_cron_triggers).
        self.clock: Callable[[], float] = time.time
        # Cron triggers due whose other conditions failed: (repo, branch) -> the heads and the
        # trigger then (the same again cannot hold until one of them changes).
        self._cron_idle: dict[tuple[str, str], tuple[str, str | None, triggers.TriggerRecord]] = {}
        # What runs the checks that gate a branch (tusk.pfs.gates); the pipeline layer sets it.
        self.check_runner: gates.CheckRunner | None = None

    @classmethod
    def open(cls, home: Path, config: StoreConfig | None = None) -> PfsService:
        return cls(Storage.open(home, config=config))

    def close(self) -> None:
        self.storage.close()

    def reader(self, tx: MetaTx | None = None) -> TreeReader:
        load = tx.get_nodes if tx is not None else self.meta.get_nodes
        return TreeReader(load, self.node_cache, self.codec)

    @functools.cached_property
    def uploads(self) -> Uploads:
        """Multipart uploads and recorded ETags (the S3 gateway's; see tusk.pfs.uploads)."""
        from tusk.pfs.uploads import Uploads

        return Uploads(self)

    # Repos

    # Projects: a repo of another project than default is stored as "project/repo".

    def create_project(self, name: str, description: str = "", update: bool = False) -> ProjectInfo:
        check_project_name(name)
        with self.meta.write() as tx:
            if tx.get_project(name) is not None:
                if not update:
                    raise AlreadyExists(
                        f"project {name} already exists (use --update to change it)"
                    )
                tx.update_project(name, description)
            else:
                tx.insert_project(ProjectRecord(name, description, time.time()))
            return self._project_info(tx, name)

    def _project_info(self, tx: MetaTx, name: str) -> ProjectInfo:
        record = tx.get_project(name)
        if record is None:
            raise ProjectNotFound(f"project {name} not found (list them with: tusk list project)")
        if name == DEFAULT_PROJECT:
            repos = [r.name for r in tx.list_repos() if "/" not in r.name]
        else:
            repos = tx.project_repos(name)
        return ProjectInfo(record.name, record.description, record.created_at, repos)

    def inspect_project(self, name: str) -> ProjectInfo:
        check_project_name(name)
        with self.meta.read() as tx:
            return self._project_info(tx, name)

    def list_projects(self) -> list[ProjectInfo]:
        with self.meta.read() as tx:
            return [self._project_info(tx, p.name) for p in tx.list_projects()]

    def delete_project(self, name: str) -> None:
        """Delete an empty project (never ``default``)."""
        check_project_name(name)
        if name == DEFAULT_PROJECT:
            raise InvalidArgument("the default project cannot be deleted")
        with self.meta.write() as tx:
            info = self._project_info(tx, name)
            if info.repos:
                shown = ", ".join(info.repos[:3]) + ("..." if len(info.repos) > 3 else "")
                raise InUse(
                    f"project {name} still has {len(info.repos)} repo(s) ({shown}); delete them "
                    "first"
                )
            tx.delete_project(name)

    def create_repo(self, name: str, description: str = "", update: bool = False) -> RepoInfo:
        name = check_repo_name(name)
        project, _bare = split_repo(name)
        with self.meta.write() as tx:
            if project != DEFAULT_PROJECT and tx.get_project(project) is None:
                raise ProjectNotFound(
                    f"project {project} not found; create it first with: tusk create project "
                    f"{project}"
                )
            existing = tx.get_repo(name)
            if existing is not None:
                if not update:
                    raise AlreadyExists(f"repo {name} already exists (use --update to change it)")
                tx.update_repo_description(name, description)
            else:
                tx.insert_repo(RepoRecord(name, description, time.time()))
            return self._repo_info(tx, name)

    def _need_repo(self, tx: MetaTx, name: str) -> RepoRecord:
        repo = tx.get_repo(check_repo_name(name))
        if repo is None:
            raise RepoNotFound(f"repo {name} not found (list repos with: tusk list repo)")
        return repo

    def _repo_info(self, tx: MetaTx, name: str) -> RepoInfo:
        repo = self._need_repo(tx, name)
        branches = tx.list_branches(name)
        size = 0
        master = next((b for b in branches if b.name == "master"), None)
        head = master or (branches[0] if branches else None)
        if head is not None and head.head is not None:
            commit = tx.get_commit(head.head)
            size = commit.size if commit else 0
        return RepoInfo(
            repo.name, repo.description, repo.created_at, size, [b.name for b in branches]
        )

    def inspect_repo(self, name: str) -> RepoInfo:
        with self.meta.read() as tx:
            return self._repo_info(tx, name)

    def list_repos(self) -> list[RepoInfo]:
        with self.meta.read() as tx:
            return [self._repo_info(tx, r.name) for r in tx.list_repos()]

    def delete_repo(self, name: str, force: bool = False) -> None:
        with self.meta.write() as tx:
            self._need_repo(tx, name)
            users = [f"{r}@{b}" for r, b in tx.branch_subvenance(name) if r != name]
            if users and not force:
                raise InUse(
                    f"repo {name} is in the provenance of {', '.join(sorted(set(users)))}; "
                    "delete those first or use --force"
                )
            tx.delete_repo(name)

    # Branches

    def create_branch(
        self,
        repo: str,
        branch: str,
        head: str | None = None,
        provenance: Sequence[tuple[str, str]] = (),
        trigger: BranchTrigger | None = None,
    ) -> BranchInfo:
        """Create a branch, or move an existing one's head. O(1): no data is copied.

        ``trigger`` makes it follow another branch of its repo (see :mod:`tusk.pfs.triggers`);
        given for an existing branch, it replaces that branch's trigger.
        """
        check_branch_name(branch)
        with self.meta.write() as tx:
            self._need_repo(tx, repo)
            head_id = None
            if head is not None:
                head_id = self._resolve(tx, repo, parse_ref(head), readable=False).id
            existing = tx.get_branch(repo, branch, lock=True)
            if existing is None and tx.get_tag(repo, branch) is not None:
                raise AlreadyExists(
                    f"{repo} has a tag named {branch}: a branch may not share a tag's name"
                )
            if existing is not None and head is None and not provenance and trigger is None:
                raise AlreadyExists(
                    f"branch {repo}@{branch} already exists (give --head to move it)"
                )
            if trigger is not None:
                if provenance or tx.branch_provenance(repo, branch):
                    raise InvalidArgument(
                        f"branch {repo}@{branch} has provenance (its commits are computed from "
                        "other branches), so it cannot also have a trigger"
                    )
                record = triggers.checked(tx, repo, branch, trigger, self.clock())
                before = tx.get_trigger(repo, branch)
                if before is not None and replace(before, fired_at=record.fired_at) == record:
                    record = before  # the same trigger again (a pipeline update): same clock
            elif provenance and tx.get_trigger(repo, branch) is not None:
                raise InvalidArgument(
                    f"branch {repo}@{branch} has a trigger, so it cannot also have provenance"
                )
            for prov_repo, prov_branch in provenance:
                self._need_repo(tx, prov_repo)
                check_branch_name(prov_branch)
                if (prov_repo, prov_branch) == (repo, branch):
                    raise InvalidArgument(f"branch {repo}@{branch} cannot be its own provenance")
            for prov_repo, prov_branch in provenance:
                # As in Pachyderm, naming a branch that does not exist yet creates it, empty.
                if tx.get_branch(prov_repo, prov_branch) is None:
                    tx.upsert_branch(BranchRecord(prov_repo, prov_branch, None, time.time()))
            created = existing.created_at if existing else time.time()
            if existing is not None and head is None:
                head_id = existing.head
            if existing is not None and head_id != existing.head:
                self._not_protected(tx, repo, branch, "moved to another head")
            tx.upsert_branch(BranchRecord(repo, branch, head_id, created))
            if provenance:
                self._check_no_cycle(tx, repo, branch, provenance)
                tx.set_branch_provenance(repo, branch, provenance)
            if trigger is not None:
                tx.set_trigger(record)
            return self._branch_info(tx, repo, branch)

    def _check_no_cycle(
        self, tx: MetaTx, repo: str, branch: str, provenance: Sequence[tuple[str, str]]
    ) -> None:
        stack = list(provenance)
        seen: set[tuple[str, str]] = set()
        while stack:
            node = stack.pop()
            if node == (repo, branch):
                raise InvalidArgument(f"provenance of {repo}@{branch} would form a cycle")
            if node in seen:
                continue
            seen.add(node)
            stack.extend(tx.branch_provenance(*node))

    def _need_branch(self, tx: MetaTx, repo: str, branch: str) -> BranchRecord:
        self._need_repo(tx, repo)
        b = tx.get_branch(repo, branch)
        if b is None:
            raise _no_branch(repo, branch)
        return b

    def _branch_info(self, tx: MetaTx, repo: str, branch: str) -> BranchInfo:
        b = self._need_branch(tx, repo, branch)
        trigger = tx.get_trigger(repo, branch)
        return BranchInfo(
            repo,
            branch,
            b.head,
            b.created_at,
            [f"{r}@{n}" for r, n in tx.branch_provenance(repo, branch)],
            [f"{r}@{n}" for r, n in tx.branch_subvenance(repo, branch)],
            triggers.as_info(trigger) if trigger is not None else None,
        )

    def inspect_branch(self, repo: str, branch: str) -> BranchInfo:
        with self.meta.read() as tx:
            return self._branch_info(tx, repo, branch)

    def list_branches(self, repo: str) -> list[BranchInfo]:
        with self.meta.read() as tx:
            self._need_repo(tx, repo)
            return [self._branch_info(tx, repo, b.name) for b in tx.list_branches(repo)]

    def delete_branch(self, repo: str, branch: str, force: bool = False) -> None:
        with self.meta.write() as tx:
            self._need_branch(tx, repo, branch)
            self._not_protected(tx, repo, branch, "deleted")
            users = tx.branch_subvenance(repo, branch)
            if users and not force:
                names = ", ".join(f"{r}@{b}" for r, b in users)
                raise InUse(f"branch {repo}@{branch} is in the provenance of {names}; use --force")
            tx.delete_branch(repo, branch)

    # Protected branches: moved only by tusk merge (issue 22)

    def protect_branch(
        self, repo: str, branch: str, by: str = "", checks: Sequence[str] = ()
    ) -> ProtectionInfo:
        """Protect ``repo@branch``: every direct write, move and delete is refused; only
        :meth:`merge` from another branch moves it (and a pipeline its own output branch),
        after every check of ``checks`` (defined checks covering the branch) passed on the
        merge result."""
        with self.meta.write() as tx:
            self._need_branch(tx, repo, branch)
            if tx.is_protected(repo, branch):
                raise AlreadyExists(f"branch {repo}@{branch} is already protected")
            for name in checks:
                check = tx.get_check(name)
                if check is None:
                    raise NotFound(
                        f"check {name} is not defined: declare it in a 'kind: check' document "
                        "and tusk apply it first"
                    )
                if check.repo != repo or not fnmatch.fnmatchcase(branch, check.branch):
                    raise InvalidArgument(
                        f"check {name} covers {check.repo}@{check.branch}, not {repo}@{branch}: "
                        "require a check declared for this branch"
                    )
            tx.protect(repo, branch, time.time(), by, sorted(set(checks)))
            return next(p for p in self._protections(tx, repo) if p.branch == branch)

    def unprotect_branch(self, repo: str, branch: str) -> None:
        with self.meta.write() as tx:
            self._need_repo(tx, repo)
            if not tx.is_protected(repo, branch):
                raise NotFound(f"branch {repo}@{branch} is not protected")
            tx.unprotect(repo, branch)

    def list_protections(self, repo: str | None = None) -> list[ProtectionInfo]:
        with self.meta.read() as tx:
            if repo is not None:
                self._need_repo(tx, repo)
            return self._protections(tx, repo)

    @staticmethod
    def _protections(tx: MetaTx, repo: str | None) -> list[ProtectionInfo]:
        return [ProtectionInfo(*row) for row in tx.protected_branches(repo)]

    def _not_protected(self, tx: MetaTx, repo: str, branch: str, what: str) -> None:
        from tusk.pfs.protection import overridden

        if tx.is_protected(repo, branch) and not overridden(f"{repo}@{branch}"):
            raise BranchProtected(
                f"branch {repo}@{branch} is protected and cannot be {what}: it moves only by "
                f"tusk merge from another branch (tusk unprotect branch {repo}@{branch} lifts "
                "the rule)"
            )

    # Tags: a name for one commit (repo@v1 wherever a commit is taken)

    def create_tag(self, repo: str, ref: str, name: str) -> TagInfo:
        """Name the commit ``ref`` resolves to ``name``; a branch may not have that name."""
        check_branch_name(name)
        with self.meta.write() as tx:
            commit = self._resolve(tx, repo, parse_ref(ref), readable=False)
            if tx.get_tag(repo, name) is not None:
                raise AlreadyExists(f"tag {repo}@{name} already exists (delete it first)")
            if tx.get_branch(repo, name) is not None:
                raise AlreadyExists(
                    f"{repo} has a branch named {name}: a tag may not share a branch's name"
                )
            if not commit.finished:
                raise Conflict(f"commit {_fmt(commit)} is open; finish it before tagging it")
            record = TagRecord(repo, name, commit.id, time.time())
            tx.insert_tag(record)
            return _tag_info(record)

    def list_tags(self, repo: str) -> list[TagInfo]:
        with self.meta.read() as tx:
            self._need_repo(tx, repo)
            return [_tag_info(r) for r in tx.list_tags(repo)]

    def inspect_tag(self, repo: str, name: str) -> TagInfo:
        with self.meta.read() as tx:
            return _tag_info(self._need_tag(tx, repo, name))

    def delete_tag(self, repo: str, name: str) -> None:
        with self.meta.write() as tx:
            self._need_tag(tx, repo, name)
            tx.delete_tag(repo, name)

    def _need_tag(self, tx: MetaTx, repo: str, name: str) -> TagRecord:
        self._need_repo(tx, repo)
        record = tx.get_tag(repo, name)
        if record is None:
            raise TagNotFound(f"tag {name} not found in repo {repo} (tusk list tag {repo})")
        return record

    def _not_tagged(self, tx: MetaTx, commits: Sequence[CommitRecord], what: str) -> None:
        """A tagged commit stays: refuse to delete, drop or squash it away."""
        tags = tx.tags_of([c.id for c in commits])
        if tags:
            t = tags[0]
            raise InUse(
                f"commit {t.repo}@{t.commit} is tagged {t.name}, so it cannot be {what}: "
                f"delete the tag first (tusk delete tag {t.repo}@{t.name})"
            )

    # Commits: resolution

    def _resolve(self, tx: MetaTx, repo: str, ref: Ref, *, readable: bool = True) -> CommitRecord:
        """The commit ``ref`` names.

        Ancestors count from the branch head as it is (open or not), so ``master^1`` is the
        same commit for reads and for inspection. ``readable`` then steps back from an open
        commit reached through a branch to the newest finished one: reads of a branch see
        finished commits only; an open commit's staged data is read through its id.
        """
        self._need_repo(tx, repo)
        branch = tx.get_branch(repo, ref.base)
        commit: CommitRecord | None
        if branch is not None:
            if branch.head is None:
                raise CommitNotFound(f"branch {repo}@{ref.base} has no commits yet")
            commit = tx.get_commit(branch.head)
            if commit is None:
                raise StorageError(f"branch {repo}@{ref.base} points at a missing commit")
        elif (tag := tx.get_tag(repo, ref.base)) is not None:
            commit = self._need_commit(tx, tag.commit)
        else:
            commit = self._find_commit(tx, repo, ref.base)
        for step in range(ref.ancestors):
            if commit.parent is None:
                raise CommitNotFound(
                    f"{repo}@{ref} does not exist: {_fmt(commit)} has only {step} ancestor(s)"
                )
            commit = self._need_commit(tx, commit.parent)
        if readable and branch is not None:
            while not commit.finished:
                if commit.parent is None:
                    raise CommitNotFound(f"{repo}@{ref} has no finished commit yet")
                commit = self._need_commit(tx, commit.parent)
        return commit

    def _lookup_commit(self, tx: MetaTx, repo: str, text: str) -> CommitRecord | None:
        """The commit of ``repo`` that ``text`` (an id or a unique prefix of 6+) names."""
        if is_commit_id(text):
            commit = tx.get_commit(text)
            return commit if commit is not None and commit.repo == repo else None
        if len(text) >= 6 and all(ch in "0123456789abcdef" for ch in text):
            found = tx.find_commits_by_prefix(repo, text)
            if len(found) > 1:
                raise InvalidArgument(f"commit id prefix {text} is ambiguous in repo {repo}")
            return found[0] if found else None
        return None

    def _find_commit(self, tx: MetaTx, repo: str, text: str) -> CommitRecord:
        commit = self._lookup_commit(tx, repo, text)
        if commit is not None:
            return commit
        if is_commit_id(text):
            raise CommitNotFound(f"commit {repo}@{text} not found")
        if len(text) >= 6 and all(ch in "0123456789abcdef" for ch in text):
            raise CommitNotFound(
                f"commit {repo}@{text} not found (list commits with: tusk list commit {repo})"
            )
        raise _no_branch(repo, text)

    def _need_commit(self, tx: MetaTx, commit_id: str) -> CommitRecord:
        commit = tx.get_commit(commit_id)
        if commit is None:
            raise StorageError(f"commit {commit_id} is referenced but missing (run tusk fsck)")
        return commit

    def _commit_info(self, tx: MetaTx, c: CommitRecord) -> CommitInfo:
        return CommitInfo(
            repo=c.repo,
            id=c.id,
            branch=c.branch,
            parent=c.parent,
            state=c.state,
            description=c.description,
            started_at=c.started_at,
            finished_at=c.finished_at,
            size=c.size,
            files=c.files,
            commit_set=c.commit_set,
            children=sorted(ch.id for ch in tx.children(c.id)),
            branches=sorted(f"{b.repo}@{b.name}" for b in tx.branches_at(c.id)),
            provenance=self._named_commits(tx, tx.commit_provenance(c.id)),
            subvenance=self._named_commits(tx, tx.commit_subvenance(c.id)),
            merge_parent=c.merge_parent,
        )

    def _named_commits(self, tx: MetaTx, ids: Sequence[str]) -> list[str]:
        out = []
        for cid in ids:
            rec = tx.get_commit(cid)
            out.append(_fmt(rec) if rec is not None else f"?@{cid}")
        return sorted(out)

    # Commits: lifecycle

    def start_commit(
        self,
        repo: str,
        branch: str,
        parent: str | None = None,
        description: str = "",
        *,
        commit_id: str | None = None,
        commit_set: str | None = None,
        provenance: Sequence[tuple[str, str]] = (),
    ) -> CommitInfo:
        """An open commit on ``branch``. ``commit_id`` and ``commit_set`` (default: a new id,
        the commit's own set) are given by a transaction, whose commits share its id as their
        set and keep the ids they were promised when it was written. ``provenance``: the
        finished commits, as (repo, ref), its data is computed from (``tusk sql --to``):
        recorded as a job's inputs are, so inspect, lineage and retention follow them."""
        check_branch_name(branch)
        with self.meta.write() as tx:
            self._need_repo(tx, repo)
            self._not_protected(tx, repo, branch, "written to")
            sources = []
            for src_repo, src_ref in provenance:
                src = self._resolve(tx, src_repo, parse_ref(src_ref))
                if not src.finished:
                    raise Conflict(f"provenance {_fmt(src)} is open: finish it first")
                sources.append(src.id)
            b = tx.get_branch(repo, branch, lock=True)
            if b is not None and b.head is not None:
                head = self._need_commit(tx, b.head)
                if not head.finished:
                    raise Conflict(
                        f"parent commit {repo}@{head.id} has not been finished: "
                        f"{repo}@{branch} already has this open commit; finish it first"
                    )
            parent_id = b.head if b is not None else None
            if parent is not None:
                parent_id = self._resolve(tx, repo, parse_ref(parent)).id
            tree, size, files = EMPTY_TREE, 0, 0
            if parent_id is not None:
                p = self._need_commit(tx, parent_id)
                tree, size, files = p.tree, p.size, p.files
            cid = commit_id or new_commit_id()
            record = CommitRecord(
                cid,
                repo,
                branch,
                parent_id,
                tree,
                "open",
                description,
                time.time(),
                None,
                size,
                files,
                commit_set or cid,
            )
            tx.insert_commit(record)
            tx.upsert_branch(BranchRecord(repo, branch, cid, b.created_at if b else time.time()))
            if sources:
                tx.add_commit_provenance(cid, sorted(set(sources)))
            return self._commit_info(tx, record)

    def start_detached_commit(self, repo: str, description: str = "") -> str:
        """An open commit on no branch, empty, with no parent: a datum's ``s3_out`` bucket
        (``tusk.pps.s3io``), written by its id and removed by :meth:`drop_open_commit`."""
        with self.meta.write() as tx:
            self._need_repo(tx, repo)
            cid = new_commit_id()
            now = time.time()
            record = CommitRecord(
                cid, repo, None, None, EMPTY_TREE, "open", description, now, None, 0, 0, cid
            )
            tx.insert_commit(record)
            tx.put_hold(holds.COMMIT, repo, cid, holds.owner())
        return cid

    def finish_commit(self, repo: str, ref: str, description: str | None = None) -> CommitInfo:
        """Finish an open commit. On a branch that checks gate on commit (tusk.pfs.gates),
        they run on it first, outside any transaction: one that fails leaves it open
        (CheckFailed), to be fixed and finished again."""
        with self.meta.write() as tx:
            checked = self._resolve(tx, repo, parse_ref(ref), readable=False)
            names = []
            if checked.branch is not None and not checked.finished:
                names = gates.gating(tx, repo, checked.branch, gates.COMMIT)
            if not names:  # nothing to check: finished in this one transaction
                return self._finish(tx, checked, description, [])
        assert checked.branch is not None
        request = gates.CheckRequest(
            repo, checked.branch, gates.COMMIT, checked.id, checked.tree, names, False,
            checked.size,
        )  # fmt: skip
        runs = gates.run(self.check_runner, request)
        with self.meta.write() as tx:
            commit = self._need_commit(tx, checked.id)
            if not commit.finished and commit.tree != checked.tree:
                raise Conflict(
                    f"commit {_fmt(commit)} changed while its checks ran: finish it again "
                    "to check what it holds now"
                )
            return self._finish(tx, commit, description, runs)

    def _finish(
        self,
        tx: MetaTx,
        commit: CommitRecord,
        description: str | None,
        runs: list[CheckRunInfo],
    ) -> CommitInfo:
        if commit.finished:
            raise CommitFinished(f"commit {_fmt(commit)} has already finished")
        gates.record(tx, runs)
        values: dict[str, object] = {"state": "finished", "finished_at": time.time()}
        if description is not None:
            values["description"] = description
        tx.update_commit(commit.id, **values)
        done = self._need_commit(tx, commit.id)
        self._propagate(tx, done)
        return self._commit_info(tx, done)

    def inspect_commit(self, repo: str, ref: str) -> CommitInfo:
        with self.meta.read() as tx:
            return self._commit_info(tx, self._resolve(tx, repo, parse_ref(ref), readable=False))

    def list_commits(
        self, repo: str, branch: str | None = None, number: int | None = None
    ) -> list[CommitInfo]:
        """Newest first: the branch's history, or every commit of the repo."""
        return list(self.iter_commits(repo, branch, number))

    def iter_commits(
        self,
        repo: str,
        branch: str | None = None,
        number: int | None = None,
        all_parents: bool = False,
    ) -> Iterator[CommitInfo]:
        """:meth:`list_commits`, one at a time; errors raise on the first ``next()``.

        A branch's history follows first parents (the commits made on it), or with
        ``all_parents`` every ancestor, merged lines too, newest first (``tusk log``).
        Commits are read ``COMMIT_BATCH`` per read transaction, and no transaction stays open
        while the caller holds one: a long listing never holds up the store.
        """
        if branch is not None and not all_parents:
            yield from self._history(repo, branch, number)
            return
        from tusk.pfs.merge import ancestors

        with self.meta.read() as tx:
            self._need_repo(tx, repo)
            if branch is None:
                ids = [c.id for c in tx.list_commits(repo)]
            else:
                tip = self._resolve(tx, repo, parse_ref(branch), readable=False).id
                graph = tx.commit_graph(repo)
                ids = sorted(ancestors(graph, [tip]), key=lambda c: (-graph[c][2], c))
        if number:
            ids = ids[:number]
        for start in range(0, len(ids), COMMIT_BATCH):
            with self.meta.read() as tx:
                records = [tx.get_commit(cid) for cid in ids[start : start + COMMIT_BATCH]]
                # One deleted since the listing began is left out, as a new listing would.
                batch = [self._commit_info(tx, c) for c in records if c is not None]
            yield from batch

    def _history(self, repo: str, branch: str, number: int | None) -> Iterator[CommitInfo]:
        """The commit ``branch`` names and its ancestors, newest first, at most ``number``."""
        cid: str | None = None
        last: CommitRecord | None = None
        left = number
        while True:
            batch: list[CommitInfo] = []
            with self.meta.read() as tx:
                if last is None:
                    self._need_repo(tx, repo)
                    ref = parse_ref(branch)
                    b = None if ref.ancestors else tx.get_branch(repo, ref.base)
                    cid = b.head if b else self._resolve(tx, repo, ref, readable=False).id
                else:
                    # A squash since the last batch may have moved it onto another parent.
                    cid = (tx.get_commit(last.id) or last).parent
                while cid is not None and len(batch) < COMMIT_BATCH and (left is None or left > 0):
                    last = self._need_commit(tx, cid)
                    batch.append(self._commit_info(tx, last))
                    cid = last.parent
                    left = None if left is None else left - 1
            yield from batch
            if cid is None or left == 0:
                return

    def wait_commit(
        self,
        repo: str,
        ref: str,
        timeout: float | None = None,
        pause: Callable[[float], None] | None = None,
    ) -> CommitInfo:
        """Wait until the commit ``ref`` names now is finished (a branch is resolved once).

        A commit dropped meanwhile (its job failed or was stopped) raises CommitNotFound.
        """
        first = self.inspect_commit(repo, ref)

        def check() -> tuple[bool, CommitInfo]:
            try:
                info = self.inspect_commit(repo, first.id)
            except CommitNotFound:
                raise CommitNotFound(
                    f"commit {repo}@{first.id} was dropped before it finished"
                ) from None
            return info.finished, info

        still = lambda i: f"commit {repo}@{i.id} is still open"  # noqa: E731
        return poll_until(check, timeout, still, 0.5, pause)

    def delete_commit(self, repo: str, ref: str) -> None:
        """Delete a branch head commit (open or finished); its branches fall back to its parent."""
        with self.meta.write() as tx:
            commit = self._resolve(tx, repo, parse_ref(ref), readable=False)
            self._not_tagged(tx, [commit], "deleted")
            for b in tx.branches_at(commit.id):
                self._not_protected(tx, b.repo, b.name, "moved back")
            if tx.children(commit.id):
                raise InUse(
                    f"commit {_fmt(commit)} has child commits; only a branch head can be deleted"
                )
            heads = tx.branches_at(commit.id)
            if not heads:
                raise InUse(f"commit {_fmt(commit)} is not the head of any branch")
            for b in heads:
                tx.set_branch_head(b.repo, b.name, commit.parent)
            tx.delete_commit(commit.id)

    def squash_commit(self, repo: str, ref: str, description: str | None = None) -> CommitInfo:
        """Merge a finished commit into its parent: the parent takes its content and children."""
        with self.meta.write() as tx:
            commit = self._resolve(tx, repo, parse_ref(ref), readable=False)
            self._not_tagged(tx, [commit], "squashed")
            if not commit.finished:
                raise Conflict(f"commit {_fmt(commit)} is open; finish it before squashing")
            if commit.parent is None:
                raise Conflict(f"commit {_fmt(commit)} has no parent to squash into")
            parent = self._need_commit(tx, commit.parent)
            others = [c.id for c in tx.children(parent.id) if c.id != commit.id]
            if others or tx.branches_at(parent.id):
                raise InUse(
                    f"parent {_fmt(parent)} has other children or branches; squashing would "
                    "change them"
                )
            if description is None:
                description = "\n".join(d for d in (parent.description, commit.description) if d)
            tx.update_commit(
                parent.id,
                tree=commit.tree,
                size=commit.size,
                files=commit.files,
                description=description,
                finished_at=commit.finished_at,
            )
            tx.reparent_children(commit.id, parent.id)
            for b in tx.branches_at(commit.id):
                tx.set_branch_head(b.repo, b.name, parent.id)
            tx.delete_commit(commit.id)
            return self._commit_info(tx, self._need_commit(tx, parent.id))

    def inspect_commit_set(self, commit_set: str) -> list[CommitInfo]:
        with self.meta.read() as tx:
            records = tx.commits_in_set(commit_set)
            if not records:
                raise CommitNotFound(f"commit set {commit_set} not found")
            return [self._commit_info(tx, c) for c in records]

    def squash_commit_set(self, commit_set: str) -> list[str]:
        """Remove a commit set's commits from history, as Pachyderm's SquashCommitSet: each
        one's children take its parent as theirs, and keep their data (every commit holds its
        whole tree). Every commit must be finished, have children, and be no branch's head;
        else nothing changes. Returns the ids removed."""
        return self._remove_set(commit_set, squash=True)

    def drop_commit_set(self, commit_set: str) -> list[str]:
        """Remove a commit set's commits and their changes, as Pachyderm's DropCommitSet: each
        must be the head of its branches with no children; the branches fall back to the
        parents. Else nothing changes. Returns the ids removed."""
        return self._remove_set(commit_set, squash=False)

    def _remove_set(self, commit_set: str, squash: bool) -> list[str]:
        with self.meta.write() as tx:
            records = tx.commits_in_set(commit_set)
            if not records:
                raise CommitNotFound(f"commit set {commit_set} not found")
            self._not_tagged(tx, records, "squashed" if squash else "dropped")
            for c in records:
                children = tx.children(c.id)
                heads = tx.branches_at(c.id)
                if squash and not c.finished:
                    raise Conflict(f"commit {_fmt(c)} is open; finish it before squashing")
                if squash and (not children or heads):
                    raise Conflict(
                        f"commit {_fmt(c)} is the head of a branch: squashing would drop its "
                        "data; drop the commit set instead"
                    )
                if not squash and children:
                    raise Conflict(
                        f"commit {_fmt(c)} has child commits: dropping it would change them; "
                        "squash the commit set instead"
                    )
            for c in records:
                for b in tx.branches_at(c.id):
                    self._not_protected(tx, b.repo, b.name, "moved back")
            for c in records:
                for b in tx.branches_at(c.id):
                    tx.set_branch_head(b.repo, b.name, c.parent)
                tx.reparent_children(c.id, c.parent)
                tx.delete_commit_provenance(c.id)
                tx.delete_commit(c.id)
            return [c.id for c in records]

    # Data where it lives (tusk.pfs.imports): import by reference, materialize, check

    def import_objects(
        self,
        repo: str,
        ref: str,
        path: str,
        url: str,
        *,
        exclude: Sequence[str] = (),
        endpoint: str | None = None,
        description: str = "",
    ) -> tuple[CommitInfo, int]:
        """One commit of a file per object below ``url`` (``s3://bucket/prefix``) at
        ``path``, each referring to its object where it is (no byte copied)."""
        from tusk.pfs import imports

        return imports.import_objects(
            self, repo, ref, path, url, exclude=exclude, endpoint=endpoint,
            description=description,
        )  # fmt: skip

    def materialize(
        self, repo: str, ref: str, path: str = "/", description: str = ""
    ) -> tuple[CommitInfo | None, int]:
        """Copy the referenced files at or below ``path`` into the store, in a new commit."""
        from tusk.pfs import imports

        return imports.materialize(self, repo, ref, path, description)

    def check_references(self) -> tuple[int, list[tuple[str, str]]]:
        """(references checked, (url, what is wrong) of each whose object changed or went)."""
        from tusk.pfs import imports

        checked, broken = imports.check_references(self)
        return checked, [(b.url, b.problem) for b in broken]

    # Merge (tusk.pfs.merge)

    def merge(
        self,
        repo: str,
        source: str,
        into: str,
        *,
        message: str | None = None,
        strategy: str = "fail",
        resolve: Mapping[str, str | Source] | None = None,
        dry_run: bool = False,
    ) -> MergeResult:
        """Merge the commit ``source`` names into branch ``into`` of ``repo``: a three-way
        merge at file level against their merge base, as one new commit on ``into`` with two
        parents (its head, then the source), which downstream pipelines see as any commit.

        A path both sides changed differently is a conflict: ``resolve`` settles one path
        (``"ours"``, ``"theirs"``, or a source whose content it takes), ``strategy`` the rest
        (``ours`` keeps the branch's version, ``theirs`` takes the source's, ``fail`` refuses
        the merge with MergeConflict, committing nothing). More than one merge base (a
        criss-cross merge) needs ``ours`` or ``theirs``; the newest base is used.
        """
        if strategy not in MERGE_STRATEGIES:
            raise InvalidArgument(
                f"unknown merge strategy {strategy!r}: use one of {', '.join(MERGE_STRATEGIES)}"
            )
        check_branch_name(into)
        wanted = self._merge_resolutions(resolve or {})
        index: Sequence[IndexEntry] = ()
        durable: Callable[[], None] | None = None
        files = {p: v for p, v in wanted.items() if not isinstance(v, str)}
        contents: dict[tuple[str, ...], tuple[ChunkRef, ...]] = {}
        if files and not dry_run:
            with self.chunks.writer() as writer:
                for parts, src in files.items():
                    contents[parts] = tuple(src.write_to(writer, None))
                index, durable = writer.flush_deferred()
        with self.meta.read() if dry_run else self.meta.write() as tx:
            merged = self._merge(
                tx, repo, source, into, message, strategy, wanted, contents, index, durable,
                dry_run,
            )  # fmt: skip
        if isinstance(merged, MergeResult):
            return merged
        candidate, names, result = merged  # gated: land it once its checks passed
        info, runs = self._land(candidate, into, gates.MERGE, names)
        return replace(result, commit=info, checks=runs)

    def branch_at_copy(self, repo: str, branch: str, source: str, description: str) -> CommitInfo:
        """A new branch ``repo@branch`` whose head is a finished copy of commit ``source``
        (same tree, same parent; open or on no branch, such as a check's candidate). Nothing
        starts downstream: a check that runs a pipeline on the candidate starts it itself."""
        check_branch_name(branch)
        with self.meta.write() as tx:
            src = self._need_commit(tx, source)
            if src.repo != repo:
                raise InvalidArgument(f"commit {source} is not a commit of {repo}")
            if tx.get_branch(repo, branch) is not None:
                raise AlreadyExists(f"branch {repo}@{branch} already exists")
            now = time.time()
            cid = new_commit_id()
            record = CommitRecord(
                cid, repo, branch, src.parent, src.tree, "finished", description, now, now,
                src.size, src.files, cid,
            )  # fmt: skip
            tx.insert_commit(record)
            tx.upsert_branch(BranchRecord(repo, branch, cid, now))
            return self._commit_info(tx, record)

    def land_together(
        self, moves: Sequence[tuple[str, str, str, str | None]], gate: tuple[str, str] | None
    ) -> list[CommitInfo]:
        """Move branches together, in one transaction: each (repo, from, to, expected) makes
        ``repo@to`` (at ``expected`` until now) point at ``repo@from``'s head, and the commits
        ``from`` made since ``expected`` are recorded as ``to``'s. Conflict, and nothing moves,
        if any ``to`` moved meanwhile. ``gate`` (repo, branch): the merge checks of that
        branch run on its new head first (``tusk merge --run-pipelines``, tusk.pfs.gates).
        Returns the new heads. No pipeline starts: the moved commits are its outputs."""
        heads: dict[tuple[str, str], str | None] = {}
        with self.meta.read() as tx:
            for repo, src, _dst, _expected in moves:
                heads[(repo, src)] = self._need_branch(tx, repo, src).head
            names: list[str] = []
            if gate is not None:
                names = gates.gating(tx, gate[0], gate[1], gates.MERGE)
                src = next(m[1] for m in moves if (m[0], m[2]) == gate)
                head = self._need_commit(tx, heads[(gate[0], src)] or "")
        runs: list[CheckRunInfo] = []
        if names and gate is not None:
            request = gates.CheckRequest(
                gate[0], gate[1], gates.MERGE, head.id, head.tree, names, True, head.size
            )
            runs = gates.run(self.check_runner, request)
        with self.meta.write() as tx:
            gates.record(tx, runs)
            out = []
            for repo, src, dst, expected in moves:
                b = tx.get_branch(repo, dst, lock=True)
                if (b.head if b is not None else None) != expected:
                    raise Conflict(
                        f"{repo}@{dst} moved while the pipelines ran: nothing was moved; "
                        "merge again"
                    )
                new = heads[(repo, src)]
                cid = new
                while cid is not None and cid != expected:
                    c = self._need_commit(tx, cid)
                    if c.branch == src:
                        tx.update_commit(cid, branch=dst)
                    cid = c.parent
                created = b.created_at if b is not None else time.time()
                tx.upsert_branch(BranchRecord(repo, dst, new, created))
                if new is not None:
                    out.append(self._commit_info(tx, self._need_commit(tx, new)))
            return out

    @staticmethod
    def _merge_resolutions(
        resolve: Mapping[str, str | Source],
    ) -> dict[tuple[str, ...], str | Source]:
        out: dict[tuple[str, ...], str | Source] = {}
        for path, how in resolve.items():
            parts = split_path(path)
            if not parts:
                raise InvalidArgument("--resolve needs a path below /: give path=ours|theirs|FILE")
            if isinstance(how, str) and how not in ("ours", "theirs"):
                raise InvalidArgument(
                    f"cannot resolve {path} with {how!r}: give ours, theirs or a file"
                )
            out[parts] = how
        return out

    def _merge(
        self,
        tx: MetaTx,
        repo: str,
        source: str,
        into: str,
        message: str | None,
        strategy: str,
        wanted: dict[tuple[str, ...], str | Source],
        contents: dict[tuple[str, ...], tuple[ChunkRef, ...]],
        index: Sequence[IndexEntry],
        durable: Callable[[], None] | None,
        dry_run: bool,
    ) -> MergeResult | tuple[CommitRecord, list[str], MergeResult]:
        """The merge in ``tx``: its result, or on a branch that checks gate, (the candidate
        merge commit on no branch, the checks to run on it, the result without a commit)."""
        from tusk.pfs.merge import merge_bases, merge_trees

        self._need_repo(tx, repo)
        target = tx.get_branch(repo, into, lock=not dry_run)
        if target is None:
            raise _no_branch(repo, into)
        if target.head is None:
            raise Conflict(f"branch {repo}@{into} has no commits to merge into")
        if tx.branch_provenance(repo, into):
            raise InvalidArgument(
                f"branch {repo}@{into} is computed from other branches (a pipeline's output): "
                "merge into the branches it reads instead"
            )
        ours = self._need_commit(tx, target.head)
        src_ref = parse_ref(source)
        theirs = self._resolve(tx, repo, src_ref, readable=False)
        for c, what in ((ours, f"{repo}@{into}"), (theirs, f"{repo}@{source}")):
            if not c.finished:
                raise Conflict(f"{what} is an open commit ({c.id}): finish it before merging")
        if theirs.id == ours.id or (src_ref.base == into and not src_ref.ancestors):
            raise InvalidArgument(f"cannot merge {repo}@{source} into itself: name another branch")
        graph = tx.commit_graph(repo)
        bases = merge_bases(graph, ours.id, theirs.id)
        if not bases:
            raise InvalidArgument(
                f"{repo}@{source} and {repo}@{into} have unrelated histories (no common "
                "commit): there is nothing to merge against; copy the files instead"
            )
        result = functools.partial(MergeResult, repo, theirs.id, into, bases[0], bases)
        if theirs.id in bases:  # the branch already holds the source
            return result(0, [], None, dry_run, up_to_date=True)
        if len(bases) > 1 and strategy == "fail":
            raise MergeConflict(
                f"{repo}@{source} and {repo}@{into} have {len(bases)} merge bases (a criss-cross "
                f"merge: {', '.join(bases)}): give --strategy ours or theirs"
            )
        reader = self.reader(tx)
        base = self._need_commit(tx, bases[0])
        edits, found = merge_trees(reader, base.tree, ours.tree, theirs.tree)
        unknown = set(wanted) - {tc.parts for tc in found}
        if unknown:
            listed = ", ".join(sorted("/" + "/".join(p) for p in unknown))
            raise InvalidArgument(
                f"--resolve names paths that are not in conflict: {listed} (see the conflicts "
                "with --dry-run)"
            )
        conflicts: list[MergeConflictInfo] = []
        puts: dict[tuple[str, ...], tuple[ChunkRef, ...]] = {}
        for tc in found:
            how = wanted.get(tc.parts, None if strategy == "fail" else strategy)
            if how == "theirs":
                edits.append((tc.parts, tc.theirs))
            elif how is not None and not isinstance(how, str):
                how = "file"
                puts[tc.parts] = contents.get(tc.parts, ())
            conflicts.append(_conflict_info(tc, how))
        unresolved = [c for c in conflicts if c.resolution is None]
        if unresolved and not dry_run:
            shown = ", ".join(c.path for c in unresolved[:10])
            more = f" and {len(unresolved) - 10} more" if len(unresolved) > 10 else ""
            raise MergeConflict(
                f"merging {repo}@{source} into {into}: {len(unresolved)} conflicting path(s): "
                f"{shown}{more}; resolve them with --resolve PATH=ours|theirs|FILE or "
                "--strategy ours|theirs (list them with --dry-run)"
            )
        taken = len(edits) - sum(1 for c in conflicts if c.resolution == "theirs")
        if dry_run:
            return result(taken, conflicts, None, True)
        editor = TreeEditor(reader, ours.tree, self.tree_params)
        for parts, entry in edits:
            kind = editor.kind(parts)
            if entry is None:
                if kind is not None:
                    editor.delete(parts)
                continue
            if kind is not None and (kind == "file") != isinstance(entry, FileEntry):
                editor.delete(parts)  # a file where a folder was, or the other way round
            editor.put(parts, entry)
        for parts, chunks in puts.items():
            self._apply(tx, reader, editor, PutOp(parts, chunks))
        root, size, nfiles = editor.finish()
        fresh = self.chunks.index_packs(tx, index)
        named = {d for chunks in puts.values() for d, _ in chunks} - fresh
        if named and tx.touch_chunks_count(list(named)) < len(named):
            raise StorageError("some chunks of a --resolve file vanished; retry the merge")
        tx.put_nodes({h: self.codec.pack(raw) for h, raw in editor.new_nodes.items()})
        if durable is not None:
            durable()
        now = time.time()
        cid = new_commit_id()
        names = gates.gating(tx, repo, into, gates.MERGE)
        record = CommitRecord(
            cid, repo, None if names else into, ours.id, root, "open" if names else "finished",
            message if message is not None else f"merge {repo}@{source} into {into}",
            now, None if names else now, size, nfiles, cid, merge_parent=theirs.id,
        )  # fmt: skip
        tx.insert_commit(record)
        if names:
            tx.put_hold(holds.COMMIT, repo, cid, holds.owner())
            return record, names, result(taken, conflicts, None)
        tx.set_branch_head(repo, into, cid)
        self._propagate(tx, record)
        return result(taken, conflicts, self._commit_info(tx, record))

    # Writes

    def put_files(
        self,
        repo: str,
        ref: str,
        items: Iterable[tuple[str | tuple[str, ...], Source]],
        *,
        append: bool = False,
        description: str = "",
        progress: Progress | None = None,
    ) -> PutResult:
        """Store every (path, source) and apply them as one change to the branch or open commit.

        A path is a string, or a tuple of already split segments (checked all the same).
        """
        with gc_paused():  # many small objects, no cycles: see tusk.gcpause
            return self._put_files(repo, ref, items, append, description, progress)

    def put_objects(
        self,
        repo: str,
        ref: str,
        items: Sequence[tuple[str, Source]],
        description: str = "",
        also: Callable[[MetaTx, list[bytes]], None] | None = None,
    ) -> PutResult:
        """:meth:`put_files` for the S3 gateway, with ``also(tx, content_ids)`` (the content id
        of each file put) run inside the commit's transaction, to record ETags."""
        with gc_paused():
            return self._put_files(repo, ref, items, False, description, None, also)

    def _put_files(
        self,
        repo: str,
        ref: str,
        items: Iterable[tuple[str | tuple[str, ...], Source]],
        append: bool,
        description: str,
        progress: Progress | None,
        also: Callable[[MetaTx, list[bytes]], None] | None = None,
    ) -> PutResult:
        # Fail before uploading anything if the target cannot be written.
        start_tree = self._check_writable(repo, ref)
        if append:
            return self._put_appending(repo, ref, start_tree, items, description, progress)
        from tusk.pfs import fanout  # loads with a put, not with every command

        # Many local files are written by forked helpers and this process together.
        listed, lazy = fanout.gather(items)
        helpers = fanout.Helpers.start(self.chunks, listed)
        mine: Iterable[tuple[int, tuple[str | tuple[str, ...], Source]]] = enumerate(listed)
        if lazy is not None:
            mine = enumerate(lazy)
        elif helpers is not None:
            mine = ((pos, listed[pos]) for pos in helpers.positions())
        puts: list[tuple[int, tuple[str, ...], Sequence[ChunkRef]]] = []
        try:
            with self.chunks.writer() as writer:
                for pos, (path, source) in mine:
                    parts = fanout.item_parts(path)
                    puts.append((pos, parts, source.write_to(writer, progress)))
                writer.seal()  # its last pack goes to disk while the helpers finish
                done = helpers.collect() if helpers is not None else None
                theirs = [pack.id for pack, _ in done.index] if done is not None else []
                index, durable = writer.flush_deferred(theirs)
            stats = writer.stats()
            if done is not None:
                if progress is not None:
                    progress(done.stats.bytes_in)
                puts.extend(done.files)
                puts.sort(key=lambda put: put[0])  # a path given twice: the last one wins
                index = [*index, *done.index]
                stats += done.stats
            ops = [PutOp(parts, tuple(chunks)) for _, parts, chunks in puts]
            hook = None
            if also is not None:
                ids = [content_id(op.chunks) for op in ops]
                hook = lambda tx: also(tx, ids)  # noqa: E731 - run inside modify's transaction
            commit = self.modify(repo, ref, ops, description, index, durable, hook)
        finally:
            if helpers is not None:
                helpers.cancel()  # after the commit: a forked process takes a while to exit
        return PutResult(commit, len(ops), stats.bytes_in, stats.new_chunks, stats.bytes_stored)

    def _put_appending(
        self,
        repo: str,
        ref: str,
        base: bytes,
        items: Iterable[tuple[str | tuple[str, ...], Source]],
        description: str,
        progress: Progress | None,
    ) -> PutResult:
        from tusk.pfs import fanout

        reader = self.reader()
        appends: dict[tuple[str, ...], tuple[bytes | None, tuple[ChunkRef, ...]]] = {}
        with self.chunks.writer() as writer:
            for path, source in items:
                parts = fanout.item_parts(path)
                self._append(reader, writer, base, parts, source, progress, appends)
            index, durable = writer.flush_deferred()
        ops = [PutOp(p, chunks, True, expect) for p, (expect, chunks) in appends.items()]
        stats = writer.stats()
        commit = self.modify(repo, ref, ops, description, index, durable)
        return PutResult(commit, len(ops), stats.bytes_in, stats.new_chunks, stats.bytes_stored)

    def _append(
        self,
        reader: TreeReader,
        writer: ChunkWriter,
        base: bytes,
        parts: tuple[str, ...],
        source: Source,
        progress: Progress | None,
        appends: dict[tuple[str, ...], tuple[bytes | None, tuple[ChunkRef, ...]]],
    ) -> None:
        """Add ``source`` to the end of the file at ``parts`` as this upload knows it."""
        if parts in appends:
            expect, current = appends[parts]
            writer.flush()  # its last chunk may still sit in this upload's unsealed pack
        else:
            existing = reader.lookup(base, parts)
            if isinstance(existing, DirEntry):
                raise PathConflict(f"/{'/'.join(parts)} is a directory; give a file path")
            expect = existing.hash if existing is not None else None
            current = reader.chunks(existing) if existing is not None else ()
        if current:
            # Content-defined cuts restart at every boundary, so chunking the old last chunk
            # plus the new bytes yields exactly the chunks a fresh put of the whole file would.
            prefix = b"".join(self.chunks.read_chunks([current[-1]]))
            added = source.write_to(writer, progress, prefix=prefix)
            appends[parts] = (expect, current[:-1] + tuple(added))
        else:
            appends[parts] = (expect, tuple(source.write_to(writer, progress)))

    def delete_files(
        self, repo: str, ref: str, paths: Sequence[str], description: str = ""
    ) -> CommitInfo:
        return self.modify(repo, ref, [DeleteOp(split_path(p)) for p in paths], description)

    def copy_file(self, src: Address, dst_repo: str, dst_ref: str, dst_path: str) -> CommitInfo:
        if src.path is None:
            raise InvalidArgument("copy needs a source path: repo@ref:/path")
        return self.modify(dst_repo, dst_ref, [CopyOp(src, split_path(dst_path))])

    def modify_files(
        self, repo: str, ref: str, changes: Sequence[Change], description: str = ""
    ) -> CommitInfo:
        """Deletes and copies as one commit, in one transaction: all or nothing. Each change is
        ``("delete", path)`` (a path that is not there is skipped) or ``("copy", source, path)``
        (``source`` an address, any repo or commit: nothing is read or written but the tree)."""
        from tusk.pfs.refs import parse_address

        check_changes(changes)
        ops: list[Op] = []
        for change in changes:
            if change[0] == "delete":
                ops.append(DeleteOp(split_path(change[1]), missing_ok=True))
            else:
                src = parse_address(change[1])
                if src.path is None:
                    raise InvalidArgument(f"copy needs a source path: {change[1]} has none")
                ops.append(CopyOp(src, split_path(change[2])))
        return self.modify(repo, ref, ops, description)

    def _check_writable(self, repo: str, ref: str) -> bytes:
        """Fail early if ``ref`` cannot be written; return the tree a write would start from."""
        with self.meta.read() as tx:
            return self._base_tree(tx, *self._write_target(tx, repo, parse_ref(ref)))

    def _base_tree(
        self, tx: MetaTx, open_commit: CommitRecord | None, branch: BranchRecord | None
    ) -> bytes:
        if open_commit is not None:
            return open_commit.tree
        if branch is not None and branch.head is not None:
            return self._need_commit(tx, branch.head).tree
        return EMPTY_TREE

    def _write_target(
        self, tx: MetaTx, repo: str, ref: Ref
    ) -> tuple[CommitRecord | None, BranchRecord | None]:
        """(open commit to write into, or None for a new commit on the branch; the branch)."""
        self._need_repo(tx, repo)
        if ref.ancestors:
            raise InvalidArgument(
                f"cannot write to {repo}@{ref}: write to a branch or an open commit"
            )
        branch = tx.get_branch(repo, ref.base, lock=True)
        if branch is None:
            commit = self._lookup_commit(tx, repo, ref.base)
            if commit is None and is_commit_id(ref.base):
                raise CommitNotFound(f"commit {repo}@{ref.base} not found")
            if commit is not None:
                if commit.branch is not None and not commit.finished:
                    self._not_protected(tx, repo, commit.branch, "written to")
                if commit.finished:
                    raise CommitFinished(
                        f"commit {_fmt(commit)} is finished and cannot change; "
                        "write to a branch or start a new commit"
                    )
                return commit, None
            check_branch_name(ref.base)
            return None, None
        self._not_protected(tx, repo, branch.name, "written to")
        if branch.head is not None:
            head = self._need_commit(tx, branch.head)
            if not head.finished:
                return head, branch
        return None, branch

    def modify(
        self,
        repo: str,
        ref: str,
        ops: Sequence[Op],
        description: str = "",
        index: Sequence[IndexEntry] = (),
        durable: Callable[[], None] | None = None,
        also: Callable[[MetaTx], None] | None = None,
    ) -> CommitInfo:
        """Apply ops in one transaction: into the open commit, or as a new finished commit.

        ``index`` holds the chunk index rows of packs this upload wrote; they are inserted
        here, with the tree that names them. ``durable`` returns once those packs are on disk:
        the tree is built while the disk flushes, and the transaction waits for it before it
        commits, so no committed row ever names data that a crash could lose. Every other
        chunk the new files name is touched inside the transaction, and the commit fails if
        one is gone: so a gc can neither have removed one already nor remove one later (it
        spares what was touched after it started). ``also`` writes more rows in the same
        transaction (the S3 gateway's ETags of the files it puts).
        """
        parsed = parse_ref(ref)
        with self.meta.write() as tx:
            if also is not None:
                also(tx)
            open_commit, branch = self._write_target(tx, repo, parsed)
            base_tree = self._base_tree(tx, open_commit, branch)
            reader = self.reader(tx)
            editor = TreeEditor(reader, base_tree, self.tree_params)
            for op in ops:
                self._apply(tx, reader, editor, op)
            root, size, files = editor.finish()
            fresh = self.chunks.index_packs(tx, index)
            named = {d for op in ops if isinstance(op, PutOp) for d, _ in op.chunks} - fresh
            if named and tx.touch_chunks_count(list(named)) < len(named):
                raise StorageError(
                    "some chunks of this upload vanished before the commit (a gc ran with a "
                    "grace period shorter than the upload); retry the put"
                )
            tx.put_nodes({h: self.codec.pack(raw) for h, raw in editor.new_nodes.items()})
            if durable is not None:
                durable()
            now = time.time()
            if open_commit is not None:
                tx.update_commit(open_commit.id, tree=root, size=size, files=files)
                return self._commit_info(tx, self._need_commit(tx, open_commit.id))
            cid = new_commit_id()
            parent = branch.head if branch is not None else None
            names = gates.gating(tx, repo, parsed.base, gates.COMMIT)
            if names:  # a candidate on no branch, landed once its checks passed
                candidate = CommitRecord(
                    cid, repo, None, parent, root, "open", description, now, None, size, files,
                    cid,
                )  # fmt: skip
                tx.insert_commit(candidate)
                tx.put_hold(holds.COMMIT, repo, cid, holds.owner())
            else:
                record = CommitRecord(
                    cid, repo, parsed.base, parent, root, "finished", description, now, now,
                    size, files, cid,
                )  # fmt: skip
                tx.insert_commit(record)
                created = branch.created_at if branch is not None else now
                tx.upsert_branch(BranchRecord(repo, parsed.base, cid, created))
                self._propagate(tx, record)
                return self._commit_info(tx, record)
        return self._land(candidate, parsed.base, gates.COMMIT, names)[0]

    def _land(
        self, candidate: CommitRecord, branch: str, trigger: str, names: list[str]
    ) -> tuple[CommitInfo, list[CheckRunInfo]]:
        """Run the checks ``names`` on ``candidate`` (an open commit on no branch) and, if all
        passed and ``repo@branch`` is still at the candidate's parent, make it the branch's
        finished head; else drop it, and the branch stays where it was (tusk.pfs.gates)."""
        repo = candidate.repo
        request = gates.CheckRequest(
            repo, branch, trigger, candidate.id, candidate.tree, names, True, candidate.size
        )
        try:
            runs = gates.run(self.check_runner, request)
        except BaseException:
            self.drop_open_commit(candidate.id)
            raise
        with self.meta.write() as tx:
            b = tx.get_branch(repo, branch, lock=True)
            moved = (b.head if b is not None else None) != candidate.parent
            if not moved:
                now = time.time()
                gates.record(tx, runs)
                tx.update_commit(candidate.id, branch=branch, state="finished", finished_at=now)
                tx.drop_hold(holds.COMMIT, repo, candidate.id)
                created = b.created_at if b is not None else now
                tx.upsert_branch(BranchRecord(repo, branch, candidate.id, created))
                done = self._need_commit(tx, candidate.id)
                self._propagate(tx, done)
                info = self._commit_info(tx, done)
        if moved:
            self.drop_open_commit(candidate.id)
            raise Conflict(
                f"{repo}@{branch} moved while the checks of this {trigger} ran: nothing was "
                "committed; retry it on the branch as it is now"
            )
        return info, runs

    def _apply(self, tx: MetaTx, reader: TreeReader, editor: TreeEditor, op: Op) -> None:
        if isinstance(op, PutOp):
            if op.check:
                existing = editor.get_file(op.parts)
                if (existing.hash if existing is not None else None) != op.expect:
                    raise Conflict(
                        f"/{'/'.join(op.parts)} changed while appending to it; retry the append"
                    )
            entry, nodes = make_file_entry(op.chunks)
            editor.add_nodes(nodes)
            editor.put(op.parts, entry)
        elif isinstance(op, DeleteOp):
            if not (op.missing_ok and op.parts and editor.kind(op.parts) is None):
                editor.delete(op.parts)
        elif isinstance(op, PlaceOp):
            editor.put(op.parts, op.entry)
        else:
            assert op.src.path is not None
            src_commit = self._resolve(tx, op.src.repo, op.src.ref)
            found = reader.lookup(src_commit.tree, split_path(op.src.path))
            if found is None:
                raise FileNotFound(f"no such file or directory {op.src}")
            self._copy_into(reader, editor, op.parts, found)

    def _copy_into(
        self, reader: TreeReader, editor: TreeEditor, parts: tuple[str, ...], entry: Entry
    ) -> None:
        # Copying a directory onto an existing one merges them, file by file, like put file.
        if isinstance(entry, DirEntry) and editor.kind(parts) == "dir":
            for name, child in reader.iter_dir(entry.node):
                self._copy_into(reader, editor, (*parts, name), child)
        elif isinstance(entry, DirEntry) and not parts:
            raise PathConflict("cannot copy a directory onto /: give a directory path")
        else:
            editor.put(parts, entry)

    # Commit sets: provenance and propagation (Pachyderm's global ids)

    def _downstream(self, tx: MetaTx, *starts: tuple[str, str]) -> list[tuple[str, str]]:
        """Branches whose provenance reaches any of ``starts`` (each a (repo, branch)), in an
        order where inputs come first; the starts themselves left out."""
        order: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set(starts)

        def visit(node: tuple[str, str]) -> None:
            for sub in tx.branch_subvenance(*node):
                if sub not in seen:
                    seen.add(sub)
                    visit(sub)
            order.append(node)

        for start in starts:
            visit(start)
        order.reverse()  # the reverse of a depth-first post-order: inputs first
        return [node for node in order if node not in starts]

    def _open_in_set(
        self,
        tx: MetaTx,
        repo: str,
        branch: str,
        commit_set: str,
        in_set: dict[tuple[str, str | None], CommitRecord],
    ) -> CommitRecord | None:
        """Open a commit on a branch with provenance, computed from the set's input commits.

        Each provenance branch contributes its commit in this commit set if it has one, else
        its head; a branch without any commit contributes nothing. The new commit starts with
        its parent's tree (a job edits it) and names its inputs as commit provenance.
        """
        b = tx.get_branch(repo, branch, lock=True)
        if b is None:
            return None
        sources: list[str] = []
        for prov in tx.branch_provenance(repo, branch):
            src = in_set.get(prov)
            if src is None:
                head = tx.get_branch(*prov)
                if head is None or head.head is None:
                    continue
                src = self._need_commit(tx, head.head)
            sources.append(src.id)
        if not sources:
            return None
        parent = self._need_commit(tx, b.head) if b.head is not None else None
        record = CommitRecord(
            new_commit_id(),
            repo,
            branch,
            parent.id if parent else None,
            parent.tree if parent else EMPTY_TREE,
            "open",
            "",
            time.time(),
            None,
            parent.size if parent else 0,
            parent.files if parent else 0,
            commit_set,
        )
        tx.insert_commit(record)
        tx.set_branch_head(repo, branch, record.id)
        tx.add_commit_provenance(record.id, sources)
        in_set[(repo, branch)] = record
        return record

    def _propagate(self, tx: MetaTx, commit: CommitRecord) -> None:
        """Open a commit in ``commit``'s set on every branch downstream of its branch, then
        move the branches whose triggers follow it (a finished commit is what fires them)."""
        if commit.branch is None:
            return
        if tx.branch_subvenance(commit.repo, commit.branch):
            in_set = {(c.repo, c.branch): c for c in tx.commits_in_set(commit.commit_set)}
            for repo, branch in self._downstream(tx, (commit.repo, commit.branch)):
                if (repo, branch) not in in_set:
                    self._open_in_set(tx, repo, branch, commit.commit_set, in_set)
        moved: list[tuple[str, str]] = []
        self._fire_following(tx, commit.repo, commit.branch, self.clock(), moved)
        self._propagate_moved(tx, moved)

    # Branch triggers (tusk.pfs.triggers): moving a branch as a finished commit does

    def _fire_following(
        self, tx: MetaTx, repo: str, branch: str, now: float, moved: list[tuple[str, str]]
    ) -> None:
        """Move every branch whose trigger follows ``repo@branch`` and holds, and so on down
        the chain; the moved branches are added to ``moved``."""
        for record in tx.triggers_from(repo, branch):
            if (repo, record.branch) not in moved and self._fire(tx, record, now):
                moved.append((repo, record.branch))
                self._fire_following(tx, repo, record.branch, now, moved)

    def _fire(self, tx: MetaTx, record: triggers.TriggerRecord, now: float) -> bool:
        """Move ``record``'s branch to the newest finished commit of the branch it follows if
        its conditions hold; whether it moved."""
        source = tx.get_branch(record.repo, record.from_branch)
        new = triggers.newest_finished(tx, source.head if source is not None else None)
        target = tx.get_branch(record.repo, record.branch, lock=True)
        if new is None or target is None or target.head == new.id:
            return False
        old = tx.get_commit(target.head) if target.head is not None else None
        if old is not None and not old.finished:
            return False  # someone writes to it: move it once that commit is finished
        if not triggers.holds(tx, record, old, new, now):
            return False
        tx.set_branch_head(record.repo, record.branch, new.id)
        tx.mark_trigger_fired(record.repo, record.branch, now)
        return True

    def _propagate_moved(self, tx: MetaTx, moved: Sequence[tuple[str, str]]) -> None:
        """Open a commit on every branch downstream of the branches a trigger moved, in one new
        commit set (as Pachyderm: a trigger is a change of its own), inputs first."""
        if not moved:
            return
        commit_set = new_commit_id()
        in_set: dict[tuple[str, str | None], CommitRecord] = {}
        for repo, branch in self._downstream(tx, *moved):
            if (repo, branch) not in in_set:
                self._open_in_set(tx, repo, branch, commit_set, in_set)

    def fire_cron_triggers(self, now: float | None = None) -> list[str]:
        """Move the branches whose cron trigger is due (a tick since it last fired) and whose
        other conditions hold; ``now`` (epoch seconds, default the clock) lets tests bring
        their own (or set ``clock``, which commits use too). The scheduler calls this on its
        loop. Returns the moved ``repo@branch``es.

        Cheap when nothing is due: one read; a due trigger with nothing new to move to, or
        whose other conditions failed on the same heads before, costs no write.
        """
        now = self.clock() if now is None else now
        due: list[triggers.TriggerRecord] = []
        with self.meta.read() as tx:
            for record in tx.cron_triggers():
                if not triggers.cron_due(record, now):
                    continue
                source = tx.get_branch(record.repo, record.from_branch)
                new = triggers.newest_finished(tx, source.head if source is not None else None)
                target = tx.get_branch(record.repo, record.branch)
                if new is None or target is None or target.head == new.id:
                    continue
                idle = (new.id, target.head, record)
                if self._cron_idle.get((record.repo, record.branch)) == idle:
                    continue  # the same heads failed the other conditions before
                due.append(record)
        fired: list[str] = []
        for record in due:
            with self.meta.write() as tx:
                current = tx.get_trigger(record.repo, record.branch)
                if current is None:
                    continue  # deleted meanwhile
                moved: list[tuple[str, str]] = []
                if self._fire(tx, current, now):
                    moved.append((current.repo, current.branch))
                    self._fire_following(tx, current.repo, current.branch, now, moved)
                    self._propagate_moved(tx, moved)
                else:
                    source = tx.get_branch(current.repo, current.from_branch)
                    target = tx.get_branch(current.repo, current.branch)
                    new = triggers.newest_finished(tx, source.head if source else None)
                    if new is not None and target is not None:
                        idle = (new.id, target.head, current)
                        self._cron_idle[(current.repo, current.branch)] = idle
            fired.extend(f"{r}@{b}" for r, b in moved)
        return fired

    def trigger_branch(
        self, repo: str, branch: str, *, defer_if_open: bool = False
    ) -> CommitInfo | None:
        """Start a new commit set at a branch with provenance: an open commit computed from its
        inputs' heads, and one on every branch downstream. None if no input has a commit.

        With ``defer_if_open``, nothing starts while an input's head is still open: finishing
        that commit propagates here anyway (in its own commit set).
        """
        with self.meta.write() as tx:
            self._need_branch(tx, repo, branch)
            if defer_if_open:
                for prov in tx.branch_provenance(repo, branch):
                    head = tx.get_branch(*prov)
                    tip = head.head if head is not None else None
                    if tip is not None and not self._need_commit(tx, tip).finished:
                        return None
            commit_set = new_commit_id()
            in_set: dict[tuple[str, str | None], CommitRecord] = {}
            record = self._open_in_set(tx, repo, branch, commit_set, in_set)
            if record is None:
                return None
            for down_repo, down_branch in self._downstream(tx, (repo, branch)):
                if (down_repo, down_branch) not in in_set:
                    self._open_in_set(tx, down_repo, down_branch, commit_set, in_set)
            return self._commit_info(tx, record)

    def commit_record(self, commit_id: str) -> CommitRecord:
        with self.meta.read() as tx:
            return self._need_commit(tx, commit_id)

    def complete_commit(
        self,
        commit_id: str,
        base_tree: bytes,
        ops: Sequence[Op],
        index: Sequence[IndexEntry] = (),
        description: str = "",
    ) -> CommitInfo:
        """Give an open commit the tree ``base_tree`` + ``ops`` and finish it, in one transaction.

        A pipeline's job uses this: its output commit becomes its parent's tree with the
        outputs of removed and changed datums deleted and the new outputs placed.
        """
        with self.meta.write() as tx:
            commit = self._need_commit(tx, commit_id)
            if commit.finished:
                raise CommitFinished(f"commit {_fmt(commit)} has already finished")
            reader = self.reader(tx)
            editor = TreeEditor(reader, base_tree, self.tree_params)
            for op in ops:
                self._apply(tx, reader, editor, op)
            root, size, files = editor.finish()
            self.chunks.index_packs(tx, index)
            tx.put_nodes({h: self.codec.pack(raw) for h, raw in editor.new_nodes.items()})
            tx.update_commit(
                commit_id,
                tree=root,
                size=size,
                files=files,
                state="finished",
                finished_at=time.time(),
                description=description,
            )
            done = self._need_commit(tx, commit_id)
            self._propagate(tx, done)
            return self._commit_info(tx, done)

    def drop_open_commit(self, commit_id: str) -> None:
        """Remove an open commit whose job failed: its branch falls back to the parent and any
        commit started on top of it moves onto the parent too."""
        with self.meta.write() as tx:
            self.drop_open_commit_in(tx, commit_id)

    def drop_open_commit_in(self, tx: MetaTx, commit_id: str) -> None:
        """:meth:`drop_open_commit` inside ``tx``."""
        commit = tx.get_commit(commit_id)
        if commit is None or commit.finished:
            return
        for b in tx.branches_at(commit.id):
            tx.set_branch_head(b.repo, b.name, commit.parent)
        tx.reparent_children(commit.id, commit.parent)
        tx.delete_commit_provenance(commit.id)
        tx.delete_commit(commit.id)
        tx.drop_hold(holds.COMMIT, commit.repo, commit.id)

    def write_detached_trees(
        self,
        tx: MetaTx,
        trees: Sequence[Sequence[tuple[tuple[str, ...], Sequence[ChunkRef]]]],
    ) -> list[bytes]:
        """Store trees that no commit names yet (datum outputs) inside ``tx``; their roots.

        The chunks must be indexed already (in ``tx`` or before); each is touched here, so a
        gc that started earlier spares them.
        """
        roots: list[bytes] = []
        nodes: dict[bytes, bytes] = {}
        named: set[bytes] = set()
        reader = self.reader(tx)
        for files in trees:
            editor = TreeEditor(reader, EMPTY_TREE, self.tree_params)
            for parts, chunks in files:
                entry, extra = make_file_entry(chunks)
                editor.add_nodes(extra)
                editor.put(check_parts(parts), entry)
                named.update(d for d, _ in chunks)
            root, _size, _files = editor.finish()
            roots.append(root)
            nodes.update(editor.new_nodes)
        if named and tx.touch_chunks_count(list(named)) < len(named):
            raise StorageError("some chunks of a datum's output vanished before it was recorded")
        tx.put_nodes({h: self.codec.pack(raw) for h, raw in nodes.items()})
        return roots

    def file_chunks(self, root: bytes, path: str) -> list[ChunkRef]:
        """The chunk list of the file at ``path`` in the tree ``root``."""
        entry = self.reader().lookup(root, split_path(path))
        if not isinstance(entry, FileEntry):
            raise FileNotFound(f"no such file {path} in tree {root.hex()[:12]}")
        return list(self.reader().chunks(entry))

    def prefetch_trees(self, roots: Sequence[bytes], depth: int = 8) -> None:
        """Bring many small trees (datum outputs) into the node cache, a level per query."""
        reader = self.reader()
        level = [r for r in roots if r != EMPTY_TREE]
        for _ in range(depth):
            if not level:
                return
            reader.prefetch(level)
            level = [child for node in level for child in reader.children(node)]

    def tree_files(self, root: bytes) -> Iterator[tuple[str, FileEntry]]:
        """Every file of a tree by its root hash (a commit's or a datum output's)."""
        if root == EMPTY_TREE:
            return iter(())
        return self.reader().walk(root, "")

    def tree_kind(self, root: bytes, path: str) -> str | None:
        entry = self.reader().lookup(root, split_path(path))
        if entry is None:
            return None
        return "dir" if isinstance(entry, DirEntry) else "file"

    def tree_entry(self, root: bytes, path: str) -> Entry | None:
        """The entry (file or directory) at ``path`` of the tree ``root``; O(depth)."""
        return self.reader().lookup(root, split_path(path))

    def tree_matches(
        self, root: bytes, segments: Sequence[Callable[[str], bool]]
    ) -> Iterator[tuple[str, Entry]]:
        """Entries of ``root`` exactly ``len(segments)`` levels down whose every path segment
        passes its test, in tree order. Only directories whose own path passes are read, so
        ``/*`` over a million files in a thousand directories reads the root, not the files."""
        if not segments or root == EMPTY_TREE:
            return
        reader = self.reader()
        stack: list[tuple[str, int, Iterator[tuple[str, Entry]]]] = [("", 0, reader.iter_dir(root))]
        last = len(segments) - 1
        while stack:
            prefix, depth, entries = stack[-1]
            item = next(entries, None)
            if item is None:
                stack.pop()
                continue
            name, entry = item
            if not segments[depth](name):
                continue
            path = f"{prefix}/{name}"
            if depth == last:
                yield path, entry
            elif isinstance(entry, DirEntry):
                stack.append((path, depth + 1, reader.iter_dir(entry.node)))

    def files_below(self, path: str, entry: Entry) -> Iterator[tuple[str, FileEntry]]:
        """The file ``entry`` at ``path``, or every file below the directory ``entry``."""
        if isinstance(entry, FileEntry):
            yield path, entry
        else:
            yield from self.reader().walk(entry.node, path.rstrip("/"))

    # Maintenance

    def fsck(self, references: bool = False) -> FsckReport:
        """Check every hash and reference of the store; with ``references``, also every
        object that imported files refer to (HEAD requests, in parallel): each one changed
        or gone since its import is a problem."""
        from tusk.pfs import maintenance  # loads with fsck, not with every command

        report = maintenance.fsck(self.meta, self.chunks, self.codec)
        if not references:
            return report
        checked, broken = self.check_references()
        problems = [*report.problems, *(f"reference {url}: {what}" for url, what in broken)]
        counts = {**report.counts, "references": checked}
        return replace(report, ok=report.ok and not broken, problems=problems, counts=counts)

    def gc(
        self,
        grace: float = DEFAULT_GRACE,
        dry_run: bool = False,
        repack_threshold: float = DEFAULT_REPACK_THRESHOLD,
        retention: bool = True,
    ) -> GcReport:
        """Apply the repos' retention rules (``retention``), then sweep what nothing refers
        to. A dry run changes nothing and says what both would remove and free."""
        from tusk.pfs import gc as sweep  # loads with gc, not with every command

        left = self.remove_abandoned_commits(grace, dry_run)
        todo = None
        if retention:
            todo = self.plan_retention() if dry_run else self.apply_retention()
        report = sweep.gc(
            self.meta, self.chunks, self.reader(), grace, dry_run, repack_threshold,
            todo if dry_run else None,
        )  # fmt: skip
        report = replace(report, leftovers_removed=left)
        if todo is None:
            return report
        return replace(
            report, expired=todo.names(), jobs_expired=len(todo.jobs),
            kept_for_lineage=todo.kept_for_lineage,
        )  # fmt: skip

    def remove_abandoned_commits(self, grace: float, dry_run: bool = False) -> int:
        """Drop the open commits (a check's candidate, an ``s3_out`` commit) that processes
        now gone held for longer than ``grace`` seconds (tusk.pfs.holds); how many (would)
        go."""
        left = [h for h in self.abandoned_holds(grace) if h.kind == holds.COMMIT]
        if not dry_run:
            for h in left:
                with self.meta.write() as tx:
                    self.drop_open_commit_in(tx, h.name)
                    tx.drop_hold(h.kind, h.repo, h.name)
        return len(left)

    def abandoned_holds(self, grace: float) -> list[HoldRecord]:
        """Holds whose processes are gone, older than ``grace`` seconds (tusk.pfs.holds)."""
        now = time.time()
        with self.meta.read() as tx:
            return [h for h in tx.list_holds() if holds.abandoned(h, now - grace, now)]

    # Retention (tusk.pfs.retention)

    def set_retention(
        self,
        repo: str,
        keep_last: int | None = None,
        keep_within: float | None = None,
        keep_tagged: bool = True,
    ) -> RetentionRule:
        """Set ``repo``'s retention rule (replacing any); gc applies it."""
        if keep_last is None and keep_within is None:
            raise InvalidArgument(
                "a retention rule needs --keep-last N or --keep-within DURATION: with neither "
                "it would expire every commit but the branch heads"
            )
        if keep_last is not None and keep_last < 1:
            raise InvalidArgument(
                f"--keep-last {keep_last} would expire every commit but the heads: give 1 or more"
            )
        if keep_within is not None and not keep_within > 0:
            raise InvalidArgument(f"--keep-within must be a positive duration, not {keep_within}")
        with self.meta.write() as tx:
            self._need_repo(tx, repo)
            record = RetentionRecord(repo, keep_last, keep_within, keep_tagged, time.time())
            tx.set_retention(record)
        return RetentionRule(repo, keep_last, keep_within, keep_tagged, record.updated_at)

    def list_retention(self, repo: str | None = None) -> list[RetentionRule]:
        with self.meta.read() as tx:
            if repo is not None:
                self._need_repo(tx, repo)
            rules = [r for r in tx.list_retention() if repo is None or r.repo == repo]
        return [RetentionRule(r.repo, r.keep_last, r.keep_within, r.keep_tagged, r.updated_at)
                for r in rules]  # fmt: skip

    def delete_retention(self, repo: str) -> None:
        with self.meta.write() as tx:
            self._need_repo(tx, repo)
            if tx.get_retention(repo) is None:
                raise NotFound(f"repo {repo} has no retention rule")
            tx.delete_retention(repo)

    def plan_retention(self, now: float | None = None) -> retention.Plan:
        """What applying the retention rules now would remove (nothing changes)."""
        with self.meta.read() as tx:
            return retention.plan(tx, self.clock() if now is None else now)

    def apply_retention(self, now: float | None = None) -> retention.Plan:
        """Expire what the retention rules say, in one metadata transaction; gc then
        reclaims the space of what nothing refers to any more."""
        with self.meta.write() as tx:
            todo = retention.plan(tx, self.clock() if now is None else now)
            retention.apply(tx, todo)
        return todo

    def stats(self) -> dict[str, int]:
        with self.meta.read() as tx:
            return tx.stats()

    # Reads

    def _read_root(self, repo: str, ref: str) -> CommitRecord:
        with self.meta.read() as tx:
            return self._resolve(tx, repo, parse_ref(ref))

    def _entry(self, repo: str, ref: str, path: str) -> tuple[CommitRecord, Entry]:
        commit = self._read_root(repo, ref)
        entry = self.reader().lookup(commit.tree, split_path(path))
        if entry is None:
            raise FileNotFound(
                f"no such file or directory {repo}@{ref}:{path} "
                f"(list files with: tusk list file {repo}@{ref}:/)"
            )
        return commit, entry

    def _file_info(self, commit: CommitRecord, path: str, entry: Entry) -> FileInfo:
        if isinstance(entry, DirEntry):
            return FileInfo(
                commit.repo, commit.id, path, "dir", entry.size, entry.files, entry.node.hex(), 0
            )
        nchunks = len(self.reader().chunks(entry))
        return FileInfo(
            commit.repo, commit.id, path, "file", entry.size, 1, entry.hash.hex(), nchunks
        )

    def inspect_file(self, repo: str, ref: str, path: str) -> FileInfo:
        commit, entry = self._entry(repo, ref, path)
        return self._file_info(commit, "/" + "/".join(split_path(path)), entry)

    def list_files(self, repo: str, ref: str, path: str = "/") -> list[FileInfo]:
        """The entries of the directory at ``path`` (or the file itself)."""
        return list(self.iter_files(repo, ref, path))

    def iter_files(self, repo: str, ref: str, path: str = "/") -> Iterator[FileInfo]:
        """:meth:`list_files`, one at a time; errors raise on the first ``next()``.

        Like every ``iter_*`` read: the commit is resolved in one short read transaction, then
        its tree (immutable, content-addressed) is read page by page, each load a transaction
        of its own, so nothing is held open while the caller holds an item.
        """
        commit, entry = self._entry(repo, ref, path)
        norm = "/" + "/".join(split_path(path))
        if isinstance(entry, FileEntry):
            yield self._file_info(commit, norm, entry)
            return
        base = norm.rstrip("/")
        for name, child in self.reader().iter_dir(entry.node):
            yield self._file_info(commit, f"{base}/{name}", child)

    def walk_files(self, repo: str, ref: str, path: str = "/") -> Iterator[tuple[str, FileEntry]]:
        """Every file at or below ``path``, with its full path."""
        _commit, entry = self._entry(repo, ref, path)
        yield from self.files_below("/" + "/".join(split_path(path)), entry)

    def glob_files(self, repo: str, ref: str, pattern: str) -> list[FileInfo]:
        """Files and directories matching a glob (``*`` within a segment, ``**`` across)."""
        return list(self.iter_glob(repo, ref, pattern))

    def iter_glob(self, repo: str, ref: str, pattern: str) -> Iterator[FileInfo]:
        """:meth:`glob_files`, one at a time in path order (a directory before its contents).

        Only the directories a match can lie in are read: leading literal segments are looked
        up straight down the tree, and a directory is entered only when its path matches the
        pattern's first segments (up to a ``**``), so globbing one file of a million reads
        the nodes on its path, not the tree."""
        commit = self._read_root(repo, ref)
        pat = "/" + pattern.lstrip("/")
        segs = pat[1:].split("/")
        if all(_literal_segment(s) for s in segs):  # one path: looked up, nothing matched
            found = self.reader().lookup(commit.tree, segs)
            if found is not None:
                yield self._file_info(commit, pat, found)
            return
        from wcmatch import glob as wglob  # loads with a glob, not with every command

        flags = wglob.GLOBSTAR | wglob.DOTGLOB
        reader = self.reader()
        # Segments before the first "**" match one path segment each: they prune the walk.
        deep = next((i for i, s in enumerate(segs) if "**" in s), len(segs))
        if "" in segs[:-1]:
            deep = 0  # "a//b": leave the odd spelling to the matcher, unpruned
        k = 0
        while k < min(deep, len(segs) - 1) and _literal_segment(segs[k]):
            k += 1
        start = reader.lookup(commit.tree, segs[:k])
        if not isinstance(start, DirEntry):
            return
        base = "/" + "/".join(segs[:k]) if k else ""
        # The open directories, innermost last: a deep tree costs no recursion.
        stack: list[tuple[str, int, Iterator[tuple[str, Entry]]]] = [
            (base, k, reader.iter_dir(start.node))
        ]
        while stack:
            prefix, depth, entries = stack[-1]
            item = next(entries, None)
            if item is None:
                stack.pop()
                continue
            name, entry = item
            path = f"{prefix}/{name}"
            d = depth + 1
            if d <= deep and d < len(segs):
                # Fewer segments than the pattern: a match only through "**" matching none.
                if deep < len(segs) and wglob.globmatch(path, pat, flags=flags):
                    yield self._file_info(commit, path, entry)
                # Enter a directory only if its segments fit the pattern's first ones.
                if isinstance(entry, DirEntry) and wglob.globmatch(
                    path, "/" + "/".join(segs[:d]), flags=flags
                ):
                    stack.append((path, d, reader.iter_dir(entry.node)))
                continue
            if wglob.globmatch(path, pat, flags=flags):
                yield self._file_info(commit, path, entry)
            if isinstance(entry, DirEntry) and deep < len(segs):
                stack.append((path, d, reader.iter_dir(entry.node)))

    # Objects: what the S3 gateway reads by key (tusk.s3)

    def resolve_commit(self, repo: str, ref: str) -> CommitRecord:
        """The commit a ref names (a branch's head, a commit id, with ^N)."""
        return self._read_root(repo, ref)

    def branch_head(self, repo: str, branch: str) -> CommitRecord | None:
        """The commit a branch's head is, open or finished; None before its first commit.
        One read (the S3 gateway resolves a ``branch.repo`` bucket so for every request)."""
        with self.meta.read() as tx:
            head = self._need_branch(tx, repo, branch).head
            return None if head is None else self._need_commit(tx, head)

    def dir_entries(self, node: bytes) -> Iterator[tuple[str, Entry]]:
        """The (name, entry) pairs of a directory node, in name order, page by page."""
        return self.reader().iter_dir(node)

    def read_range(self, entry: FileEntry, start: int, stop: int) -> Iterator[bytes]:
        """Bytes ``start`` up to ``stop`` of a file: only the chunks that overlap are read."""
        refs = self.reader().chunks(entry)
        first, skip, offset = len(refs), 0, 0
        for i, (_digest, size) in enumerate(refs):
            if offset + size > start:
                first, skip = i, start - offset
                break
            offset += size
        wanted: list[ChunkRef] = []
        end = offset
        for ref in refs[first:]:
            if end >= stop:
                break
            wanted.append(ref)
            end += ref[1]
        left = stop - start
        for block in self.chunks.read_chunks(wanted, coalesce=RANGE_COALESCE):
            piece = memoryview(block)[skip : skip + left]
            skip = 0
            left -= len(piece)
            if piece:
                yield bytes(piece)
            if left <= 0:
                return

    def read_file(self, repo: str, ref: str, path: str) -> Iterator[bytes]:
        commit, entry = self._entry(repo, ref, path)
        if isinstance(entry, DirEntry):
            raise PathConflict(f"{repo}@{ref}:{path} is a directory (use -r to get a directory)")
        del commit
        return _naming(self.read_entry(entry), f"{repo}@{ref}:{path}")

    def read_entry(self, entry: FileEntry) -> Iterator[bytes]:
        return self.chunks.read_chunks(self.reader().chunks(entry))

    def diff(self, new: Address, old: Address | None = None) -> list[DiffEntry]:
        """Files that differ between two commits (default: ``new`` and its parent)."""
        return list(self.iter_diff(new, old))

    def iter_diff(self, new: Address, old: Address | None = None) -> Iterator[DiffEntry]:
        """:meth:`diff`, one change at a time in path order; errors raise on the first
        ``next()``. Subtrees the two commits share are skipped unread."""
        with self.meta.read() as tx:
            new_commit = self._resolve(tx, new.repo, new.ref)
            if old is None:
                old_tree = (
                    self._need_commit(tx, new_commit.parent).tree
                    if new_commit.parent
                    else EMPTY_TREE
                )
            else:
                old_tree = self._resolve(tx, old.repo, old.ref).tree
        reader = self.reader()
        path = new.path or "/"
        parts = split_path(path)
        a = reader.lookup(old_tree, parts)
        b = reader.lookup(new_commit.tree, parts)
        if a is None and b is None:
            raise FileNotFound(f"no such file or directory {path} in either commit")
        prefix = "/" + "/".join(parts) if parts else ""
        if isinstance(a, DirEntry) and isinstance(b, DirEntry):
            changes = diff_trees(reader, a.node, b.node, prefix)
        else:
            changes = diff_trees(reader, _as_tree(reader, a, parts), _as_tree(reader, b, parts))
        for c in changes:
            yield DiffEntry(
                c.path,
                c.kind,
                c.old.size if c.old else None,
                c.new.size if c.new else None,
                c.old.hash.hex() if c.old else None,
                c.new.hash.hex() if c.new else None,
            )


def _naming(blocks: Iterator[bytes], where: str) -> Iterator[bytes]:
    """``blocks``, a broken reference's error naming the file ``where``."""
    try:
        yield from blocks
    except ReferenceBroken as exc:
        raise ReferenceBroken(f"{where}: {exc.message}") from exc


def _side(e: Entry | None) -> MergeSide:
    if isinstance(e, FileEntry):
        return MergeSide("file", e.hash.hex(), e.size)
    if isinstance(e, DirEntry):
        return MergeSide("dir", e.node.hex(), e.size)
    return MergeSide(None, None, None)


def _conflict_info(c: TreeConflict, resolution: str | None) -> MergeConflictInfo:
    return MergeConflictInfo(c.path, _side(c.base), _side(c.ours), _side(c.theirs), resolution)


def _literal_segment(seg: str) -> bool:
    """A glob segment that names exactly one entry (no wildcard, class or escape)."""
    return bool(seg) and seg not in (".", "..") and not any(c in seg for c in "*?[]\\")


def _as_tree(reader: TreeReader, entry: Entry | None, parts: tuple[str, ...]) -> bytes:
    """A tree holding just ``entry`` at ``parts``, for diffing a file or a dir against a file."""
    editor = TreeEditor(reader, EMPTY_TREE)
    if entry is not None:
        editor.put(parts, entry)
    return editor.finish()[0]
