"""``pfs_v2.API``: repos, branches, commits and files, as pachyderm-sdk and pachctl call them.

Names: a ``Repo`` is ``{name, project}``; project ``default`` (or none) is Tusk's bare repo
name, another project's repo is ``project/name``, as Tusk stores it. A ``Commit`` is a commit
id, or a branch (its head); its repo comes from ``Commit.repo`` or ``Commit.branch.repo``.

``ModifyFile`` is a stream: ``set_commit`` names the commit (an open one, or a branch: then
the stream's changes become one new commit), then ``delete_file``, ``add_file`` (bytes or a
URL; several ``add_file`` of one path append, and a path deleted first is replaced, as the
SDK's ``put_file_from_bytes`` sends it) and ``copy_file`` apply in order when it ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import empty_pb2, timestamp_pb2, wrappers_pb2

from tusk.auth.permissions import REPO_READ, REPO_WRITE
from tusk.errors import InvalidArgument, PathConflict
from tusk.grpcapi.gen import pfs_pb2 as pb
from tusk.grpcapi.server import EDGE, Edge, InTransaction, Rpc, in_projects, page
from tusk.ids import DEFAULT_PROJECT, qualify
from tusk.pfs.models import BranchInfo, BranchTrigger, CommitInfo, FileInfo, RepoInfo
from tusk.pfs.refs import Address, parse_ref

SERVICE = "pfs_v2.API"
_BLOCK = 1 << 20  # bytes per GetFile message

RPCS = [
    Rpc(SERVICE, "CreateRepo", pb.CreateRepoRequest, "unary"),
    Rpc(SERVICE, "InspectRepo", pb.InspectRepoRequest, "unary"),
    Rpc(SERVICE, "ListRepo", pb.ListRepoRequest, "server_stream"),
    Rpc(SERVICE, "DeleteRepo", pb.DeleteRepoRequest, "unary"),
    Rpc(SERVICE, "CreateBranch", pb.CreateBranchRequest, "unary"),
    Rpc(SERVICE, "InspectBranch", pb.InspectBranchRequest, "unary"),
    Rpc(SERVICE, "ListBranch", pb.ListBranchRequest, "server_stream"),
    Rpc(SERVICE, "DeleteBranch", pb.DeleteBranchRequest, "unary"),
    Rpc(SERVICE, "StartCommit", pb.StartCommitRequest, "unary"),
    Rpc(SERVICE, "FinishCommit", pb.FinishCommitRequest, "unary"),
    Rpc(SERVICE, "InspectCommit", pb.InspectCommitRequest, "unary"),
    Rpc(SERVICE, "ListCommit", pb.ListCommitRequest, "server_stream"),
    Rpc(SERVICE, "ModifyFile", pb.ModifyFileRequest, "client_stream"),
    Rpc(SERVICE, "GetFile", pb.GetFileRequest, "server_stream"),
    Rpc(SERVICE, "InspectFile", pb.InspectFileRequest, "unary"),
    Rpc(SERVICE, "ListFile", pb.ListFileRequest, "server_stream"),
    Rpc(SERVICE, "WalkFile", pb.WalkFileRequest, "server_stream"),
    Rpc(SERVICE, "GlobFile", pb.GlobFileRequest, "server_stream"),
    Rpc(SERVICE, "GetFileTAR", pb.GetFileRequest, "server_stream"),
    Rpc(SERVICE, "DiffFile", pb.DiffFileRequest, "server_stream"),
    Rpc(SERVICE, "InspectCommitSet", pb.InspectCommitSetRequest, "server_stream"),
    Rpc(SERVICE, "ListCommitSet", pb.ListCommitSetRequest, "server_stream"),
    Rpc(SERVICE, "SubscribeCommit", pb.SubscribeCommitRequest, "server_stream"),
    Rpc(SERVICE, "SquashCommitSet", pb.SquashCommitSetRequest, "unary"),
    Rpc(SERVICE, "DropCommitSet", pb.DropCommitSetRequest, "unary"),
    Rpc(SERVICE, "CreateProject", pb.CreateProjectRequest, "unary"),
    Rpc(SERVICE, "InspectProject", pb.InspectProjectRequest, "unary"),
    Rpc(SERVICE, "ListProject", pb.ListProjectRequest, "server_stream"),
    Rpc(SERVICE, "DeleteProject", pb.DeleteProjectRequest, "unary"),
]
_POLL = 0.2  # seconds between looks for new commits of a subscription


# Names, both ways


def repo_name(repo: Any) -> str:
    """The stored name of a ``Repo`` message."""
    if not repo.name:
        raise InvalidArgument("no repo given: set Repo.name")
    if repo.type not in ("", "user"):
        raise InvalidArgument(f"repo type {repo.type!r}: Tusk's repos are all of type user")
    return qualify(repo.project.name or DEFAULT_PROJECT, repo.name)


def commit_ref(commit: Any) -> tuple[str, str]:
    """(stored repo, ref) of a ``Commit`` message: its id, else its branch's head."""
    repo = commit.repo if commit.repo.name else commit.branch.repo
    ref = commit.id or commit.branch.name
    if not ref:
        raise InvalidArgument("no commit given: set Commit.id or Commit.branch")
    return repo_name(repo), ref


