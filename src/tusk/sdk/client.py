"""``tusk.Client``: every PFS operation, addressed the way the CLI addresses it.

Addresses are strings: ``repo``, ``repo@branch``, ``repo@<commit-id>``, ``repo@branch^2``, and
with a path ``repo@branch:/dir/file``. This client runs Tusk in-process on a home folder;
``tusk.sdk.remote.RemoteClient`` is the HTTP transport, with the same methods.

Listings come twice: ``list_*`` (and ``glob_files``, ``diff_file``) return lists, and
``iter_files``, ``iter_glob``, ``iter_diff`` and ``iter_commits`` are generators that read
as they go, so a listing of a million files is never held in memory. A generator does its
work when iterated: a bad address or a missing repo or path raises on the first ``next()``,
before any item. Stopping early is fine; ``close()`` it (or let it go) to free what it holds.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from tusk.config import StoreConfig, default_home, setting
from tusk.errors import InvalidArgument, SourceError
from tusk.pfs import PfsService
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
from tusk.pfs.paths import join_path, split_path
from tusk.pfs.refs import Address, parse_address
from tusk.pfs.sources import (
    BlockStream,
    BytesSource,
    LocalFile,
    Source,
    StreamSource,
    source_for,
    source_name,
)
from tusk.pfs.tree import TreeParams
from tusk.sdk.pipelines import PipelineMethods
from tusk.sdk.projects import current_project

Progress = Callable[[int], None]
SourceLike = str | os.PathLike[str] | bytes | BinaryIO


def _to_source(src: SourceLike) -> Source:
    if isinstance(src, bytes):
        return BytesSource(src)
    if isinstance(src, os.PathLike):
        return LocalFile(Path(src))
    if isinstance(src, str):
        return source_for(src)
    return StreamSource(src)


def _ref_text(addr: Address) -> str:
    return addr.ref.base + (f"~{addr.ref.ancestors}" if addr.ref.ancestors else "")


class _Opens(Protocol):
    def open_file(self, address: str) -> Iterator[bytes]: ...


class FileReads:
    """Whole-file reads on top of ``open_file``, for both transports."""

    def get_file(self: _Opens, address: str) -> bytes:
        """A whole file's bytes (use :meth:`open_file` or :meth:`get_file_to` for big files)."""
        return b"".join(self.open_file(address))

    def get_file_to(
        self: _Opens, address: str, target: BinaryIO, progress: Progress | None = None
    ) -> int:
        """Write a file's bytes to a binary stream; return the byte count."""
        n = 0
        for block in self.open_file(address):
            target.write(block)
            n += len(block)
            if progress:
                progress(len(block))
        return n


