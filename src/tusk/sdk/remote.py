"""``RemoteClient``: the SDK over HTTP, with exactly the methods of the in-process ``Client``.

``tusk.Client(address="http://host:7800")`` (or ``$TUSK_ADDRESS``) returns one. Addresses are
parsed here as the in-process client parses them, so a bad address fails the same way before
any request; the server's answers come back as the same result dataclasses, its errors as
the same exception classes (by their ``code``).

Uploads stream: a file goes up as the raw body of one PUT, read a MiB at a time; several
files (``put_files``, ``put_dir``) as one tar stream built on the fly, so that they land in
one commit. Downloads stream the other way; ``get_tar`` and ``get_dir`` read a tar stream.
Nothing is committed unless a whole upload arrives.

The ``iter_*`` listings ask for NDJSON (``Accept: application/x-ndjson``) and decode each line
as it arrives; stopping early closes the response (the connection is dropped, not drained).
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast
from urllib.parse import quote

import httpx

from tusk.api.wire import (
    API_PREFIX,
    BLOCK,
    MAX_WAIT,
    NDJSON,
    decode,
    decode_list,
    error_from,
    is_error_body,
    ndjson_values,
    tar_end,
    tar_header,
    tar_padding,
    timed_out,
    tusk_version,
)
from tusk.config import setting
from tusk.errors import InvalidArgument, SourceError, StorageError, Timeout, TuskError, Unavailable
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
from tusk.pfs.paths import split_path
from tusk.pfs.refs import Address, parse_address
from tusk.pfs.sources import _local_error, is_url
from tusk.pps.models import (
    ApplyResult,
    DatumInfo,
    JobInfo,
    LineageStep,
    LogLine,
    PipelineInfo,
    SecretInfo,
)
from tusk.sdk.client import (
    CommitHandle,
    FileReads,
    Progress,
    SourceLike,
    _ref_text,
    _walk_local,
    dir_target,
    file_target,
    glob_target,
)
from tusk.sdk.pipelines import (
    ApplyFiles,
    SecretManifest,
    read_manifest,
    read_spec_source,
    split_job,
)
from tusk.sdk.projects import ProjectScope, current_project

if TYPE_CHECKING:
    from tusk.pps.apply import Document
    from tusk.sdk.client import Client

T = TypeVar("T")
SPOOL = 8 * 1024 * 1024  # a stream of unknown size is kept in memory up to this, then on disk


def normalize_address(address: str) -> str:
    """``host:port`` or a URL -> ``http(s)://host:port`` (no trailing slash, no /api/v1)."""
    text = address.strip().rstrip("/")
    if not text:
        raise InvalidArgument("empty server address: use http://host:port")
    if "://" not in text:
        text = "http://" + text
    if not text.startswith(("http://", "https://")):
        raise InvalidArgument(f"invalid server address {address!r}: use http://host:port")
    if text.endswith(API_PREFIX):
        text = text[: -len(API_PREFIX)]
    return text


def _seg(text: str) -> str:
    return quote(text, safe="")


def _path(path: str | None) -> str:
    return quote((path or "/").lstrip("/"), safe="/")