def pb_repo(stored: str) -> Any:
    project, _, bare = stored.rpartition("/")
    return pb.Repo(name=bare, type="user", project=pb.Project(name=project or DEFAULT_PROJECT))


def pb_branch(stored: str, branch: str) -> Any:
    return pb.Branch(repo=pb_repo(stored), name=branch)


def pb_commit(stored: str, commit_id: str, branch: str | None = None) -> Any:
    message = pb.Commit(id=commit_id, repo=pb_repo(stored))
    if branch:
        message.branch.CopyFrom(pb_branch(stored, branch))
    return message


def timestamp(seconds: float | None) -> Any:
    ts = timestamp_pb2.Timestamp()
    if seconds is not None:
        ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def repo_info(r: RepoInfo) -> Any:
    return pb.RepoInfo(
        repo=pb_repo(r.name),
        created=timestamp(r.created_at),
        size_bytes_upper_bound=r.size,
        description=r.description,
        branches=[pb_branch(r.name, b) for b in r.branches],
    )


def commit_info(c: CommitInfo) -> Any:
    info = pb.CommitInfo(
        commit=pb_commit(c.repo, c.id, c.branch),
        origin=pb.CommitOrigin(kind=pb.USER),
        description=c.description,
        child_commits=[pb_commit(c.repo, child) for child in c.children],
        started=timestamp(c.started_at),
        size_bytes_upper_bound=c.size,
    )
    if c.parent:
        info.parent_commit.CopyFrom(pb_commit(c.repo, c.parent))
    if c.finished_at is not None:
        info.finishing.CopyFrom(timestamp(c.finished_at))
        info.finished.CopyFrom(timestamp(c.finished_at))
    return info


def branch_info(b: BranchInfo) -> Any:
    info = pb.BranchInfo(branch=pb_branch(b.repo, b.name))
    if b.head:
        info.head.CopyFrom(pb_commit(b.repo, b.head, b.name))
    for text, field in ((b.provenance, info.provenance), (b.subvenance, info.subvenance)):
        for item in text:
            repo, _, branch = item.partition("@")
            field.append(pb_branch(repo, branch))
    info.direct_provenance.extend(info.provenance)
    if b.trigger is not None:
        t = b.trigger
        info.trigger.CopyFrom(
            pb.Trigger(
                branch=t.branch,
                all=t.all,
                size=t.size or "",
                commits=t.commits or 0,
                cron_spec=t.cron_spec or "",
            )
        )
    return info


def file_info(f: FileInfo, branch: str | None, finished: float | None) -> Any:
    return pb.FileInfo(
        file=pb.File(commit=pb_commit(f.repo, f.commit, branch), path=f.path),
        file_type=pb.DIR if f.type == "dir" else pb.FILE,
        committed=timestamp(finished),
        size_bytes=f.size,
        hash=bytes.fromhex(f.hash) if f.hash else b"",
    )


