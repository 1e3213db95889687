"""The one client API of the SDK, over a transport: in-process or HTTP.

``tusk.Client`` (in-process on a home folder) and ``tusk.sdk.remote.RemoteClient`` (a server
over HTTP) are this class with another transport, so every public method lives here once:
it reads the caller's addresses (``repo``, ``repo@branch``, ``repo@<commit-id>``,
``repo@branch^2``, with a path ``repo@branch:/dir/file``), puts bare names in the current
project, checks what can be checked before anything is sent, and hands parsed arguments to
``self._t``. A transport (:class:`tusk.sdk.local.LocalTransport`,
:class:`tusk.sdk.remote.HttpTransport`) only carries a call to the services or to the REST
API and brings back the same result types and exceptions. That is the seam: the two
transports have the same method names and signatures, and mypy checks every call here
against both.

This module imports neither transport, so ``import tusk`` and a command against a server
never load the storage layer, and an in-process command never loads httpx.

Listings come twice: ``list_*`` (and ``glob_files``, ``diff_file``) return lists, and
``iter_files``, ``iter_glob``, ``iter_diff`` and ``iter_commits`` are generators that read
as they go, so a listing of a million files is never held in memory. A generator does its
work when iterated: a bad address or a missing repo or path raises on the first ``next()``,
before any item. Stopping early is fine; ``close()`` it (or let it go) to free what it holds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from tusk.errors import InvalidArgument, SourceError
from tusk.pfs.models import (
    BranchInfo,
    BranchTrigger,
    CheckRunInfo,
    CommitInfo,
    DiffEntry,
    FileInfo,
    FsckReport,
    GcReport,
    ImportResult,
    MergeResult,
    ProjectInfo,
    ProtectionInfo,
    PutResult,
    RepoInfo,
    RetentionRule,
    TagInfo,
    check_changes,
)
from tusk.pfs.paths import join_path, split_path
from tusk.pfs.refs import Address, parse_address
from tusk.pfs.sourcetext import source_name
from tusk.sdk.auth import AuthMethods
from tusk.sdk.pipelines import PipelineMethods

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from tusk.pps.models import CheckInfo
    from tusk.sdk.local import LocalTransport
    from tusk.sdk.remote import HttpTransport
    from tusk.sdk.sql import SqlCommit, SqlRows
    from tusk.sdk.tablediff import TableDiff

Progress = Callable[[int], None]
SourceLike = str | os.PathLike[str] | bytes | BinaryIO


class FileReader(Protocol):
    """Random access to one file of one commit (:meth:`BaseClient.file_reader`)."""

    repo: str
    commit: str  # the commit's id: every read sees this commit, whatever its branch does
    path: str
    size: int

    def read(self, start: int, stop: int) -> bytes:
        """Bytes ``start`` up to ``stop`` of the file (clipped to its size)."""
        ...

    def close(self) -> None: ...


def ref_text(addr: Address) -> str:
    """The ref of an address as the services and the REST API take it (``branch~2``)."""
    return addr.ref.base + (f"~{addr.ref.ancestors}" if addr.ref.ancestors else "")


class BaseClient(PipelineMethods, AuthMethods):
    """What ``tusk.Client`` and ``RemoteClient`` share: every method, over ``self._t``."""

    _t: LocalTransport | HttpTransport

    @property
    def home(self) -> Path:
        """The home folder (for a server: the server's, as the server sees it)."""
        return self._t.home

    def close(self) -> None:
        """Release the database and file handles, or the connections to the server."""
        self._t.close()

    def __enter__(self) -> BaseClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Projects (a repo of another project than default is named project/repo)

    def create_project(self, name: str, description: str = "", update: bool = False) -> ProjectInfo:
        """Create a project; with ``update=True`` an existing one gets the new description."""
        return self._t.create_project(name, description, update)

    def list_projects(self) -> list[ProjectInfo]:
        """Every project, by name, with its repos."""
        return self._t.list_projects()

    def inspect_project(self, name: str) -> ProjectInfo:
        """A project's description, creation time and repos."""
        return self._t.inspect_project(name)

    def delete_project(self, name: str) -> None:
        """Delete an empty project (never ``default``); refused while it has repos."""
        self._t.delete_project(name)

    # Repos

    def create_repo(self, name: str, description: str = "", update: bool = False) -> RepoInfo:
        """Create a repo; with ``update=True`` an existing repo gets the new description."""
        return self._t.create_repo(self._repo(name), description, update)

    def inspect_repo(self, name: str) -> RepoInfo:
        """A repo's description, size (of master's head) and branches."""
        return self._t.inspect_repo(self._repo(name))

    def list_repos(self) -> list[RepoInfo]:
        """Every repo, by name."""
        return self._t.list_repos()

    def delete_repo(self, name: str, force: bool = False) -> None:
        """Delete a repo; refused while another repo's branch names it in provenance."""
        self._t.delete_repo(self._repo(name), force)

    # Branches

    def create_branch(
        self,
        address: str,
        head: str | None = None,
        provenance: Sequence[str] = (),
        *,
        trigger: str | None = None,
        trigger_size: str | int | None = None,
        trigger_commits: int | None = None,
        trigger_cron: str | None = None,
        trigger_all: bool = False,
    ) -> BranchInfo:
        """Create ``repo@branch`` at ``head`` (a branch, commit or ancestor ref), or move it.

        ``trigger`` names a branch of the same repo for this one to follow (Pachyderm's branch
        trigger): when a commit finishes there, this branch moves to it if the conditions hold
        since its own head: ``trigger_size`` more bytes (``"100MB"``), ``trigger_commits``
        more commits, a ``trigger_cron`` tick (``"@every 1h"``) since it last moved; any one,
        or each with ``trigger_all``; none given: every commit. On an existing branch it
        replaces the trigger.
        """
        addr = self._parse(address)
        prov = [(text, parse_address(text)) for text in map(self._address, provenance)]
        follow = None
        if trigger is not None:
            name = trigger
            if "@" in trigger:  # repo@branch: only this repo's branches can be followed
                other = self._parse(trigger)
                if other.repo != addr.repo:
                    raise InvalidArgument(
                        f"trigger of {addr.repo}@{addr.ref.base}: {trigger} is a branch of "
                        "another repo; a trigger follows a branch of the same repo (give just "
                        f"its name, e.g. --trigger {other.ref.base})"
                    )
                name = other.ref.base
            size = str(trigger_size) if trigger_size is not None else None
            follow = BranchTrigger(name, size, trigger_commits, trigger_cron, trigger_all)
        elif trigger_size is not None or trigger_commits or trigger_cron or trigger_all:
            raise InvalidArgument(
                "trigger conditions need the branch to follow: give trigger (--trigger master)"
            )
        return self._t.create_branch(addr, head, prov, follow)

    def inspect_branch(self, address: str) -> BranchInfo:
        """Head, provenance and subvenance of ``repo@branch``."""
        return self._t.inspect_branch(self._parse(address))

    def list_branches(self, repo: str) -> list[BranchInfo]:
        """The branches of a repo."""
        return self._t.list_branches(self._repo(repo))

    def delete_branch(self, address: str, force: bool = False) -> None:
        """Delete ``repo@branch`` (its commits stay reachable by id)."""
        self._t.delete_branch(self._parse(address), force)

    # Protected branches

    def protect_branch(self, address: str, require_checks: Sequence[str] = ()) -> ProtectionInfo:
        """Protect ``repo@branch``: direct writes, moves and deletes are refused on every
        edge (BranchProtected); only :meth:`merge` from another branch moves it, once every
        check of ``require_checks`` (defined checks covering the branch) passed on the merge
        result."""
        addr = self._parse(address)
        return self._t.protect_branch(addr.repo, addr.ref.base, list(require_checks))

    def unprotect_branch(self, address: str) -> None:
        addr = self._parse(address)
        self._t.unprotect_branch(addr.repo, addr.ref.base)

    @contextmanager
    def force_protected(self) -> Iterator[None]:
        """Within: writes to protected branches go through. A server allows it to a
        clusterAdmin only and records each such write in the audit log; an embedded store
        (no identities) to anyone."""
        with self._t.force_protected():
            yield

    def list_protections(self, repo: str | None = None) -> list[ProtectionInfo]:
        """The protected branches of ``repo``, or of every repo."""
        return self._t.list_protections(self._repo(repo) if repo is not None else None)

    # Checks (kind: check documents, declared with apply): they gate commits and merges

    def list_checks(self, repo: str | None = None) -> list[CheckInfo]:
        """The checks that gate ``repo``'s branches, or every repo's."""
        return self._t.list_checks(self._repo(repo) if repo is not None else None)

    def delete_check(self, name: str) -> None:
        """Remove a check: the branches it covered move without it (a protected branch
        that requires it refuses merges until the rule is changed)."""
        self._t.delete_check(name)

    def check_runs(self, address: str) -> list[CheckRunInfo]:
        """The checks run on the commit ``repo@ref`` names (or a failed candidate's id)."""
        addr = self._parse(address)
        return self._t.check_runs(addr.repo, ref_text(addr))

    def inspect_check_run(self, address: str, name: str) -> CheckRunInfo:
        """Check ``name``'s run on the commit ``address`` names, with its log."""
        addr = self._parse(address)
        return self._t.inspect_check_run(addr.repo, ref_text(addr), name)

    # Tags

    def create_tag(self, address: str, name: str) -> TagInfo:
        """Name the finished commit ``address`` (``repo@ref``) ``name``: ``repo@name`` then
        reads it anywhere a commit is taken. A tagged commit cannot be deleted or squashed."""
        addr = self._parse(address)
        return self._t.create_tag(addr.repo, str(addr.ref), name)

    def list_tags(self, repo: str) -> list[TagInfo]:
        return self._t.list_tags(self._repo(repo))

    def inspect_tag(self, address: str) -> TagInfo:
        addr = self._parse(address)
        return self._t.inspect_tag(addr.repo, addr.ref.base)

    def delete_tag(self, address: str) -> None:
        """Remove the tag ``repo@name`` (its commit stays)."""
        addr = self._parse(address)
        self._t.delete_tag(addr.repo, addr.ref.base)

    # Commits

    def start_commit(
        self,
        address: str,
        parent: str | None = None,
        description: str = "",
        provenance: Sequence[str] = (),
    ) -> CommitInfo:
        """Open a commit on ``repo@branch``; writes to the branch go into it until finished.
        ``provenance``: finished commits (``repo@ref``) its data is computed from, recorded
        as a job's inputs are (inspect commit, lineage and retention follow them)."""
        prov = [(a.repo, ref_text(a)) for a in map(self._parse, provenance)]
        return self._t.start_commit(self._parse(address), parent, description, prov)

    def finish_commit(self, address: str, description: str | None = None) -> CommitInfo:
        """Finish the open commit on ``repo@branch`` (or ``repo@<commit-id>``)."""
        return self._t.finish_commit(self._parse(address), description)

    def inspect_commit(self, address: str) -> CommitInfo:
        """One commit: state, parent, children, size, branches."""
        return self._t.inspect_commit(self._parse(address))

    def list_commits(self, address: str, number: int | None = None) -> list[CommitInfo]:
        """Newest first: a branch's history for ``repo@branch``, every commit for ``repo``."""
        return list(self.iter_commits(address, number))

    def iter_commits(self, address: str, number: int | None = None) -> Iterator[CommitInfo]:
        """:meth:`list_commits`, one commit at a time (read a batch at a time)."""
        addr = self._parse(address)
        ref = ref_text(addr) if addr.explicit_ref else None
        yield from self._t.iter_commits(addr.repo, ref, number, False)

    def log(self, address: str, number: int | None = None) -> list[CommitInfo]:
        """A branch's or commit's history through every parent (merged lines too), newest
        first; :meth:`list_commits` follows first parents only."""
        addr = self._parse(address)
        return list(self._t.iter_commits(addr.repo, ref_text(addr), number, True))

    def wait_commit(
        self,
        address: str,
        timeout: float | None = None,
        *,
        run: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> CommitInfo:
        """Block until the commit is finished; raise Timeout after ``timeout`` seconds.

        A branch names its head as it is now. In-process, if no scheduler runs on this home,
        pending jobs run in this process meanwhile (``run=False``: only wait, and warn once);
        ``log`` gets their progress lines. A server runs its jobs itself. JobFailed when the
        job that makes the commit failed.
        """
        return self._t.wait_commit(self._parse(address), timeout, run, log)

    def squash_commit(self, address: str, description: str | None = None) -> CommitInfo:
        """Merge a commit into its parent."""
        return self._t.squash_commit(self._parse(address), description)

    def delete_commit(self, address: str) -> None:
        """Delete a branch head commit; the branch moves back to its parent."""
        self._t.delete_commit(self._parse(address))

    def merge(
        self,
        source: str,
        into: str,
        *,
        message: str | None = None,
        strategy: str = "fail",
        resolve: Mapping[str, str | bytes | os.PathLike[str]] | None = None,
        dry_run: bool = False,
        run_pipelines: bool = False,
        timeout: float | None = None,
    ) -> MergeResult:
        """Merge ``source`` (``repo@branch``, ``repo@commit`` or ``repo@tag``) into the branch
        ``into`` of the same repo: a three-way merge at file level, committed as one commit
        with two parents. Conflicting paths raise MergeConflict (nothing committed) unless
        ``strategy`` (``ours`` or ``theirs``) or ``resolve`` (path -> ``"ours"``, ``"theirs"``,
        the content as bytes, or a local file's path) settles them. ``dry_run``: report the
        conflicts and what would change, commit nothing.

        ``run_pipelines``: every pipeline downstream runs on the merge first (on a temporary
        branch); ``into`` and every output branch then move together, as one commit set, only
        if every job succeeded (JobFailed naming the failed jobs and datums otherwise, and
        nothing moved). ``timeout`` bounds the wait for the jobs (seconds)."""
        if run_pipelines and dry_run:
            raise InvalidArgument("--run-pipelines and --dry-run do not go together")
        addr = self._parse(source)
        return self._t.merge(
            addr.repo, ref_text(addr), into, message, strategy, dict(resolve or {}), dry_run,
            run_pipelines, timeout,
        )  # fmt: skip

    def inspect_commit_set(self, commit_set: str) -> list[CommitInfo]:
        """Every commit in a commit set (all commits caused by one change)."""
        return self._t.inspect_commit_set(commit_set)

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
            self.delete_commit(f"{info.repo}@{info.id}")
            raise
        handle.info = self.finish_commit(f"{info.repo}@{info.id}")

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
        return self._t.put_file(addr, path, source, append, description, progress)

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
        prefix = split_path(addr.path or "/")
        members = (((*prefix, *split_path(p)), s) for p, s in items)
        return self._t.put_files(addr, members, append, description, progress)

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
        return self._t.put_dir(addr, prefix, root, append, description, progress)

    def delete_file(self, address: str, description: str = "") -> CommitInfo:
        """Delete a file or a whole directory at ``repo@branch:/path``."""
        addr = self._parse(address)
        if addr.path is None:
            raise InvalidArgument("delete file needs a path: repo@branch:/path")
        return self._t.delete_file(addr, addr.path, description)

    def copy_file(self, src: str, dst: str) -> CommitInfo:
        """Copy a file or directory (any repo or commit) to ``repo@branch:/path``; no data moves."""
        src = self._address(src)
        s = parse_address(src)
        d = self._parse(dst)
        if d.path is None:
            raise InvalidArgument("copy file needs a destination path: repo@branch:/path")
        return self._t.copy_file(src, s, d, d.path)

    def modify_files(
        self, address: str, changes: Sequence[tuple[str, ...]], description: str = ""
    ) -> CommitInfo:
        """Deletes and copies at ``repo@branch`` (or an open commit) as one commit, in one
        transaction: all or nothing. Each change is ``("delete", "/path")`` (a path that is
        not there is skipped) or ``("copy", "repo@ref:/path", "/path")`` (any repo or commit;
        no data moves)."""
        check_changes(changes)
        addr = self._parse(address)
        resolved = [
            (c[0], self._address(c[1]), c[2]) if c and c[0] == "copy" and len(c) == 3 else c
            for c in changes
        ]
        return self._t.modify_files(addr, resolved, description)

    # Files: reads

    def open_file(self, address: str) -> Iterator[bytes]:
        """Stream a file's bytes, chunk by chunk."""
        return self._t.open_file(self._parse(address))

    def get_file(self, address: str) -> bytes:
        """A whole file's bytes (use :meth:`open_file` or :meth:`get_file_to` for big files)."""
        return b"".join(self.open_file(address))

    def get_file_to(self, address: str, target: BinaryIO, progress: Progress | None = None) -> int:
        """Write a file's bytes to a binary stream; return the byte count."""
        n = 0
        for block in self.open_file(address):
            target.write(block)
            n += len(block)
            if progress:
                progress(len(block))
        return n

    def get_dir(
        self, address: str, local_dir: str | os.PathLike[str], progress: Progress | None = None
    ) -> int:
        """Write every file at or below ``repo@ref:/path`` into ``local_dir``; return the count."""
        return self._t.get_dir(self._parse(address), Path(local_dir), progress)

    def get_tar(self, address: str, target: BinaryIO, progress: Progress | None = None) -> int:
        """Write a tar stream of every file at or below ``repo@ref:/path``; return the count."""
        return self._t.get_tar(self._parse(address), target, progress)

    def inspect_file(self, address: str) -> FileInfo:
        """Type, size, hash and chunk count of a file or directory."""
        return self._t.inspect_file(self._parse(address))

    def list_files(self, address: str) -> list[FileInfo]:
        """The entries of a directory (or the file itself) at ``repo@ref:/path``."""
        return list(self.iter_files(address))

    def iter_files(self, address: str) -> Iterator[FileInfo]:
        """:meth:`list_files`, one entry at a time: ``for f in client.iter_files("r@master:/")``."""
        addr = self._parse(address)
        yield from self._t.iter_files(addr)

    def glob_files(self, pattern: str) -> list[FileInfo]:
        """Files and directories matching ``repo@ref:/glob`` (``*``, ``?``, ``[..]``, ``**``)."""
        return list(self.iter_glob(pattern))

    def iter_glob(self, pattern: str) -> Iterator[FileInfo]:
        """:meth:`glob_files`, one match at a time, in path order."""
        addr, glob = glob_target(self._address(pattern))
        yield from self._t.iter_glob(addr, glob)

    def diff_file(self, new: str, old: str | None = None) -> list[DiffEntry]:
        """Files added, removed or changed from ``old`` (default: new's parent) to ``new``."""
        return list(self.iter_diff(new, old))

    def iter_diff(self, new: str, old: str | None = None) -> Iterator[DiffEntry]:
        """:meth:`diff_file`, one change at a time, in path order."""
        new_addr = self._parse(new)
        old_text = self._address(old) if old is not None else None
        old_addr = parse_address(old_text) if old_text is not None else None
        yield from self._t.iter_diff(new_addr, old_text, old_addr)

    def file_reader(self, address: str) -> FileReader:
        """Random access to the file at ``repo@ref:/path``: ``read(start, stop)`` fetches only
        the chunks holding those bytes (over HTTP, one ranged GET). The ref is resolved once."""
        addr = self._parse(address)
        if addr.path is None:
            raise InvalidArgument("file_reader needs a path: repo@ref:/path")
        return self._t.file_reader(addr)

    # Tables: SQL over versioned files (DuckDB, in this process; see tusk.sdk.sql)

    def sql(self, query: str) -> pa.Table:
        """Run one SQL query (DuckDB's dialect) over versioned files; an Arrow table.

        Tables are files named as string literals, ``'repo@ref:/path/*.parquet'`` (CSV,
        Parquet and JSON lines, as DuckDB reads them; ``read_csv('repo@ref:/x.csv', ...)``
        for options). Each ref is pinned to its commit before the query runs, and DuckDB
        reads byte ranges through :meth:`file_reader`: nothing is copied to disk. Only
        queries run: writing, attaching or loading anything, or reading outside Tusk, raises
        QueryRefused. Needs ``pip install 'tusk-data[sql]'``.
        """
        from tusk.sdk.sql import run_query

        return run_query(self, query)

    def sql_df(self, query: str) -> pd.DataFrame:
        """:meth:`sql` as a pandas DataFrame (needs pandas)."""
        return self.sql(query).to_pandas()

    def sql_reader(self, query: str, batch_rows: int = 65_536) -> pa.RecordBatchReader:
        """:meth:`sql` as an Arrow stream: the schema first, then record batches as DuckDB
        makes them (a result larger than memory). Read it to the end, or ``close()`` it."""
        from tusk.sdk.sql import query_reader

        return query_reader(self, query, batch_rows)

    def sql_rows(self, query: str, batch_rows: int = 10_000) -> SqlRows:
        """:meth:`sql` as Python rows, without PyArrow: ``.columns`` (the names), then the
        rows as tuples while iterated (values as DuckDB's Python API gives them). Read it to
        the end, or ``close()`` it. What ``tusk sql`` prints from."""
        from tusk.sdk.sql import SqlRows

        return SqlRows(self, query, batch_rows)

    def sql_to(self, query: str, address: str, description: str = "") -> SqlCommit:
        """Run :meth:`sql` and commit its result as the file ``repo@branch:/path`` (Parquet,
        CSV or JSON lines, by the extension). The commit's description names the query and
        the exact commits and files it read; a Parquet result also carries them in its
        metadata (key ``tusk.lineage``)."""
        from tusk.sdk.sql import commit_query

        return commit_query(self, query, self._address(address), description)

    def diff_table(
        self, old: str, new: str, path: str | None = None, key: Sequence[str] = ("id",)
    ) -> TableDiff:
        """Rows added, removed and changed in one table from ``old`` to ``new``
        (``repo@ref[:/path]``; ``path`` names the file when they do not), matched by the
        ``key`` columns, which must be unique on both sides."""
        from tusk.sdk.tablediff import diff_tables

        return diff_tables(self, self._address(old), self._address(new), path, tuple(key))

    # Maintenance

    def fsck(self, references: bool = False) -> FsckReport:
        """Re-read every pack and check every hash and reference; with ``references``, also
        whether every object imported by reference is still what was imported."""
        return self._t.fsck(references)

    # Data where it lives (tusk import, tusk materialize)

    def import_objects(
        self,
        address: str,
        url: str,
        *,
        exclude: Sequence[str] = (),
        endpoint_url: str | None = None,
        description: str = "",
    ) -> ImportResult:
        """Commit one file per object below ``url`` (``s3://bucket/prefix``) at
        ``repo@branch:/path``, by reference: the objects are listed, not read; reads fetch
        their bytes from where they are, checked against the ETag seen now. ``exclude``:
        globs of keys (below the prefix) to leave out. Against a server, the server reads the
        bucket, with its credentials and ``endpoint_url``."""
        addr = self._parse(address)
        return self._t.import_objects(
            addr.repo, ref_text(addr), addr.path or "/", url, list(exclude), endpoint_url,
            description,
        )  # fmt: skip

    def copy_objects(
        self,
        address: str,
        url: str,
        *,
        exclude: Sequence[str] = (),
        endpoint_url: str | None = None,
        append: bool = False,
        description: str = "",
        progress: Progress | None = None,
    ) -> PutResult:
        """Copy every object below ``url`` (``s3://bucket/prefix``) under
        ``repo@branch:/path``, as one commit (``put file -r -f s3://...``): their bytes are
        read now, here, with this machine's AWS credentials, small objects several at a time
        (``S3Objects.fetch_many``)."""
        from tusk.storage.backends.objects import s3_objects

        objects = s3_objects(endpoint_url)
        selected, _listed = objects.select(url, exclude)
        if not selected:
            raise SourceError(f"no objects to copy under {url}")
        streams = objects.fetch_many(obj for obj, _parts in selected)
        items = (
            ("/".join(parts), stream)
            for (_obj, parts), stream in zip(selected, streams, strict=True)
        )
        return self.put_files(
            address, items, append=append, description=description, progress=progress
        )

    def materialize(self, address: str, description: str = "") -> ImportResult:
        """Copy the files imported by reference at or below ``repo@branch:/path`` into the
        store, in one new commit, so they no longer depend on their source."""
        addr = self._parse(address)
        return self._t.materialize(addr.repo, ref_text(addr), addr.path or "/", description)

    def gc(
        self,
        grace: float = 3600.0,
        dry_run: bool = False,
        repack_threshold: float = 0.5,
        retention: bool = True,
    ) -> GcReport:
        """Expire old commits by the repos' retention rules (``retention``), delete data no
        commit references and nobody touched within ``grace`` seconds, and rewrite packs
        whose live fraction is below ``repack_threshold`` (0: never)."""
        return self._t.gc(grace, dry_run, repack_threshold, retention)

    # Retention

    def set_retention(
        self,
        repo: str,
        keep_last: int | None = None,
        keep_within: float | None = None,
        keep_tagged: bool = True,
    ) -> RetentionRule:
        """Which old commits of ``repo`` gc expires: all but the ``keep_last`` newest of each
        branch, those finished within ``keep_within`` seconds and (``keep_tagged``) the
        tagged ones; heads and what kept outputs came from always stay."""
        return self._t.set_retention(self._repo(repo), keep_last, keep_within, keep_tagged)

    def list_retention(self, repo: str | None = None) -> list[RetentionRule]:
        """The retention rules of ``repo``, or of every repo."""
        return self._t.list_retention(self._repo(repo) if repo is not None else None)

    def delete_retention(self, repo: str) -> None:
        """Remove ``repo``'s retention rule: gc keeps all its commits again."""
        self._t.delete_retention(self._repo(repo))

    def stats(self) -> dict[str, int]:
        """Counts of repos, commits, nodes, packs, chunks and pack bytes."""
        return self._t.stats()


class CommitHandle:
    """Writes into one open commit; see :meth:`BaseClient.commit`."""

    def __init__(self, client: BaseClient, info: CommitInfo) -> None:
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


def walk_local(root: Path) -> Iterator[tuple[str, str]]:
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