class Client(PipelineMethods, FileReads):
    """A Tusk client. ``Client()`` uses ``$TUSK_HOME`` (default ``~/.tusk``), made on first use.

    ``Client(address="http://host:7800")``, or ``Client()`` with ``$TUSK_ADDRESS`` set, talks
    to a server over HTTP instead (a :class:`tusk.sdk.remote.RemoteClient`, same methods); an
    explicit ``home`` always means in-process. ``token=`` is the server's bearer token
    (default: ``$TUSK_TOKEN``, else the config file's); the in-process client has no auth.

    ``project=`` is the current project (default: ``$TUSK_PROJECT``, else the config file's,
    else ``default``): every method that takes a repo or pipeline name or an address reads a
    bare name as ``project/name``; a name with a ``/`` names its project itself.
    """

    def __new__(
        cls,
        home: str | os.PathLike[str] | None = None,
        *,
        address: str | None = None,
        token: str | None = None,
        config: StoreConfig | None = None,
        tree_params: TreeParams | None = None,
        project: str | None = None,
    ) -> Client:
        if address is not None and home is not None:
            raise InvalidArgument("give a home (in-process) or an address (a server), not both")
        remote = address
        if remote is None and cls is Client and home is None:
            remote = setting("address")  # $TUSK_ADDRESS, else the config file's context
        if remote:
            from tusk.sdk.remote import RemoteClient  # httpx loads only for remote use

            return cast("Client", RemoteClient(remote, token, project=project))
        return super().__new__(cls)

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        address: str | None = None,
        token: str | None = None,
        config: StoreConfig | None = None,
        tree_params: TreeParams | None = None,
        project: str | None = None,
    ) -> None:
        self.project = current_project(project)
        self.home = Path(home) if home is not None else default_home()
        self._pfs = PfsService.open(self.home, config=config)
        if tree_params is not None:
            self._pfs.tree_params = tree_params

    def close(self) -> None:
        """Release the database and file handles."""
        self._pfs.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Auth: a server's (tusk up / tusk serve); the embedded home has none

    def _no_auth(self, what: str) -> InvalidArgument:
        return InvalidArgument(
            f"auth applies to a server: {what} needs Client(address=...) (or $TUSK_ADDRESS); "
            f"the home {self.home} in-process has no auth"
        )

    def auth_activate(self) -> str:
        """Servers only (``RemoteClient.auth_activate``); raises InvalidArgument here."""
        raise self._no_auth("auth_activate")

    def auth_deactivate(self) -> None:
        """Servers only (``RemoteClient.auth_deactivate``); raises InvalidArgument here."""
        raise self._no_auth("auth_deactivate")

    def whoami(self) -> dict[str, Any]:
        """Servers only (``RemoteClient.whoami``); raises InvalidArgument here."""
        raise self._no_auth("whoami")

    def create_token(
        self, principal: str | None = None, ttl: float | None = None, description: str = ""
    ) -> tuple[dict[str, Any], str]:
        """Servers only (``RemoteClient.create_token``); raises InvalidArgument here."""
        raise self._no_auth("create_token")

    def list_tokens(self) -> list[dict[str, Any]]:
        """Servers only (``RemoteClient.list_tokens``); raises InvalidArgument here."""
        raise self._no_auth("list_tokens")

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        """Servers only (``RemoteClient.revoke_token``); raises InvalidArgument here."""
        raise self._no_auth("revoke_token")

    def get_repo_roles(self, repo: str) -> dict[str, list[str]]:
        """Servers only (``RemoteClient.get_repo_roles``); raises InvalidArgument here."""
        raise self._no_auth("get_repo_roles")

    def set_repo_roles(
        self, repo: str, principal: str, roles: Sequence[str]
    ) -> dict[str, list[str]]:
        """Servers only (``RemoteClient.set_repo_roles``); raises InvalidArgument here."""
        raise self._no_auth("set_repo_roles")

    def get_project_roles(self, project: str) -> dict[str, list[str]]:
        """Servers only (``RemoteClient.get_project_roles``); raises InvalidArgument here."""
        raise self._no_auth("get_project_roles")

    def set_project_roles(
        self, project: str, principal: str, roles: Sequence[str]
    ) -> dict[str, list[str]]:
        """Servers only (``RemoteClient.set_project_roles``); raises InvalidArgument here."""
        raise self._no_auth("set_project_roles")

    def get_cluster_roles(self) -> dict[str, list[str]]:
        """Servers only (``RemoteClient.get_cluster_roles``); raises InvalidArgument here."""
        raise self._no_auth("get_cluster_roles")

    def set_cluster_roles(self, principal: str, roles: Sequence[str]) -> dict[str, list[str]]:
        """Servers only (``RemoteClient.set_cluster_roles``); raises InvalidArgument here."""
        raise self._no_auth("set_cluster_roles")

    def check_repo(self, repo: str) -> dict[str, Any]:
        """Servers only (``RemoteClient.check_repo``); raises InvalidArgument here."""
        raise self._no_auth("check_repo")

    def audit(
        self,
        user: str | None = None,
        repo: str | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Servers only (``RemoteClient.audit``); raises InvalidArgument here."""
        raise self._no_auth("audit")

    # Projects (a repo of another project than default is named project/repo)

    def create_project(self, name: str, description: str = "", update: bool = False) -> ProjectInfo:
        """Create a project; with ``update=True`` an existing one gets the new description."""
        return self._pfs.create_project(name, description, update)

    def list_projects(self) -> list[ProjectInfo]:
        """Every project, by name, with its repos."""
        return self._pfs.list_projects()

    def inspect_project(self, name: str) -> ProjectInfo:
        """A project's description, creation time and repos."""
        return self._pfs.inspect_project(name)

    def delete_project(self, name: str) -> None:
        """Delete an empty project (never ``default``); refused while it has repos."""
        self._pfs.delete_project(name)

    # Repos

    def create_repo(self, name: str, description: str = "", update: bool = False) -> RepoInfo:
        """Create a repo; with ``update=True`` an existing repo gets the new description."""
        return self._pfs.create_repo(self._repo(name), description, update)

    def inspect_repo(self, name: str) -> RepoInfo:
        """A repo's description, size (of master's head) and branches."""
        return self._pfs.inspect_repo(self._repo(name))

    def list_repos(self) -> list[RepoInfo]:
        """Every repo, by name."""
        return self._pfs.list_repos()

    def delete_repo(self, name: str, force: bool = False) -> None:
        """Delete a repo; refused while another repo's branch names it in provenance."""
        self._pfs.delete_repo(self._repo(name), force)

    # Branches

    def create_branch(
        self, address: str, head: str | None = None, provenance: Sequence[str] = ()
    ) -> BranchInfo:
        """Create ``repo@branch`` at ``head`` (a branch, commit or ancestor ref), or move it."""
        addr = self._parse(address)
        prov = []
        for p in provenance:
            pa = self._parse(p)
            prov.append((pa.repo, pa.ref.base))
        return self._pfs.create_branch(addr.repo, addr.ref.base, head, prov)

    def inspect_branch(self, address: str) -> BranchInfo:
        """Head, provenance and subvenance of ``repo@branch``."""
        addr = self._parse(address)
        return self._pfs.inspect_branch(addr.repo, addr.ref.base)

    def list_branches(self, repo: str) -> list[BranchInfo]:
        """The branches of a repo."""
        return self._pfs.list_branches(self._repo(repo))

    def delete_branch(self, address: str, force: bool = False) -> None:
        """Delete ``repo@branch`` (its commits stay reachable by id)."""
        addr = self._parse(address)
        self._pfs.delete_branch(addr.repo, addr.ref.base, force)

    # Commits

    def start_commit(
        self, address: str, parent: str | None = None, description: str = ""
    ) -> CommitInfo:
        """Open a commit on ``repo@branch``; writes to the branch go into it until finished."""
        addr = self._parse(address)
        return self._pfs.start_commit(addr.repo, addr.ref.base, parent, description)

    def finish_commit(self, address: str, description: str | None = None) -> CommitInfo:
        """Finish the open commit on ``repo@branch`` (or ``repo@<commit-id>``)."""
        addr = self._parse(address)
        return self._pfs.finish_commit(addr.repo, _ref_text(addr), description)

    def inspect_commit(self, address: str) -> CommitInfo:
        """One commit: state, parent, children, size, branches."""
        addr = self._parse(address)
        return self._pfs.inspect_commit(addr.repo, _ref_text(addr))

    def list_commits(self, address: str, number: int | None = None) -> list[CommitInfo]:
        """Newest first: a branch's history for ``repo@branch``, every commit for ``repo``."""
        return list(self.iter_commits(address, number))

    def iter_commits(self, address: str, number: int | None = None) -> Iterator[CommitInfo]:
        """:meth:`list_commits`, one commit at a time (read a batch at a time)."""
        addr = self._parse(address)
        branch = _ref_text(addr) if addr.explicit_ref else None
        yield from self._pfs.iter_commits(addr.repo, branch, number)

    def wait_commit(
        self,
        address: str,
        timeout: float | None = None,
        *,
        run: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> CommitInfo:
        """Block until the commit is finished; raise Timeout after ``timeout`` seconds.

        A branch names its head as it is now. If no scheduler runs on this home, pending jobs
        run in this process meanwhile (``run=False``: only wait, and warn once); ``log`` gets
        their progress lines. JobFailed when the job that makes the commit failed.
        """
        addr = self._parse(address)
        with self._waiting(run, log) as pause:
            return self._pps.wait_commit(addr.repo, _ref_text(addr), timeout, pause)

    def squash_commit(self, address: str, description: str | None = None) -> CommitInfo:
        """Merge a commit into its parent."""
        addr = self._parse(address)
        return self._pfs.squash_commit(addr.repo, _ref_text(addr), description)

    def delete_commit(self, address: str) -> None:
        """Delete a branch head commit; the branch moves back to its parent."""
        addr = self._parse(address)
        self._pfs.delete_commit(addr.repo, _ref_text(addr))

    def inspect_commit_set(self, commit_set: str) -> list[CommitInfo]:
        """Every commit in a commit set (all commits caused by one change)."""
        return self._pfs.inspect_commit_set(commit_set)

    @contextmanager
    def commit(self, address: str, description: str = "") -> Iterator[CommitHandle]:
        """Open a commit, yield a handle to write through, finish it on success.

        On an exception the open commit is deleted, so nothing half-written becomes visible.
        """
        info = self.start_commit(address, description=description)
        handle = CommitHandle(self, info)
        try:
            yield handle
        except BaseException:
            self._pfs.delete_commit(info.repo, info.id)
            raise
        handle.info = self._pfs.finish_commit(info.repo, info.id)

    # Files: writes

    def put_file(
        self,
        address: str,
        source: SourceLike,
        *,
        append: bool = False,
        description: str = "",
        progress: Progress | None = None,
    ) -> PutResult:
        """Put one file at ``repo@branch:/path`` from a local path, URL, bytes or stream."""
        addr, path = file_target(self._address(address), source)
        return self._pfs.put_files(
            addr.repo,
            _ref_text(addr),
            [(path, _to_source(source))],
            append=append,
            description=description,
            progress=progress,
        )

    def put_files(
        self,
        address: str,
        items: Iterable[tuple[str, SourceLike]],
        *,
        append: bool = False,
        description: str = "",
        progress: Progress | None = None,
    ) -> PutResult:
        """Put many (path, source) pairs under ``repo@branch[:/dir]`` as one change."""
        addr = self._parse(address)
        base = addr.path or "/"
        prefix = split_path(base)
        pairs = (((*prefix, *split_path(p)), _to_source(s)) for p, s in items)
        return self._pfs.put_files(
            addr.repo,
            _ref_text(addr),
            pairs,
            append=append,
            description=description,
            progress=progress,
        )

    def put_dir(
        self,
        address: str,
        local_dir: str | os.PathLike[str],
        *,
        append: bool = False,
        description: str = "",
        progress: Progress | None = None,
    ) -> PutResult:
        """Put every file below ``local_dir`` under ``repo@branch:/path`` (default: its name)."""
        addr, prefix, root = dir_target(self._address(address), local_dir)
        pairs = (((*prefix, *rel.split("/")), LocalFile(full)) for rel, full in _walk_local(root))
        return self._pfs.put_files(
            addr.repo,
            _ref_text(addr),
            pairs,
            append=append,
            description=description,
            progress=progress,
        )

    def delete_file(self, address: str, description: str = "") -> CommitInfo:
        """Delete a file or a whole directory at ``repo@branch:/path``."""
        addr = self._parse(address)
        if addr.path is None:
            raise InvalidArgument("delete file needs a path: repo@branch:/path")
        return self._pfs.delete_files(addr.repo, _ref_text(addr), [addr.path], description)

    def copy_file(self, src: str, dst: str) -> CommitInfo:
        """Copy a file or directory (any repo or commit) to ``repo@branch:/path``; no data moves."""
        s = self._parse(src)
        d = self._parse(dst)
        if d.path is None:
            raise InvalidArgument("copy file needs a destination path: repo@branch:/path")
        return self._pfs.copy_file(s, d.repo, _ref_text(d), d.path)

    # Files: reads

    def open_file(self, address: str) -> Iterator[bytes]:
        """Stream a file's bytes, chunk by chunk."""
        addr = self._parse(address)
        return self._pfs.read_file(addr.repo, _ref_text(addr), addr.path or "/")

    def get_dir(
        self, address: str, local_dir: str | os.PathLike[str], progress: Progress | None = None
    ) -> int:
        """Write every file at or below ``repo@ref:/path`` into ``local_dir``; return the count."""
        addr = self._parse(address)
        base = addr.path or "/"
        root = Path(local_dir)
        count = 0
        for path, entry in self._pfs.walk_files(addr.repo, _ref_text(addr), base):
            rel = path[len(base.rstrip("/")) + 1 :] if base != path else Path(path).name
            target = root.joinpath(*split_path(rel))
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as f:
                for block in self._pfs.read_entry(entry):
                    f.write(block)
                    if progress:
                        progress(len(block))
            count += 1
        return count

    def get_tar(self, address: str, target: BinaryIO, progress: Progress | None = None) -> int:
        """Write a tar stream of every file at or below ``repo@ref:/path``; return the count."""
        addr = self._parse(address)
        base = addr.path or "/"
        count = 0
        with tarfile.open(fileobj=target, mode="w|") as tar:
            for path, entry in self._pfs.walk_files(addr.repo, _ref_text(addr), base):
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size = entry.size
                # BufferedReader returns full blocks, which tarfile's copy loop requires.
                stream = io.BufferedReader(BlockStream(self._pfs.read_entry(entry), progress))
                tar.addfile(info, stream)
                count += 1
        return count

    def inspect_file(self, address: str) -> FileInfo:
        """Type, size, hash and chunk count of a file or directory."""
        addr = self._parse(address)
        return self._pfs.inspect_file(addr.repo, _ref_text(addr), addr.path or "/")

    def list_files(self, address: str) -> list[FileInfo]:
        """The entries of a directory (or the file itself) at ``repo@ref:/path``."""
        return list(self.iter_files(address))

    def iter_files(self, address: str) -> Iterator[FileInfo]:
        """:meth:`list_files`, one entry at a time: ``for f in client.iter_files("r@master:/")``."""
        addr = self._parse(address)
        yield from self._pfs.iter_files(addr.repo, _ref_text(addr), addr.path or "/")

    def glob_files(self, pattern: str) -> list[FileInfo]:
        """Files and directories matching ``repo@ref:/glob`` (``*``, ``?``, ``[..]``, ``**``)."""
        return list(self.iter_glob(pattern))

    def iter_glob(self, pattern: str) -> Iterator[FileInfo]:
        """:meth:`glob_files`, one match at a time, in path order."""
        addr, glob = glob_target(self._address(pattern))
        yield from self._pfs.iter_glob(addr.repo, _ref_text(addr), glob)

    def diff_file(self, new: str, old: str | None = None) -> list[DiffEntry]:
        """Files added, removed or changed from ``old`` (default: new's parent) to ``new``."""
        return list(self.iter_diff(new, old))

    def iter_diff(self, new: str, old: str | None = None) -> Iterator[DiffEntry]:
        """:meth:`diff_file`, one change at a time, in path order."""
        new_addr = self._parse(new)
        old_addr = self._parse(old) if old is not None else None
        yield from self._pfs.iter_diff(new_addr, old_addr)

    # Maintenance

    def fsck(self) -> FsckReport:
        """Re-read every pack and check every hash and reference."""
        return self._pfs.fsck()

    def gc(self, grace: float = 3600.0, dry_run: bool = False) -> GcReport:
        """Delete data no commit references and nobody touched within ``grace`` seconds."""
        return self._pfs.gc(grace, dry_run)

    def stats(self) -> dict[str, int]:
        """Counts of repos, commits, nodes, packs, chunks and pack bytes."""
        return self._pfs.stats()


class CommitHandle:
    """Writes into one open commit; see :meth:`Client.commit`."""

    def __init__(self, client: Client, info: CommitInfo) -> None:
        self.client = client
        self.info = info

    @property
    def id(self) -> str:
        return self.info.id

    def _addr(self, path: str) -> str:
        return f"{self.info.repo}@{self.info.id}:{path}"

    def put_file(self, path: str, source: SourceLike, append: bool = False) -> PutResult:
        """Put one file into this commit."""
        return self.client.put_file(self._addr(path), source, append=append)

    def put_dir(self, path: str, local_dir: str | os.PathLike[str]) -> PutResult:
        """Put a local directory into this commit under ``path``."""
        return self.client.put_dir(self._addr(path), local_dir)

    def delete_file(self, path: str) -> CommitInfo:
        """Delete a file or directory in this commit."""
        return self.client.delete_file(self._addr(path))

    def copy_file(self, src: str, path: str) -> CommitInfo:
        """Copy ``src`` (an address) to ``path`` in this commit."""
        return self.client.copy_file(src, self._addr(path))


def file_target(address: str, source: SourceLike) -> tuple[Address, str]:
    """Where ``put_file`` puts one source: the path given, or the source's name under a
    directory (``repo@branch`` or ``repo@branch:/dir/``)."""
    addr = parse_address(address)
    if addr.path is None or addr.trailing_slash:
        return addr, join_path(addr.path or "/", _source_name(source))
    return addr, addr.path


def glob_target(pattern: str) -> tuple[Address, str]:
    """``repo@ref:/glob`` -> (address of the commit, the glob)."""
    head, sep, glob = pattern.partition(":")
    if not sep or not glob:
        raise InvalidArgument("glob needs a pattern: 'repo@ref:/**/*.csv'")
    return parse_address(head), glob


def dir_target(
    address: str, local_dir: str | os.PathLike[str]
) -> tuple[Address, tuple[str, ...], Path]:
    """Where ``put_dir`` puts a local folder: (address, path segments, the folder)."""
    root = Path(local_dir)
    if not root.is_dir():
        raise SourceError(f"{str(root)!r} is not a directory")
    addr = parse_address(address)
    base = addr.path if addr.path is not None else join_path("/", root.resolve().name)
    return addr, split_path(base), root


def _walk_local(root: Path) -> Iterator[tuple[str, str]]:
    """(relative posix path, full path) for every regular file below ``root``, sorted."""
    stack = [("", str(root))]
    while stack:
        rel, full = stack.pop()
        with os.scandir(full) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for e in entries:
            name = f"{rel}/{e.name}" if rel else e.name
            if e.is_dir(follow_symlinks=False):
                subdirs.append((name, e.path))
            elif e.is_file():
                yield name, e.path
        stack.extend(reversed(subdirs))


def _source_name(source: SourceLike) -> str:
    if isinstance(source, os.PathLike):
        return Path(source).name
    if isinstance(source, str):
        return source_name(source)
    raise InvalidArgument("a stream or bytes source needs a destination path: repo@branch:/path")