class Handlers:
    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.pfs = edge.pfs

    def _gate(self, context: grpc.ServicerContext, rpc: str, repo: str | None = None) -> Any:
        return self.edge.gate(context, f"{SERVICE}/{rpc}", repo)

    # Repos

    def CreateRepo(self, request: Any, context: grpc.ServicerContext) -> Any:
        from tusk.api.creating import create_repo

        name = repo_name(request.repo)
        caller = self._gate(context, "CreateRepo")  # the repo: create_repo checks it
        create_repo(self.pfs, self.edge.auth, caller, name, request.description,
                    request.update, edge=EDGE, operation="CreateRepo")  # fmt: skip
        return empty_pb2.Empty()

    def InspectRepo(self, request: Any, context: grpc.ServicerContext) -> Any:
        name = repo_name(request.repo)
        self._gate(context, "InspectRepo", name)
        return repo_info(self.pfs.inspect_repo(name))

    def ListRepo(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        caller = self._gate(context, "ListRepo")
        if request.type not in ("", "user"):
            return  # Tusk keeps no spec or meta repos
        repos = self.pfs.list_repos()
        readable = self.edge.auth.readable(caller, [r.name for r in repos])
        for r in repos:
            if r.name in readable and in_projects(r.name, request.projects):
                yield repo_info(r)

    def DeleteRepo(self, request: Any, context: grpc.ServicerContext) -> Any:
        name = repo_name(request.repo)
        self._gate(context, "DeleteRepo", name)
        self.pfs.delete_repo(name, request.force)
        self.edge.auth.forget_repo(name)
        return pb.DeleteRepoResponse(deleted=True)

    # Branches

    def CreateBranch(self, request: Any, context: grpc.ServicerContext) -> Any:
        repo = repo_name(request.branch.repo)
        caller = self._gate(context, "CreateBranch", repo)
        head = None
        if request.HasField("head"):
            head_repo, head = commit_ref(request.head)
            if head_repo != repo:
                raise InvalidArgument(f"the head {head_repo}@{head} is not a commit of {repo}")
        provenance = [(repo_name(b.repo), b.name) for b in request.provenance]
        for upstream in sorted({r for r, _ in provenance}):
            self.edge.auth.require(caller, REPO_READ, upstream, edge=EDGE, operation="CreateBranch")
        trigger = None
        if request.HasField("trigger") and request.trigger.branch:
            t = request.trigger
            if t.rate_limit_spec:
                raise InvalidArgument("trigger.rate_limit_spec is not supported; use cron_spec")
            trigger = BranchTrigger(
                t.branch, t.size or None, t.commits or None, t.cron_spec or None, t.all
            )
        self.pfs.create_branch(repo, request.branch.name, head, provenance, trigger)
        return empty_pb2.Empty()

    def InspectBranch(self, request: Any, context: grpc.ServicerContext) -> Any:
        repo = repo_name(request.branch.repo)
        self._gate(context, "InspectBranch", repo)
        return branch_info(self.pfs.inspect_branch(repo, request.branch.name))

    def ListBranch(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        repo = repo_name(request.repo)
        self._gate(context, "ListBranch", repo)
        for b in page(self.pfs.list_branches(repo), reverse=request.reverse):
            yield branch_info(b)

    def DeleteBranch(self, request: Any, context: grpc.ServicerContext) -> Any:
        repo = repo_name(request.branch.repo)
        self._gate(context, "DeleteBranch", repo)
        self.pfs.delete_branch(repo, request.branch.name, request.force)
        return empty_pb2.Empty()

    # Commits

    def StartCommit(self, request: Any, context: grpc.ServicerContext) -> Any:
        repo = repo_name(request.branch.repo)
        self._gate(context, "StartCommit", repo)
        parent = None
        if request.HasField("parent") and (request.parent.id or request.parent.branch.name):
            _parent_repo, parent = commit_ref(request.parent)
        planned = context if isinstance(context, InTransaction) else None
        c = self.pfs.start_commit(
            repo, request.branch.name, parent, request.description,
            commit_id=planned.commit_id if planned else None,
            commit_set=planned.commit_set if planned else None,
        )  # fmt: skip
        return pb_commit(repo, c.id, request.branch.name)

    def FinishCommit(self, request: Any, context: grpc.ServicerContext) -> Any:
        repo, ref = commit_ref(request.commit)
        self._gate(context, "FinishCommit", repo)
        if request.error:
            raise InvalidArgument(
                "finishing a commit with an error is not supported; delete the commit instead"
            )
        self.pfs.finish_commit(repo, ref, request.description or None)
        return empty_pb2.Empty()

    def InspectCommit(self, request: Any, context: grpc.ServicerContext) -> Any:
        repo, ref = commit_ref(request.commit)
        self._gate(context, "InspectCommit", repo)
        if request.wait in (pb.FINISHING, pb.FINISHED):
            return commit_info(self.pfs.wait_commit(repo, ref))
        return commit_info(self.pfs.inspect_commit(repo, ref))

    def ListCommit(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        repo = repo_name(request.repo)
        self._gate(context, "ListCommit", repo)
        branch = None
        if request.HasField("to") and (request.to.id or request.to.branch.name):
            branch = commit_ref(request.to)[1]
        commits = list(self.pfs.iter_commits(repo, branch, request.number or None))
        for c in page(commits, reverse=request.reverse):
            yield commit_info(c)

    # Files

    def ModifyFile(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        from tusk.grpcapi.modify import Writer

        writer: Writer | None = None
        try:
            for request in requests:
                body = request.WhichOneof("body")
                if body == "set_commit":
                    if writer is not None:
                        writer.finish()
                    repo, ref = commit_ref(request.set_commit)
                    self._gate(context, "ModifyFile", repo)
                    writer = Writer(self.pfs, repo, ref)
                    continue
                if writer is None:
                    raise InvalidArgument("ModifyFile: send set_commit first")
                if body == "add_file":
                    add = request.add_file
                    if add.WhichOneof("source") == "url":
                        writer.add_url(add.path, add.url.url)
                    else:
                        writer.add(add.path, add.raw.value)
                elif body == "delete_file":
                    writer.delete(request.delete_file.path)
                elif body == "copy_file":
                    cp = request.copy_file
                    src_repo, src_ref = commit_ref(cp.src.commit)
                    self.edge.auth.require(
                        self._gate(context, "ModifyFile", writer.repo), REPO_READ, src_repo,
                        edge=EDGE, operation="ModifyFile",
                    )  # fmt: skip
                    writer.copy(Address(src_repo, parse_ref(src_ref), cp.src.path), cp.dst)
            if writer is not None:
                writer.finish()
                writer = None
        except BaseException as exc:
            if writer is not None:
                writer.abort(exc)
            raise
        return empty_pb2.Empty()

    def GetFile(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        repo, ref = commit_ref(request.file.commit)
        self._gate(context, "GetFile", repo)
        if request.url:
            raise InvalidArgument("GetFile to a URL is not supported; read the bytes instead")
        info = self.pfs.inspect_file(repo, ref, request.file.path or "/")
        if info.type == "dir":
            raise PathConflict(f"{repo}@{ref}:{info.path} is a directory: use ListFile")
        skip = max(0, request.offset)
        for block in self.pfs.read_file(repo, ref, info.path):
            if skip >= len(block):
                skip -= len(block)
                continue
            data, skip = block[skip:], 0
            for start in range(0, len(data), _BLOCK):
                yield wrappers_pb2.BytesValue(value=data[start : start + _BLOCK])

    def _read(
        self, context: grpc.ServicerContext, rpc: str, commit: Any
    ) -> tuple[str, str, str | None, float | None]:
        """Pass the gate for reading ``commit``; (repo, its id, the branch named, when it was
        finished) for the file listings."""
        repo, ref = commit_ref(commit)
        self._gate(context, rpc, repo)
        c = self.pfs.inspect_commit(repo, ref)
        return repo, c.id, commit.branch.name or None, c.finished_at

    def InspectFile(self, request: Any, context: grpc.ServicerContext) -> Any:
        repo, cid, branch, finished = self._read(context, "InspectFile", request.file.commit)
        return file_info(self.pfs.inspect_file(repo, cid, request.file.path or "/"), branch,
                         finished)  # fmt: skip

    def ListFile(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        repo, cid, branch, finished = self._read(context, "ListFile", request.file.commit)
        items = list(self.pfs.iter_files(repo, cid, request.file.path or "/"))
        for f in page(items, request.number, request.reverse):
            yield file_info(f, branch, finished)

    def WalkFile(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        repo, cid, branch, finished = self._read(context, "WalkFile", request.file.commit)
        root = request.file.path or "/"
        pattern = root.rstrip("/") + "/**" if root != "/" else "/**"
        items = [self.pfs.inspect_file(repo, cid, root), *self.pfs.iter_glob(repo, cid, pattern)]
        for f in page(items, request.number, request.reverse):
            yield file_info(f, branch, finished)

    def GlobFile(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        repo, cid, branch, finished = self._read(context, "GlobFile", request.commit)
        for f in self.pfs.iter_glob(repo, cid, request.pattern):
            yield file_info(f, branch, finished)

    def GetFileTAR(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        from tusk.api.streams import tar_stream  # the REST API's tar writer, as its /tar/

        repo, ref = commit_ref(request.file.commit)
        self._gate(context, "GetFileTAR", repo)
        cid = self.pfs.inspect_commit(repo, ref).id
        for block in tar_stream(self.pfs, self.pfs.walk_files(repo, cid, request.file.path or "/")):
            yield wrappers_pb2.BytesValue(value=block)

    def DiffFile(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        repo, ref = commit_ref(request.new_file.commit)
        self._gate(context, "DiffFile", repo)
        new = self.pfs.inspect_commit(repo, ref)
        new_at = Address(repo, parse_ref(new.id), request.new_file.path or "/")
        old_at = old = None
        if request.HasField("old_file") and (
            request.old_file.commit.id or request.old_file.commit.branch.name
        ):
            old_repo, old_ref = commit_ref(request.old_file.commit)
            if old_repo != repo:
                self.edge.auth.require(
                    self._gate(context, "DiffFile", repo), REPO_READ, old_repo, edge=EDGE,
                    operation="DiffFile",
                )  # fmt: skip
            old = self.pfs.inspect_commit(old_repo, old_ref)
            old_at = Address(old_repo, parse_ref(old.id), request.old_file.path or "/")
        # the old side: the commit given, else the new one's parent (as Pachyderm diffs)
        before = (old.repo, old.id) if old is not None else (repo, new.parent or new.id)
        for d in self.pfs.iter_diff(new_at, old_at):
            response = pb.DiffFileResponse()
            if d.new_hash is not None:
                response.new_file.CopyFrom(
                    pb.FileInfo(
                        file=pb.File(commit=pb_commit(repo, new.id), path=d.path),
                        file_type=pb.FILE, size_bytes=d.new_size or 0,
                        hash=bytes.fromhex(d.new_hash),
                    )
                )  # fmt: skip
            if d.old_hash is not None:
                response.old_file.CopyFrom(
                    pb.FileInfo(
                        file=pb.File(commit=pb_commit(*before), path=d.path),
                        file_type=pb.FILE,
                        size_bytes=d.old_size or 0,
                        hash=bytes.fromhex(d.old_hash),
                    )
                )
            yield response

    # Commit sets and subscriptions

    def InspectCommitSet(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        caller = self._gate(context, "InspectCommitSet")
        commits = self.pfs.inspect_commit_set(request.commit_set.id)
        readable = self.edge.auth.readable(caller, {c.repo for c in commits})
        for c in commits:
            if c.repo in readable:
                if request.wait and c.state != "finished":
                    c = self.pfs.wait_commit(c.repo, c.id)
                yield commit_info(c)

    def ListCommitSet(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        caller = self._gate(context, "ListCommitSet")
        project = request.project.name if request.HasField("project") else ""
        repos = [r.name for r in self.pfs.list_repos()]
        if project:
            repos = [r for r in repos if (r.rpartition("/")[0] or DEFAULT_PROJECT) == project]
        sets: dict[str, list[CommitInfo]] = {}
        for repo in sorted(self.edge.auth.readable(caller, repos)):
            for c in self.pfs.iter_commits(repo):
                sets.setdefault(c.commit_set, []).append(c)
        newest = sorted(sets.items(), key=lambda kv: -max(c.started_at for c in kv[1]))
        for set_id, members in newest:
            yield pb.CommitSetInfo(
                commit_set=pb.CommitSet(id=set_id), commits=[commit_info(c) for c in members]
            )

    def SubscribeCommit(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        """Commits of a branch (or of the repo), oldest first, then each new one as it is
        made, until the client hangs up; ``state`` FINISHED: each once it is finished."""
        repo = repo_name(request.repo)
        self._gate(context, "SubscribeCommit", repo)
        branch = request.branch or None
        finished_only = request.state in (pb.FINISHING, pb.FINISHED)
        seen: set[str] = set()
        start = request.from_commit.id if request.HasField("from_commit") else ""
        skipping = bool(start)
        while context.is_active():
            for c in reversed(list(self.pfs.iter_commits(repo, branch))):
                if skipping:
                    if c.id == start:
                        skipping = False
                    else:
                        continue
                if c.id in seen or (finished_only and c.state != "finished"):
                    continue
                seen.add(c.id)
                yield commit_info(c)
            skipping = False
            time.sleep(_POLL)

    # Projects

    def CreateProject(self, request: Any, context: grpc.ServicerContext) -> Any:
        from tusk.api.creating import create_project

        caller = self._gate(context, "CreateProject")
        create_project(self.pfs, self.edge.auth, caller, request.project.name,
                       request.description, request.update, edge=EDGE,
                       operation="CreateProject")  # fmt: skip
        return empty_pb2.Empty()

    def InspectProject(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._gate(context, "InspectProject")
        p = self.pfs.inspect_project(request.project.name or DEFAULT_PROJECT)
        return pb.ProjectInfo(
            project=pb.Project(name=p.name), description=p.description,
            created_at=timestamp(p.created_at),
        )  # fmt: skip

    def ListProject(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self._gate(context, "ListProject")
        for p in self.pfs.list_projects():
            yield pb.ProjectInfo(
                project=pb.Project(name=p.name), description=p.description,
                created_at=timestamp(p.created_at),
            )  # fmt: skip

    def DeleteProject(self, request: Any, context: grpc.ServicerContext) -> Any:
        name = request.project.name
        self.edge.gate(context, f"{SERVICE}/DeleteProject", name)
        self.pfs.delete_project(name)
        self.edge.auth.forget_project(name)
        return empty_pb2.Empty()

    def SquashCommitSet(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._remove_set(context, "SquashCommitSet", request.commit_set.id)
        return empty_pb2.Empty()

    def DropCommitSet(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._remove_set(context, "DropCommitSet", request.commit_set.id)
        return empty_pb2.Empty()

    def _remove_set(self, context: grpc.ServicerContext, rpc: str, commit_set: str) -> None:
        """Write on every repo of the set (the gate for the first, ``require`` for the rest)."""
        repos = sorted({c.repo for c in self.pfs.inspect_commit_set(commit_set)})
        caller = self._gate(context, rpc, repos[0])
        for repo in repos[1:]:
            self.edge.auth.require(caller, REPO_WRITE, repo, edge=EDGE, operation=rpc)
        if rpc == "SquashCommitSet":
            self.pfs.squash_commit_set(commit_set)
        else:
            self.pfs.drop_commit_set(commit_set)