def _params(**kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in kw.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return out


class RemoteClient(ApplyFiles, FileReads, ProjectScope):
    """A Tusk client talking to ``tusk up`` / ``tusk serve`` at ``address`` over HTTP."""

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        project: str | None = None,
    ) -> None:
        self.project = current_project(project)
        given = setting("address", address)
        token = setting("token", token)
        if not given:
            raise InvalidArgument(
                "no server address: pass address=, set TUSK_ADDRESS or use a tusk context"
            )
        self.address = normalize_address(given)
        headers = {"user-agent": f"tusk-sdk/{tusk_version()}"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        # No read timeout: fsck, gc and big commits take what they take; waits are long polls
        # that the server ends after MAX_WAIT seconds.
        self._http = httpx.Client(
            base_url=self.address + API_PREFIX,
            headers=headers,
            timeout=httpx.Timeout(timeout, read=None),
        )
        self._home: Path | None = None

    def __repr__(self) -> str:
        return f"RemoteClient({self.address!r})"

    @property
    def home(self) -> Path:
        """The server's home folder (as the server sees it)."""
        if self._home is None:
            self._home = Path(self._call("GET", "/version")["home"])
        return self._home

    def close(self) -> None:
        """Close the connections to the server."""
        self._http.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Plumbing

    def _unreachable(self, exc: Exception) -> TuskError:
        return Unavailable(
            f"cannot reach the Tusk server at {self.address} ({exc or type(exc).__name__}); "
            "is it running (tusk up, tusk serve)?"
        )

    def _send(self, method: str, url: str, *, stream: bool = False, **kw: Any) -> httpx.Response:
        try:
            request = self._http.build_request(method, url, **kw)
            response = self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            try:
                body = response.json() if not stream else _json_of(response)
            except ValueError:
                body = None
            finally:
                response.close()
            raise error_from(response.status_code, body)
        return response

    def _call(self, method: str, url: str, **kw: Any) -> Any:
        response = self._send(method, url, **kw)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _wait(self, url: str, timeout: float | None) -> Any:
        """A long poll: ask in slices of at most MAX_WAIT seconds until done or ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = MAX_WAIT if deadline is None else max(0.0, deadline - time.monotonic())
            last = deadline is not None and left <= MAX_WAIT
            try:
                return self._call("GET", url, params={"timeout": min(left, MAX_WAIT)})
            except Timeout as exc:
                if not last:
                    continue
                assert timeout is not None
                raise timed_out(exc, timeout) from None

    def _commit_url(self, addr: Address, *rest: str) -> str:
        return "/".join((f"/repos/{_seg(addr.repo)}/commits/{_seg(_ref_text(addr))}", *rest))

    def _blocks(self, response: httpx.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_bytes()
        except httpx.HTTPError as exc:
            raise StorageError(f"the download from {self.address} broke off: {exc}") from exc
        finally:
            response.close()

    def _stream(self, cls: type[T], url: str, params: dict[str, Any] | None = None) -> Iterator[T]:
        """A listing as NDJSON, each line decoded into ``cls`` as it arrives.

        The request goes out on the first ``next()``; its error, if any, raises there. The
        response is closed when the listing ends, fails, or is closed (or dropped) early.
        """
        response = self._send("GET", url, stream=True, params=params, headers={"accept": NDJSON})
        try:
            if response.headers.get("content-type", "").split(";")[0].strip() != NDJSON:
                # A server from before NDJSON listings answers with the whole JSON array.
                yield from decode_list(cls, _json_of(response))
                return
            for data in ndjson_values(response.iter_bytes()):
                if is_error_body(data):
                    raise error_from(response.status_code, data)
                yield decode(cls, data)
        except httpx.HTTPError as exc:
            raise StorageError(f"the listing from {self.address} broke off: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise StorageError(f"{self.address} sent a damaged listing: {exc}") from exc
        finally:
            response.close()

    def _upload(
        self,
        url: str,
        body: Iterator[bytes],
        params: dict[str, Any],
        content_type: str,
        size: int | None = None,
    ) -> PutResult:
        headers = {"content-type": content_type}
        if size is not None:  # a plain body, not chunked: less for the server to parse
            headers["content-length"] = str(size)
        return decode(
            PutResult,
            self._call(
                "PUT" if content_type == "application/octet-stream" else "POST",
                url,
                params=params,
                content=body,
                headers=headers,
            ),
        )

    # Projects (a repo of another project than default is named project/repo)

    def create_project(self, name: str, description: str = "", update: bool = False) -> ProjectInfo:
        """Create a project; with ``update=True`` an existing one gets the new description."""
        body = {"name": name, "description": description, "update": update}
        return decode(ProjectInfo, self._call("POST", "/projects", json=body))

    def list_projects(self) -> list[ProjectInfo]:
        """Every project, by name, with its repos."""
        return decode_list(ProjectInfo, self._call("GET", "/projects"))

    def inspect_project(self, name: str) -> ProjectInfo:
        """A project's description, creation time and repos."""
        return decode(ProjectInfo, self._call("GET", f"/projects/{_seg(name)}"))

    def delete_project(self, name: str) -> None:
        """Delete an empty project (never ``default``); refused while it has repos."""
        self._call("DELETE", f"/projects/{_seg(name)}")

    # Repos

    def create_repo(self, name: str, description: str = "", update: bool = False) -> RepoInfo:
        """Create a repo; with ``update=True`` an existing repo gets the new description."""
        body = {"name": self._repo(name), "description": description, "update": update}
        return decode(RepoInfo, self._call("POST", "/repos", json=body))

    def inspect_repo(self, name: str) -> RepoInfo:
        """A repo's description, size (of master's head) and branches."""
        return decode(RepoInfo, self._call("GET", f"/repos/{_seg(self._repo(name))}"))

    def list_repos(self) -> list[RepoInfo]:
        """Every repo, by name."""
        return decode_list(RepoInfo, self._call("GET", "/repos"))

    def delete_repo(self, name: str, force: bool = False) -> None:
        """Delete a repo; refused while another repo's branch names it in provenance."""
        url = f"/repos/{_seg(self._repo(name))}"
        self._call("DELETE", url, params=_params(force=force))

    # Branches

    def create_branch(
        self, address: str, head: str | None = None, provenance: Sequence[str] = ()
    ) -> BranchInfo:
        """Create ``repo@branch`` at ``head`` (a branch, commit or ancestor ref), or move it."""
        addr = self._parse(address)
        prov = [self._address(p) for p in provenance]
        for p in prov:
            parse_address(p)
        body = {"name": addr.ref.base, "head": head, "provenance": prov}
        return decode(
            BranchInfo, self._call("POST", f"/repos/{_seg(addr.repo)}/branches", json=body)
        )

    def inspect_branch(self, address: str) -> BranchInfo:
        """Head, provenance and subvenance of ``repo@branch``."""
        addr = self._parse(address)
        url = f"/repos/{_seg(addr.repo)}/branches/{_seg(addr.ref.base)}"
        return decode(BranchInfo, self._call("GET", url))

    def list_branches(self, repo: str) -> list[BranchInfo]:
        """The branches of a repo."""
        return decode_list(
            BranchInfo, self._call("GET", f"/repos/{_seg(self._repo(repo))}/branches")
        )

    def delete_branch(self, address: str, force: bool = False) -> None:
        """Delete ``repo@branch`` (its commits stay reachable by id)."""
        addr = self._parse(address)
        url = f"/repos/{_seg(addr.repo)}/branches/{_seg(addr.ref.base)}"
        self._call("DELETE", url, params=_params(force=force))

    # Commits

    def start_commit(
        self, address: str, parent: str | None = None, description: str = ""
    ) -> CommitInfo:
        """Open a commit on ``repo@branch``; writes to the branch go into it until finished."""
        addr = self._parse(address)
        body = {"branch": addr.ref.base, "parent": parent, "description": description}
        return decode(
            CommitInfo, self._call("POST", f"/repos/{_seg(addr.repo)}/commits", json=body)
        )

    def finish_commit(self, address: str, description: str | None = None) -> CommitInfo:
        """Finish the open commit on ``repo@branch`` (or ``repo@<commit-id>``)."""
        addr = self._parse(address)
        url = self._commit_url(addr, "finish")
        return decode(CommitInfo, self._call("POST", url, json={"description": description}))

    def inspect_commit(self, address: str) -> CommitInfo:
        """One commit: state, parent, children, size, branches."""
        return decode(CommitInfo, self._call("GET", self._commit_url(self._parse(address))))

    def list_commits(self, address: str, number: int | None = None) -> list[CommitInfo]:
        """Newest first: a branch's history for ``repo@branch``, every commit for ``repo``."""
        addr = self._parse(address)
        ref = _ref_text(addr) if addr.explicit_ref else None
        params = _params(ref=ref, number=number)
        return decode_list(
            CommitInfo, self._call("GET", f"/repos/{_seg(addr.repo)}/commits", params=params)
        )

    def iter_commits(self, address: str, number: int | None = None) -> Iterator[CommitInfo]:
        """:meth:`list_commits`, one commit at a time (streamed)."""
        addr = self._parse(address)
        ref = _ref_text(addr) if addr.explicit_ref else None
        params = _params(ref=ref, number=number)
        yield from self._stream(CommitInfo, f"/repos/{_seg(addr.repo)}/commits", params)

    def wait_commit(
        self,
        address: str,
        timeout: float | None = None,
        *,
        run: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> CommitInfo:
        """Block until the commit is finished; raise Timeout after ``timeout`` seconds.

        The server runs the jobs (``run`` and ``log`` are for in-process clients).
        """
        addr = self._parse(address)
        first = self.inspect_commit(address)  # a branch is resolved once, as in-process
        url = f"/repos/{_seg(addr.repo)}/commits/{_seg(first.id)}/wait"
        return decode(CommitInfo, self._wait(url, timeout))

    def squash_commit(self, address: str, description: str | None = None) -> CommitInfo:
        """Merge a commit into its parent."""
        url = self._commit_url(self._parse(address), "squash")
        return decode(CommitInfo, self._call("POST", url, json={"description": description}))

    def delete_commit(self, address: str) -> None:
        """Delete a branch head commit; the branch moves back to its parent."""
        self._call("DELETE", self._commit_url(self._parse(address)))

    def inspect_commit_set(self, commit_set: str) -> list[CommitInfo]:
        """Every commit in a commit set (all commits caused by one change)."""
        return decode_list(CommitInfo, self._call("GET", f"/commit-sets/{_seg(commit_set)}"))

    @contextmanager
    def commit(self, address: str, description: str = "") -> Iterator[CommitHandle]:
        """Open a commit, yield a handle to write through, finish it on success.

        On an exception the open commit is deleted, so nothing half-written becomes visible.
        """
        info = self.start_commit(address, description=description)
        handle = CommitHandle(cast("Client", self), info)
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
        blocks, size = _open_source(source)
        params = _params(append=append, description=description)
        url = self._commit_url(addr, "files", _path(path))
        return self._upload(
            url, _counted(blocks, progress), params, "application/octet-stream", size
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
        prefix = split_path(addr.path or "/")
        members = (((*prefix, *split_path(p)), _sized_source(s)) for p, s in items)
        return self._put_tar(addr, members, append, description, progress)

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
        members = (
            ((*prefix, *rel.split("/")), _sized_source(Path(full)))
            for rel, full in _walk_local(root)
        )
        return self._put_tar(addr, members, append, description, progress)

    def _put_tar(
        self,
        addr: Address,
        members: Iterator[tuple[tuple[str, ...], Callable[[], tuple[int, BinaryIO]]]],
        append: bool,
        description: str,
        progress: Progress | None,
    ) -> PutResult:
        body = _counted(_tar_of(members), progress)
        params = _params(append=append, description=description)
        return self._upload(self._commit_url(addr, "tar", ""), body, params, "application/x-tar")

    def delete_file(self, address: str, description: str = "") -> CommitInfo:
        """Delete a file or a whole directory at ``repo@branch:/path``."""
        addr = self._parse(address)
        if addr.path is None:
            raise InvalidArgument("delete file needs a path: repo@branch:/path")
        url = self._commit_url(addr, "files", _path(addr.path))
        params = _params(description=description)
        return decode(CommitInfo, self._call("DELETE", url, params=params))

    def copy_file(self, src: str, dst: str) -> CommitInfo:
        """Copy a file or directory (any repo or commit) to ``repo@branch:/path``; no data moves."""
        src = self._address(src)
        parse_address(src)
        d = self._parse(dst)
        if d.path is None:
            raise InvalidArgument("copy file needs a destination path: repo@branch:/path")
        url = self._commit_url(d, "copy", _path(d.path))
        return decode(CommitInfo, self._call("POST", url, json={"src": src}))

    # Files: reads

    def open_file(self, address: str) -> Iterator[bytes]:
        """Stream a file's bytes, chunk by chunk."""
        addr = self._parse(address)
        response = self._send("GET", self._commit_url(addr, "files", _path(addr.path)), stream=True)
        return self._blocks(response)

    def _open_tar(self, addr: Address) -> httpx.Response:
        return self._send("GET", self._commit_url(addr, "tar", _path(addr.path)), stream=True)

    def get_dir(
        self, address: str, local_dir: str | os.PathLike[str], progress: Progress | None = None
    ) -> int:
        """Write every file at or below ``repo@ref:/path`` into ``local_dir``; return the count."""
        addr = self._parse(address)
        base = addr.path or "/"
        root = Path(local_dir)
        count = 0
        stream = io.BufferedReader(_Blocks(self._blocks(self._open_tar(addr))), BLOCK)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                path = "/" + member.name
                rel = path[len(base.rstrip("/")) + 1 :] if base != path else Path(path).name
                target = root.joinpath(*split_path(rel))
                target.parent.mkdir(parents=True, exist_ok=True)
                data = tar.extractfile(member)
                assert data is not None
                with open(target, "wb") as f:
                    while block := data.read(BLOCK):
                        f.write(block)
                        if progress:
                            progress(len(block))
                count += 1
        stream.close()
        return count

    def get_tar(self, address: str, target: BinaryIO, progress: Progress | None = None) -> int:
        """Write a tar stream of every file at or below ``repo@ref:/path``; return the count."""
        addr = self._parse(address)
        # The bytes go to ``target`` as they arrive; tarfile reads along only to count.
        tee = _Blocks(self._blocks(self._open_tar(addr)), target, progress)
        count = 0
        with tarfile.open(fileobj=io.BufferedReader(tee, BLOCK), mode="r|") as tar:
            for member in tar:
                count += member.isreg()
        tee.drain()
        return count

    def inspect_file(self, address: str) -> FileInfo:
        """Type, size, hash and chunk count of a file or directory."""
        addr = self._parse(address)
        return decode(FileInfo, self._call("GET", self._commit_url(addr, "info", _path(addr.path))))

    def list_files(self, address: str) -> list[FileInfo]:
        """The entries of a directory (or the file itself) at ``repo@ref:/path``."""
        addr = self._parse(address)
        url = self._commit_url(addr, "list", _path(addr.path))
        return decode_list(FileInfo, self._call("GET", url))

    def iter_files(self, address: str) -> Iterator[FileInfo]:
        """:meth:`list_files`, one entry at a time: ``for f in client.iter_files("r@master:/")``."""
        addr = self._parse(address)
        yield from self._stream(FileInfo, self._commit_url(addr, "list", _path(addr.path)))

    def glob_files(self, pattern: str) -> list[FileInfo]:
        """Files and directories matching ``repo@ref:/glob`` (``*``, ``?``, ``[..]``, ``**``)."""
        addr, glob = glob_target(self._address(pattern))
        url = self._commit_url(addr, "glob")
        return decode_list(FileInfo, self._call("GET", url, params={"pattern": glob}))

    def iter_glob(self, pattern: str) -> Iterator[FileInfo]:
        """:meth:`glob_files`, one match at a time, in path order."""
        addr, glob = glob_target(self._address(pattern))
        yield from self._stream(FileInfo, self._commit_url(addr, "glob"), {"pattern": glob})

    def _diff_request(self, new: str, old: str | None) -> tuple[str, dict[str, Any]]:
        new_addr = self._parse(new)
        if old is not None:
            old = self._address(old)
            parse_address(old)
        return self._commit_url(new_addr, "diff", _path(new_addr.path)), _params(old=old)

    def diff_file(self, new: str, old: str | None = None) -> list[DiffEntry]:
        """Files added, removed or changed from ``old`` (default: new's parent) to ``new``."""
        url, params = self._diff_request(new, old)
        return decode_list(DiffEntry, self._call("GET", url, params=params))

    def iter_diff(self, new: str, old: str | None = None) -> Iterator[DiffEntry]:
        """:meth:`diff_file`, one change at a time, in path order."""
        url, params = self._diff_request(new, old)
        yield from self._stream(DiffEntry, url, params)

    # Maintenance

    def fsck(self) -> FsckReport:
        """Re-read every pack and check every hash and reference."""
        return decode(FsckReport, self._call("POST", "/fsck"))

    def gc(self, grace: float = 3600.0, dry_run: bool = False) -> GcReport:
        """Delete data no commit references and nobody touched within ``grace`` seconds."""
        body = {"grace": grace, "dry_run": dry_run}
        return decode(GcReport, self._call("POST", "/gc", json=body))

    def stats(self) -> dict[str, int]:
        """Counts of repos, commits, nodes, packs, chunks and pack bytes."""
        return dict(self._call("GET", "/stats"))

    # Pipelines

    def create_pipeline(
        self,
        spec: dict[str, Any],
        *,
        update: bool = False,
        reprocess: bool = False,
        working_dir: str | os.PathLike[str] | None = None,
        origin: dict[str, Any] | None = None,
    ) -> PipelineInfo:
        """Create a pipeline from a spec dict (Pachyderm's spec); with ``update``, replace it.

        The transform runs in ``working_dir`` unless the spec sets ``transform.working_dir``
        (default: the current directory; a path on the server's machine).
        """
        where = dict(origin or {})
        where.setdefault("working_dir", str(Path(working_dir or os.getcwd()).resolve()))
        return self._create_pipeline(spec, where, update, reprocess)

    def _create_pipeline(
        self, spec: dict[str, Any], origin: dict[str, Any], update: bool, reprocess: bool
    ) -> PipelineInfo:
        body = {
            "spec": self._spec(spec),
            "update": update,
            "reprocess": reprocess,
            "origin": origin,
        }
        return decode(PipelineInfo, self._call("POST", "/pipelines", json=body))

    def create_pipelines_from(
        self, source: str, *, update: bool = False, reprocess: bool = False
    ) -> list[PipelineInfo]:
        """Create (or update) every pipeline in a spec file, URL or ``-``, in file order."""
        specs, origin = read_spec_source(source)
        return [self._create_pipeline(s, origin, update, reprocess) for s in specs]

    def apply(
        self,
        documents: list[Document | dict[str, Any]],
        *,
        prune: bool = False,
        dry_run: bool = False,
        reprocess: bool = False,
    ) -> ApplyResult:
        """Make repos and pipelines match ``documents`` in one transaction (``tusk apply``).

        Unchanged pipelines are left alone; ``prune`` deletes pipelines no document declares;
        ``dry_run`` only returns the plan. Every problem is raised before anything changes.
        """
        from tusk.sdk.gitops import as_documents

        body = {
            "documents": [
                {"spec": self._document(d.spec), "source": d.source, "origin": d.origin}
                for d in as_documents(documents)
            ],
            "prune": prune,
            "dry_run": dry_run,
            "reprocess": reprocess,
        }
        return decode(ApplyResult, self._call("POST", "/apply", json=body))

    def update_pipeline(
        self, spec: dict[str, Any], *, reprocess: bool = False, **kw: Any
    ) -> PipelineInfo:
        """A new version of a pipeline; ``reprocess`` reruns every datum under it."""
        return self.create_pipeline(spec, update=True, reprocess=reprocess, **kw)

    def inspect_pipeline(self, name: str, history: bool = False) -> PipelineInfo:
        params = _params(history=history)
        return decode(
            PipelineInfo, self._call("GET", f"/pipelines/{_seg(self._repo(name))}", params=params)
        )

    def list_pipelines(self) -> list[PipelineInfo]:
        return decode_list(PipelineInfo, self._call("GET", "/pipelines"))

    def delete_pipeline(self, name: str, *, keep_repo: bool = False, force: bool = False) -> None:
        params = _params(keep_repo=keep_repo, force=force)
        self._call("DELETE", f"/pipelines/{_seg(self._repo(name))}", params=params)

    def stop_pipeline(self, name: str) -> PipelineInfo:
        """Pause a pipeline: new input commits queue jobs that start when it is started."""
        return decode(PipelineInfo, self._call("POST", f"/pipelines/{_seg(self._repo(name))}/stop"))

    def start_pipeline(self, name: str) -> PipelineInfo:
        return decode(
            PipelineInfo, self._call("POST", f"/pipelines/{_seg(self._repo(name))}/start")
        )

    def run_pipeline(self, name: str, branch: str | None = None) -> CommitInfo:
        """Run the pipeline again on its inputs' current heads; returns the new output commit.

        With ``branch``, run it on that branch of its inputs, into that branch of its output
        repo (made from the usual branches if missing, upstream and downstream too).
        """
        url = f"/pipelines/{_seg(self._repo(name))}/run"
        return decode(CommitInfo, self._call("POST", url, params=_params(branch=branch)))

    def dry_run(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        """The datums a spec would have on the current data, without creating anything."""
        return list(self._call("POST", "/dry-run", json={"spec": self._spec(spec)}))

    # Jobs, datums, logs

    def _job_url(self, address: str, *rest: str) -> str:
        pipeline, job = split_job(self._job(address))
        base = (
            f"/jobs/{_seg(job)}"
            if pipeline is None
            else f"/pipelines/{_seg(pipeline)}/jobs/{_seg(job)}"
        )
        return "/".join((base, *rest))

    def list_jobs(
        self, pipeline: str | None = None, commit_set: str | None = None
    ) -> list[JobInfo]:
        params = _params(pipeline=self._repo(pipeline) if pipeline else None, commit_set=commit_set)
        return decode_list(JobInfo, self._call("GET", "/jobs", params=params))

    def inspect_job(self, address: str) -> JobInfo:
        return decode(JobInfo, self._call("GET", self._job_url(address)))

    def wait_job(
        self,
        address: str,
        timeout: float | None = None,
        *,
        run: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> JobInfo:
        """Block until a job is done (the server runs it)."""
        return decode(JobInfo, self._wait(self._job_url(address, "wait"), timeout))

    def stop_job(self, address: str) -> JobInfo:
        return decode(JobInfo, self._call("POST", self._job_url(address, "stop")))

    def list_datums(self, address: str) -> list[DatumInfo]:
        pipeline, _job = split_job(address)
        if pipeline is None:
            raise InvalidArgument("list datum needs pipeline@<job id>")
        return decode_list(DatumInfo, self._call("GET", self._job_url(address, "datums")))

    def inspect_datum(self, address: str, datum: str) -> DatumInfo:
        pipeline, _job = split_job(address)
        if pipeline is None:
            raise InvalidArgument("inspect datum needs pipeline@<job id> and a datum id")
        url = self._job_url(address, "datums", _seg(datum))
        return decode(DatumInfo, self._call("GET", url))

    def logs(
        self,
        pipeline: str,
        job: str | None = None,
        datum: str | None = None,
        after: int = 0,
    ) -> list[LogLine]:
        params = _params(job=job, datum=datum, after=after)
        url = f"/pipelines/{_seg(self._repo(pipeline))}/logs"
        return decode_list(LogLine, self._call("GET", url, params=params))

    def wait_commit_set(
        self,
        commit_set: str,
        timeout: float | None = None,
        *,
        run: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> list[JobInfo]:
        """Block until every job of a commit set is done; returns the jobs."""
        return decode_list(JobInfo, self._wait(f"/commit-sets/{_seg(commit_set)}/wait", timeout))

    def lineage(self, address: str, depth: int = 32) -> LineageStep:
        """Job, datum, inputs and code behind the file at ``repo@ref:/path``, up the graph."""
        addr = self._parse(address)
        if addr.path is None:
            raise InvalidArgument("lineage needs a file: repo@ref:/path")
        url = self._commit_url(addr, "lineage", _path(addr.path))
        return decode(LineageStep, self._call("GET", url, params={"depth": depth}))

    # Secrets (values go in, never come out; clusterAdmin when auth is on)

    def create_secret(self, manifest: SecretManifest) -> SecretInfo:
        """Store a Kubernetes Secret manifest (``kind: Secret``, ``metadata.name``, ``data`` in
        base64 and/or ``stringData``): a dict, JSON/YAML text or a file path. Its values are
        encrypted at rest; raises AlreadyExists if the name is taken (delete it first)."""
        body = {"manifest": read_manifest(manifest)}
        return decode(SecretInfo, self._call("POST", "/secrets", json=body))

    def list_secrets(self) -> list[SecretInfo]:
        """Every secret's name and keys (never the values)."""
        return decode_list(SecretInfo, self._call("GET", "/secrets"))

    def inspect_secret(self, name: str) -> SecretInfo:
        """A secret's keys and times (never the values)."""
        return decode(SecretInfo, self._call("GET", f"/secrets/{_seg(name)}"))

    def delete_secret(self, name: str) -> None:
        """Delete a secret; pipelines naming it fail their next job, saying so."""
        self._call("DELETE", f"/secrets/{_seg(name)}")

    # Auth (a server's; the in-process client has none)

    def auth_activate(self) -> str:
        """Turn auth on; returns the root token (user:root, clusterAdmin), shown this once.

        Needs no token; raises Conflict when auth is already on.
        """
        return str(self._call("POST", "/auth/activate")["token"])

    def auth_deactivate(self) -> None:
        """Turn auth off (user:root only): tokens and roles go, the audit log stays."""
        self._call("POST", "/auth/deactivate")

    def whoami(self) -> dict[str, Any]:
        """Who this client's token is: ``{principal, token_id, cluster_roles, active}``."""
        return cast("dict[str, Any]", self._call("GET", "/auth/whoami"))

    def create_token(
        self, principal: str | None = None, ttl: float | None = None, description: str = ""
    ) -> tuple[dict[str, Any], str]:
        """A new token for ``principal`` (default: the caller; others need clusterAdmin).

        ``ttl``: seconds until it expires (None: never). Returns ``(info, token)``; the token
        is shown this once.
        """
        body = {"principal": principal, "ttl": ttl, "description": description}
        out = self._call("POST", "/auth/tokens", json=body)
        return cast("dict[str, Any]", out["info"]), str(out["token"])

    def list_tokens(self) -> list[dict[str, Any]]:
        """The caller's tokens (every token for clusterAdmin), never their secrets."""
        return cast("list[dict[str, Any]]", self._call("GET", "/auth/tokens"))

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        """Revoke a token by its id: it is refused from its next request on."""
        return cast("dict[str, Any]", self._call("DELETE", f"/auth/tokens/{_seg(token_id)}"))

    def get_repo_roles(self, repo: str) -> dict[str, list[str]]:
        """Who has which role on a repo: ``{principal: [roles]}``."""
        return cast(
            "dict[str, list[str]]", self._call("GET", f"/auth/repos/{_seg(self._repo(repo))}/roles")
        )

    def set_repo_roles(
        self, repo: str, principal: str, roles: Sequence[str]
    ) -> dict[str, list[str]]:
        """Replace ``principal``'s roles on a repo (``[]`` or ``["none"]``: remove them).

        Returns the repo's roles after the change.
        """
        body = {"principal": principal, "roles": list(roles)}
        out = self._call("PUT", f"/auth/repos/{_seg(self._repo(repo))}/roles", json=body)
        return cast("dict[str, list[str]]", out)

    def get_project_roles(self, project: str) -> dict[str, list[str]]:
        """Who has which role on a project: ``{principal: [roles]}``."""
        out = self._call("GET", f"/auth/projects/{_seg(project)}/roles")
        return cast("dict[str, list[str]]", out)

    def set_project_roles(
        self, project: str, principal: str, roles: Sequence[str]
    ) -> dict[str, list[str]]:
        """Replace ``principal``'s roles on a project (projectOwner or clusterAdmin):
        projectViewer, projectWriter, projectOwner, or a repo role (repoReader, repoWriter,
        repoOwner) that then holds on every repo of the project; ``[]`` or ``["none"]``
        remove them. Returns the project's roles after the change.
        """
        body = {"principal": principal, "roles": list(roles)}
        out = self._call("PUT", f"/auth/projects/{_seg(project)}/roles", json=body)
        return cast("dict[str, list[str]]", out)

    def get_cluster_roles(self) -> dict[str, list[str]]:
        """Who has which cluster role: ``{principal: [roles]}`` (clusterAdmin)."""
        return cast("dict[str, list[str]]", self._call("GET", "/auth/cluster/roles"))

    def set_cluster_roles(self, principal: str, roles: Sequence[str]) -> dict[str, list[str]]:
        """Replace ``principal``'s cluster roles (clusterAdmin); returns them all after."""
        body = {"principal": principal, "roles": list(roles)}
        return cast("dict[str, list[str]]", self._call("PUT", "/auth/cluster/roles", json=body))

    def check_repo(self, repo: str) -> dict[str, Any]:
        """The caller's roles and permissions on a repo: ``{principal, repo, roles, ...}``."""
        return cast(
            "dict[str, Any]", self._call("GET", f"/auth/repos/{_seg(self._repo(repo))}/check")
        )

    def audit(
        self,
        user: str | None = None,
        repo: str | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """The audit log, newest first (clusterAdmin).

        ``user``: one principal's entries; ``repo``: one repo's; ``since``: seconds back from
        now; ``limit``: at most this many entries.
        """
        params = _params(
            user=user, repo=self._repo(repo) if repo else None, since=since, limit=limit
        )
        return cast("list[dict[str, Any]]", self._call("GET", "/audit", params=params))

    # Running jobs here: not over HTTP

    def run_scheduler(
        self,
        stop: threading.Event | None = None,
        *,
        once: bool = False,
        sandbox: str | None = None,
        log: Callable[[str], None] | None = None,
        executor: str | None = None,
        role: str = "all",
        api_url: str | None = None,
    ) -> None:
        """Not remote: the scheduler runs with the server (``tusk up`` on its machine)."""
        raise InvalidArgument(
            f"the scheduler runs on the server ({self.address}): start it there with tusk up"
        )

    def scheduler_running(self) -> bool | None:
        """None: the server runs the jobs (or its ``tusk serve`` says it does not)."""
        return None

    def sandbox_mode(self, sandbox: str | None = None) -> str:
        """Not remote: the sandbox is the server's business (``tusk up --sandbox``)."""
        raise InvalidArgument(
            f"the sandbox is chosen on the server ({self.address}): tusk up --sandbox MODE"
        )


def _json_of(response: httpx.Response) -> Any:
    response.read()
    return response.json()


# Upload bodies


def _counted(blocks: Iterator[bytes], progress: Progress | None) -> Iterator[bytes]:
    """Blocks of about BLOCK bytes: tar headers and small files are joined up, so that 10^5
    small files do not become 10^5 writes to the socket and chunks for the server to parse."""
    held: list[bytes] = []
    size = 0
    for block in blocks:
        if progress is not None:
            progress(len(block))
        if len(block) >= BLOCK and not held:
            yield block
            continue
        held.append(block)
        size += len(block)
        if size >= BLOCK:
            yield b"".join(held)
            held, size = [], 0
    if held:
        yield b"".join(held)


def _read_blocks(f: BinaryIO, size: int | None = None) -> Iterator[bytes]:
    """Blocks of ``f`` (exactly ``size`` bytes of it, when given)."""
    left = size
    while left is None or left > 0:
        block = f.read(BLOCK if left is None else min(BLOCK, left))
        if not block:
            break
        if left is not None:
            left -= len(block)
        yield block
    if left:
        raise SourceError(f"{getattr(f, 'name', 'a stream')!r} shrank while it was being read")


def _open_local(path: str | os.PathLike[str]) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise _local_error(exc, os.fspath(path)) from exc


def _open_source(source: SourceLike) -> tuple[Iterator[bytes], int | None]:
    """The bytes of a source as blocks, and their count when known up front (a local file is
    opened now, so a missing one fails before any request)."""
    if isinstance(source, bytes):
        return (iter([source]) if source else iter(())), len(source)
    if isinstance(source, os.PathLike) or (
        isinstance(source, str) and source != "-" and not is_url(source)
    ):
        f = _open_local(source)
        size = os.fstat(f.fileno()).st_size
        return _closing_blocks(f, size), size
    if isinstance(source, str) and source == "-":
        return _read_blocks(sys.stdin.buffer), None
    if isinstance(source, str):
        return _url_blocks(source), None
    return _read_blocks(source), None


def _closing_blocks(f: BinaryIO, size: int | None = None) -> Iterator[bytes]:
    with f:
        yield from _read_blocks(f, size)


def _url_blocks(url: str) -> Iterator[bytes]:
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as resp:
            if resp.status_code >= 400:
                raise SourceError(f"GET {url} answered HTTP {resp.status_code}")
            yield from resp.iter_bytes(BLOCK)
    except httpx.HTTPError as exc:
        raise SourceError(f"cannot fetch {url}: {exc}") from exc


def _sized_source(source: SourceLike) -> Callable[[], tuple[int, BinaryIO]]:
    """A deferred opener: (size, stream) when called, so files open one at a time."""

    def open_() -> tuple[int, BinaryIO]:
        if isinstance(source, bytes):
            return len(source), io.BytesIO(source)
        if isinstance(source, os.PathLike) or (
            isinstance(source, str) and source != "-" and not is_url(source)
        ):
            f = _open_local(source)
            return os.fstat(f.fileno()).st_size, f
        if isinstance(source, str):
            return _spool(_open_source(source)[0])
        if source.seekable():
            here = source.tell()
            end = source.seek(0, os.SEEK_END)
            source.seek(here)
            return end - here, cast(BinaryIO, _Borrowed(source))
        return _spool(_read_blocks(source))

    return open_


def _spool(blocks: Iterator[bytes]) -> tuple[int, BinaryIO]:
    """A stream of unknown length, kept until its size is known (tar headers need it)."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 - closed by _tar_of
    size = 0
    for block in blocks:
        spool.write(block)
        size += len(block)
    spool.seek(0)
    return size, cast(BinaryIO, spool)


class _Borrowed(io.RawIOBase):
    """The caller's stream, read through but not closed."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1, /) -> bytes:
        return self._inner.read(n)


def _tar_of(
    members: Iterator[tuple[tuple[str, ...], Callable[[], tuple[int, BinaryIO]]]],
) -> Iterator[bytes]:
    written = 0
    for parts, open_ in members:
        if not parts:
            raise InvalidArgument("cannot put a file at /: give a file path")
        size, f = open_()
        with cast(Any, f):
            header = tar_header("/".join(parts), size)
            yield header
            yield from _read_blocks(f, size)
        pad = tar_padding(size)
        if pad:
            yield pad
        written += len(header) + size + len(pad)
    yield tar_end(written)


# Download streams


class _Blocks(io.RawIOBase):
    """A raw stream over downloaded blocks; with a ``copy`` target every block is written there
    as it is read (``get_tar`` passes the bytes through and lets tarfile count the files)."""

    def __init__(
        self,
        blocks: Iterator[bytes],
        copy: BinaryIO | None = None,
        progress: Progress | None = None,
    ) -> None:
        self._blocks = blocks
        self._buf = memoryview(b"")
        self._copy = copy
        self._progress = progress

    def readable(self) -> bool:
        return True

    def _next(self) -> bytes | None:
        block = next(self._blocks, None)
        if block is not None:
            if self._copy is not None:
                self._copy.write(block)
            if self._progress is not None:
                self._progress(len(block))
        return block

    def readinto(self, b: Any) -> int:
        while not self._buf:
            block = self._next()
            if block is None:
                return 0
            self._buf = memoryview(block)
        view = memoryview(b).cast("B")
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def drain(self) -> None:
        """Pass on what nobody read (the end of a tar stream)."""
        while self._next() is not None:
            pass
