"""``RemoteClient``: the SDK over HTTP, with exactly the methods of the in-process ``Client``.

``tusk.Client(address="http://host:7800")`` (or ``$TUSK_ADDRESS``) returns one. Both are
:class:`tusk.sdk.base.BaseClient`: addresses are parsed there, so a bad address fails the
same way before any request; :class:`HttpTransport` here carries each call to the REST API
and brings the server's answers back as the same result dataclasses, its errors as the same
exception classes (by their ``code``).

Uploads stream: a file goes up as the raw body of one PUT, read a MiB at a time; several
files (``put_files``, ``put_dir``) as one tar stream built on the fly, so that they land in
one commit. Downloads stream the other way; ``get_tar`` and ``get_dir`` read a tar stream.
Nothing is committed unless a whole upload arrives.

The listings ask for NDJSON (``Accept: application/x-ndjson``) and decode each line as it
arrives; stopping early closes the response (the connection is dropped, not drained).

This module never imports the storage layer (SQLAlchemy, the chunker, the object stores):
a command against a server loads httpx and the result types only.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, TypeVar, cast
from urllib.parse import quote

import httpx

from tusk.api.wire import (
    API_PREFIX,
    BLOCK,
    FORCE_HEADER,
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
from tusk.api.wire import url_segment as _seg
from tusk.config import setting
from tusk.errors import (
    InvalidArgument,
    NotFound,
    SourceError,
    StorageError,
    Timeout,
    TuskError,
    Unavailable,
)
from tusk.gcpause import start_up_done
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
)
from tusk.pfs.paths import split_path
from tusk.pfs.refs import Address
from tusk.pfs.sourcetext import is_url, local_error
from tusk.sdk.base import BaseClient, Progress, SourceLike, ref_text, walk_local
from tusk.sdk.projects import current_project

if TYPE_CHECKING:  # the pipeline layer's results load with the calls that return them
    from tusk.pps.cached_images import CachedImage
    from tusk.pps.models import (
        ApplyResult,
        CheckInfo,
        DatumInfo,
        DatumRun,
        JobInfo,
        LineageStep,
        LogLine,
        PipelineInfo,
        SecretInfo,
    )

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


def _path(path: str | None) -> str:
    return quote((path or "/").lstrip("/"), safe="/")


def _params(**kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in kw.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return out


class RemoteClient(BaseClient):
    """A Tusk client talking to ``tusk up`` / ``tusk serve`` at ``address`` over HTTP."""

    _t: HttpTransport

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
        if not given:
            raise InvalidArgument(
                "no server address: pass address=, set TUSK_ADDRESS or use a tusk context"
            )
        self._t = HttpTransport(normalize_address(given), setting("token", token), timeout)

    @property
    def address(self) -> str:
        """The server's URL (``http(s)://host:port``)."""
        return self._t.address

    def __repr__(self) -> str:
        return f"RemoteClient({self.address!r})"

    def __enter__(self) -> RemoteClient:
        return self


class HttpTransport:
    """The client API's calls as REST requests to the server at ``address``."""

    def __init__(self, address: str, token: str | None, timeout: float) -> None:
        self.address = address
        headers = {"user-agent": f"tusk-sdk/{tusk_version()}"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        # No read timeout: fsck, gc and big commits take what they take; waits are long polls
        # that the server ends after MAX_WAIT seconds.
        # Plain http:// never uses TLS (and the client follows no redirects), so it skips
        # building a verifying SSL context: loading the CA bundle costs every command ~30 ms.
        self.http = httpx.Client(
            base_url=address + API_PREFIX,
            headers=headers,
            timeout=httpx.Timeout(timeout, read=None),
            verify=address.startswith("https://"),
        )
        self._home: Path | None = None
        start_up_done()  # the `tusk` command has loaded what it runs on (tusk.gcpause)

    @property
    def home(self) -> Path:
        """The server's home folder (as the server sees it)."""
        if self._home is None:
            self._home = Path(self._call("GET", "/version")["home"])
        return self._home

    def close(self) -> None:
        self.http.close()

    # Plumbing

    def _unreachable(self, exc: Exception) -> TuskError:
        return Unavailable(
            f"cannot reach the Tusk server at {self.address} ({exc or type(exc).__name__}); "
            "is it running (tusk up, tusk serve)?"
        )

    def _send(self, method: str, url: str, *, stream: bool = False, **kw: Any) -> httpx.Response:
        try:
            request = self.http.build_request(method, url, **kw)
            response = self.http.send(request, stream=stream)
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

    def rest(self, what: str, method: str, url: str, **kw: Any) -> Any:
        """One REST call (``params`` without None values), its JSON answer."""
        if "params" in kw:
            kw["params"] = _params(**kw["params"])
        return self._call(method, url, **kw)

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
        return "/".join((f"/repos/{_seg(addr.repo)}/commits/{_seg(ref_text(addr))}", *rest))

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

    # Projects, repos, branches

    def create_project(self, name: str, description: str, update: bool) -> ProjectInfo:
        body = {"name": name, "description": description, "update": update}
        return decode(ProjectInfo, self._call("POST", "/projects", json=body))

    def list_projects(self) -> list[ProjectInfo]:
        return decode_list(ProjectInfo, self._call("GET", "/projects"))

    def inspect_project(self, name: str) -> ProjectInfo:
        return decode(ProjectInfo, self._call("GET", f"/projects/{_seg(name)}"))

    def delete_project(self, name: str) -> None:
        self._call("DELETE", f"/projects/{_seg(name)}")

    def create_repo(self, name: str, description: str, update: bool) -> RepoInfo:
        body = {"name": name, "description": description, "update": update}
        return decode(RepoInfo, self._call("POST", "/repos", json=body))

    def inspect_repo(self, name: str) -> RepoInfo:
        return decode(RepoInfo, self._call("GET", f"/repos/{_seg(name)}"))

    def list_repos(self) -> list[RepoInfo]:
        return decode_list(RepoInfo, self._call("GET", "/repos"))

    def delete_repo(self, name: str, force: bool) -> None:
        self._call("DELETE", f"/repos/{_seg(name)}", params=_params(force=force))

    def create_branch(
        self,
        addr: Address,
        head: str | None,
        provenance: list[tuple[str, Address]],
        trigger: BranchTrigger | None = None,
    ) -> BranchInfo:
        body: dict[str, Any] = {
            "name": addr.ref.base,
            "head": head,
            "provenance": [t for t, _ in provenance],
        }
        if trigger is not None:
            body["trigger"] = {k: v for k, v in trigger.to_dict().items() if k != "fired_at"}
        url = f"/repos/{_seg(addr.repo)}/branches"
        return decode(BranchInfo, self._call("POST", url, json=body))

    def inspect_branch(self, addr: Address) -> BranchInfo:
        url = f"/repos/{_seg(addr.repo)}/branches/{_seg(addr.ref.base)}"
        return decode(BranchInfo, self._call("GET", url))

    def list_branches(self, repo: str) -> list[BranchInfo]:
        return decode_list(BranchInfo, self._call("GET", f"/repos/{_seg(repo)}/branches"))

    def delete_branch(self, addr: Address, force: bool) -> None:
        url = f"/repos/{_seg(addr.repo)}/branches/{_seg(addr.ref.base)}"
        self._call("DELETE", url, params=_params(force=force))

    def protect_branch(self, repo: str, branch: str, checks: list[str]) -> ProtectionInfo:
        url = f"/repos/{_seg(repo)}/branches/{_seg(branch)}/protection"
        body = {"require_checks": checks}
        return decode(ProtectionInfo, self._call("POST", url, json=body))

    @contextmanager
    def force_protected(self) -> Iterator[None]:
        self.http.headers[FORCE_HEADER] = "1"
        try:
            yield
        finally:
            del self.http.headers[FORCE_HEADER]

    def unprotect_branch(self, repo: str, branch: str) -> None:
        self._call("DELETE", f"/repos/{_seg(repo)}/branches/{_seg(branch)}/protection")

    def list_protections(self, repo: str | None) -> list[ProtectionInfo]:
        return self._per_repo(ProtectionInfo, repo, "protections")

    def list_checks(self, repo: str | None) -> list[CheckInfo]:
        from tusk.pps.models import CheckInfo

        return self._per_repo(CheckInfo, repo, "checks")

    def delete_check(self, name: str) -> None:
        found = [c for c in self.list_checks(None) if c.name == name]
        if not found:
            raise NotFound(f"check {name} is not defined (tusk list check lists them)")
        self._call("DELETE", f"/repos/{_seg(found[0].repo)}/checks/{_seg(name)}")

    def check_runs(self, repo: str, ref: str) -> list[CheckRunInfo]:
        url = f"/repos/{_seg(repo)}/commits/{_seg(ref)}/checks"
        return decode_list(CheckRunInfo, self._call("GET", url))

    def inspect_check_run(self, repo: str, ref: str, name: str) -> CheckRunInfo:
        url = f"/repos/{_seg(repo)}/commits/{_seg(ref)}/checks/{_seg(name)}"
        return decode(CheckRunInfo, self._call("GET", url))

    def _per_repo(self, cls: type[T], repo: str | None, what: str) -> list[T]:
        """``GET /repos/{repo}/{what}`` of ``repo``, or of every repo the caller may list,
        for rules the API serves per repo (protections, retention)."""
        repos = [repo] if repo is not None else [r.name for r in self.list_repos()]
        out: list[T] = []
        for name in repos:
            out.extend(decode_list(cls, self._call("GET", f"/repos/{_seg(name)}/{what}")))
        return out

    def create_tag(self, repo: str, ref: str, name: str) -> TagInfo:
        body = {"name": name, "commit": ref}
        return decode(TagInfo, self._call("POST", f"/repos/{_seg(repo)}/tags", json=body))

    def list_tags(self, repo: str) -> list[TagInfo]:
        return decode_list(TagInfo, self._call("GET", f"/repos/{_seg(repo)}/tags"))

    def inspect_tag(self, repo: str, name: str) -> TagInfo:
        return decode(TagInfo, self._call("GET", f"/repos/{_seg(repo)}/tags/{_seg(name)}"))

    def delete_tag(self, repo: str, name: str) -> None:
        self._call("DELETE", f"/repos/{_seg(repo)}/tags/{_seg(name)}")

    # Commits

    def start_commit(
        self,
        addr: Address,
        parent: str | None,
        description: str,
        provenance: Sequence[tuple[str, str]] = (),
    ) -> CommitInfo:
        body = {"branch": addr.ref.base, "parent": parent, "description": description,
                "provenance": [f"{r}@{ref}" for r, ref in provenance]}  # fmt: skip
        url = f"/repos/{_seg(addr.repo)}/commits"
        return decode(CommitInfo, self._call("POST", url, json=body))

    def finish_commit(self, addr: Address, description: str | None) -> CommitInfo:
        url = self._commit_url(addr, "finish")
        return decode(CommitInfo, self._call("POST", url, json={"description": description}))

    def inspect_commit(self, addr: Address) -> CommitInfo:
        return decode(CommitInfo, self._call("GET", self._commit_url(addr)))

    def iter_commits(
        self, repo: str, ref: str | None, number: int | None, all_parents: bool
    ) -> Iterator[CommitInfo]:
        params = _params(ref=ref, number=number, all_parents=all_parents or None)
        return self._stream(CommitInfo, f"/repos/{_seg(repo)}/commits", params)

    def wait_commit(
        self,
        addr: Address,
        timeout: float | None,
        run: bool,
        log: Callable[[str], None] | None,
    ) -> CommitInfo:
        # The server runs the jobs (run and log are for in-process clients); a branch is
        # resolved once, as in-process.
        first = self.inspect_commit(addr)
        url = f"/repos/{_seg(addr.repo)}/commits/{_seg(first.id)}/wait"
        return decode(CommitInfo, self._wait(url, timeout))

    def squash_commit(self, addr: Address, description: str | None) -> CommitInfo:
        url = self._commit_url(addr, "squash")
        return decode(CommitInfo, self._call("POST", url, json={"description": description}))

    def delete_commit(self, addr: Address) -> None:
        self._call("DELETE", self._commit_url(addr))

    def merge(
        self,
        repo: str,
        source: str,
        into: str,
        message: str | None,
        strategy: str,
        resolve: dict[str, str | bytes | os.PathLike[str]],
        dry_run: bool,
        run_pipelines: bool,
        timeout: float | None,
    ) -> MergeResult:
        how: dict[str, Any] = {}
        for path, v in resolve.items():
            if isinstance(v, str):
                how[path] = v
                continue
            try:
                data = v if isinstance(v, bytes) else Path(v).read_bytes()
            except OSError as exc:
                raise local_error(exc, str(v)) from None
            how[path] = {"content": base64.b64encode(data).decode()}
        body = {"source": source, "message": message, "strategy": strategy, "resolve": how,
                "dry_run": dry_run, "run_pipelines": run_pipelines, "timeout": timeout}  # fmt: skip
        url = f"/repos/{_seg(repo)}/branches/{_seg(into)}/merge"
        return decode(MergeResult, self._call("POST", url, json=body))

    def inspect_commit_set(self, commit_set: str) -> list[CommitInfo]:
        return decode_list(CommitInfo, self._call("GET", f"/commit-sets/{_seg(commit_set)}"))

    # Files

    def put_file(
        self,
        addr: Address,
        path: str,
        source: SourceLike,
        append: bool,
        description: str,
        progress: Progress | None,
    ) -> PutResult:
        blocks, size = _open_source(source)
        params = _params(append=append, description=description)
        url = self._commit_url(addr, "files", _path(path))
        return self._upload(
            url, _counted(blocks, progress), params, "application/octet-stream", size
        )

    def put_files(
        self,
        addr: Address,
        members: Iterable[tuple[tuple[str, ...], SourceLike]],
        append: bool,
        description: str,
        progress: Progress | None,
    ) -> PutResult:
        sized = ((parts, _sized_source(s)) for parts, s in members)
        body = _counted(_tar_of(sized), progress)
        params = _params(append=append, description=description)
        return self._upload(self._commit_url(addr, "tar", ""), body, params, "application/x-tar")

    def put_dir(
        self,
        addr: Address,
        prefix: tuple[str, ...],
        root: Path,
        append: bool,
        description: str,
        progress: Progress | None,
    ) -> PutResult:
        members = (((*prefix, *rel.split("/")), full) for rel, full in walk_local(root))
        return self.put_files(addr, members, append, description, progress)

    def delete_file(self, addr: Address, path: str, description: str) -> CommitInfo:
        url = self._commit_url(addr, "files", _path(path))
        params = _params(description=description)
        return decode(CommitInfo, self._call("DELETE", url, params=params))

    def copy_file(self, src_text: str, src: Address, dst: Address, path: str) -> CommitInfo:
        url = self._commit_url(dst, "copy", _path(path))
        return decode(CommitInfo, self._call("POST", url, json={"src": src_text}))

    def modify_files(
        self, addr: Address, changes: Sequence[tuple[str, ...]], description: str
    ) -> CommitInfo:
        body = [
            {"delete": c[1]} if c[0] == "delete" and len(c) == 2
            else {"copy": c[1], "to": c[2]} if c[0] == "copy" and len(c) == 3
            else {"change": list(c)}  # refused by the server, with the reason
            for c in changes
        ]  # fmt: skip
        url = self._commit_url(addr, "changes")
        payload = {"changes": body, "description": description}
        return decode(CommitInfo, self._call("POST", url, json=payload))

    def open_file(self, addr: Address) -> Iterator[bytes]:
        response = self._send("GET", self._commit_url(addr, "files", _path(addr.path)), stream=True)
        return self._blocks(response)

    def file_reader(self, addr: Address) -> HttpFileReader:
        info = self.inspect_file(addr)
        if info.type != "file":
            from tusk.errors import PathConflict

            raise PathConflict(f"{addr} is a directory, not a file")
        return HttpFileReader(self, info)

    def read_range(self, repo: str, commit: str, path: str, start: int, stop: int) -> bytes:
        """Bytes ``start`` up to ``stop`` of a file, by one GET with a Range header."""
        url = self._file_url(repo, commit, path)
        response = self._send("GET", url, headers={"range": f"bytes={start}-{stop - 1}"})
        if response.status_code == 206:
            return response.content
        return response.content[start:stop]  # a server that sends the whole file

    @staticmethod
    def _file_url(repo: str, commit: str, path: str) -> str:
        return f"/repos/{_seg(repo)}/commits/{_seg(commit)}/files/{_path(path)}"

    def _open_tar(self, addr: Address) -> httpx.Response:
        return self._send("GET", self._commit_url(addr, "tar", _path(addr.path)), stream=True)

    def get_dir(self, addr: Address, root: Path, progress: Progress | None) -> int:
        base = addr.path or "/"
        count = 0
        stream = io.BufferedReader(_Blocks(self._blocks(self._open_tar(addr))), BLOCK)
        import tarfile

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

    def get_tar(self, addr: Address, target: BinaryIO, progress: Progress | None) -> int:
        # The bytes go to ``target`` as they arrive; tarfile reads along only to count.
        tee = _Blocks(self._blocks(self._open_tar(addr)), target, progress)
        count = 0
        import tarfile

        with tarfile.open(fileobj=io.BufferedReader(tee, BLOCK), mode="r|") as tar:
            for member in tar:
                count += member.isreg()
        tee.drain()
        return count

    def inspect_file(self, addr: Address) -> FileInfo:
        return decode(FileInfo, self._call("GET", self._commit_url(addr, "info", _path(addr.path))))

    def iter_files(self, addr: Address) -> Iterator[FileInfo]:
        return self._stream(FileInfo, self._commit_url(addr, "list", _path(addr.path)))

    def iter_glob(self, addr: Address, glob: str) -> Iterator[FileInfo]:
        return self._stream(FileInfo, self._commit_url(addr, "glob"), {"pattern": glob})

    def iter_diff(
        self, new: Address, old_text: str | None, old: Address | None
    ) -> Iterator[DiffEntry]:
        url = self._commit_url(new, "diff", _path(new.path))
        return self._stream(DiffEntry, url, _params(old=old_text))

    # Maintenance

    def fsck(self, references: bool) -> FsckReport:
        params = {"references": "true"} if references else None
        return decode(FsckReport, self._call("POST", "/fsck", params=params))

    def import_objects(
        self, repo: str, ref: str, path: str, url: str, exclude: list[str],
        endpoint: str | None, description: str,
    ) -> ImportResult:  # fmt: skip
        body = {"path": path, "url": url, "exclude": exclude, "endpoint_url": endpoint,
                "description": description}  # fmt: skip
        route = f"/repos/{_seg(repo)}/branches/{_seg(ref)}/import"
        return decode(ImportResult, self._call("POST", route, json=body))

    def materialize(self, repo: str, ref: str, path: str, description: str) -> ImportResult:
        route = f"/repos/{_seg(repo)}/branches/{_seg(ref)}/materialize"
        body = {"path": path, "description": description}
        return decode(ImportResult, self._call("POST", route, json=body))

    def gc(self, grace: float, dry_run: bool, repack_threshold: float, retention: bool) -> GcReport:
        body = {"grace": grace, "dry_run": dry_run, "repack_threshold": repack_threshold,
                "retention": retention}  # fmt: skip
        return decode(GcReport, self._call("POST", "/gc", json=body))

    def set_retention(
        self, repo: str, keep_last: int | None, keep_within: float | None, keep_tagged: bool
    ) -> RetentionRule:
        body = {"keep_last": keep_last, "keep_within": keep_within, "keep_tagged": keep_tagged}
        url = f"/repos/{_seg(repo)}/retention"
        return decode(RetentionRule, self._call("PUT", url, json=body))

    def list_retention(self, repo: str | None) -> list[RetentionRule]:
        return self._per_repo(RetentionRule, repo, "retention")

    def delete_retention(self, repo: str) -> None:
        self._call("DELETE", f"/repos/{_seg(repo)}/retention")

    def stats(self) -> dict[str, int]:
        return dict(self._call("GET", "/stats"))

    # Pipelines

    def create_pipeline(
        self, spec: dict[str, Any], origin: dict[str, Any], update: bool, reprocess: bool
    ) -> PipelineInfo:
        body = {"spec": spec, "update": update, "reprocess": reprocess, "origin": origin}
        from tusk.pps.models import PipelineInfo

        return decode(PipelineInfo, self._call("POST", "/pipelines", json=body))

    def apply(
        self,
        docs: list[tuple[dict[str, Any], str, dict[str, Any]]],
        prune: bool,
        dry_run: bool,
        reprocess: bool,
    ) -> ApplyResult:
        body = {
            "documents": [
                {"spec": spec, "source": source, "origin": origin} for spec, source, origin in docs
            ],
            "prune": prune,
            "dry_run": dry_run,
            "reprocess": reprocess,
        }
        from tusk.pps.models import ApplyResult

        return decode(ApplyResult, self._call("POST", "/apply", json=body))

    def inspect_pipeline(self, name: str, history: bool) -> PipelineInfo:
        url = f"/pipelines/{_seg(name)}"
        from tusk.pps.models import PipelineInfo

        return decode(PipelineInfo, self._call("GET", url, params=_params(history=history)))

    def list_pipelines(self) -> list[PipelineInfo]:
        from tusk.pps.models import PipelineInfo

        return decode_list(PipelineInfo, self._call("GET", "/pipelines"))

    def delete_pipeline(self, name: str, keep_repo: bool, force: bool) -> None:
        params = _params(keep_repo=keep_repo, force=force)
        self._call("DELETE", f"/pipelines/{_seg(name)}", params=params)

    def set_pipeline_state(self, name: str, state: str) -> PipelineInfo:
        verb = "stop" if state == "paused" else "start"
        from tusk.pps.models import PipelineInfo

        return decode(PipelineInfo, self._call("POST", f"/pipelines/{_seg(name)}/{verb}"))

    def run_pipeline(self, name: str, branch: str | None) -> CommitInfo:
        url = f"/pipelines/{_seg(name)}/run"
        return decode(CommitInfo, self._call("POST", url, params=_params(branch=branch)))

    def dry_run(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self._call("POST", "/dry-run", json={"spec": spec}))

    # Jobs, datums, logs

    def _job_url(self, pipeline: str | None, job: str, *rest: str) -> str:
        base = (
            f"/jobs/{_seg(job)}"
            if pipeline is None
            else f"/pipelines/{_seg(pipeline)}/jobs/{_seg(job)}"
        )
        return "/".join((base, *rest))

    def list_jobs(self, pipeline: str | None, commit_set: str | None) -> list[JobInfo]:
        params = _params(pipeline=pipeline, commit_set=commit_set)
        from tusk.pps.models import JobInfo

        return decode_list(JobInfo, self._call("GET", "/jobs", params=params))

    def inspect_job(self, pipeline: str | None, job: str) -> JobInfo:
        from tusk.pps.models import JobInfo

        return decode(JobInfo, self._call("GET", self._job_url(pipeline, job)))

    def wait_job(
        self,
        pipeline: str | None,
        job: str,
        timeout: float | None,
        run: bool,
        log: Callable[[str], None] | None,
    ) -> JobInfo:
        from tusk.pps.models import JobInfo

        return decode(JobInfo, self._wait(self._job_url(pipeline, job, "wait"), timeout))

    def stop_job(self, pipeline: str | None, job: str) -> JobInfo:
        from tusk.pps.models import JobInfo

        return decode(JobInfo, self._call("POST", self._job_url(pipeline, job, "stop")))

    def restart_datums(self, pipeline: str, job: str, filters: list[str]) -> list[str]:
        body = {"data_filters": filters}
        answer = self._call("POST", self._job_url(pipeline, job, "restart"), json=body)
        return list(answer["restarted"])

    def list_datums(self, pipeline: str, job: str) -> list[DatumInfo]:
        from tusk.pps.models import DatumInfo

        return decode_list(DatumInfo, self._call("GET", self._job_url(pipeline, job, "datums")))

    def inspect_datum(self, pipeline: str, job: str, datum: str) -> DatumInfo:
        url = self._job_url(pipeline, job, "datums", _seg(datum))
        from tusk.pps.models import DatumInfo

        return decode(DatumInfo, self._call("GET", url))

    def datum_run(self, pipeline: str, job: str, datum: str) -> DatumRun:
        url = self._job_url(pipeline, job, "datums", _seg(datum), "run")
        from tusk.pps.models import DatumRun

        return decode(DatumRun, self._call("GET", url))

    def logs(self, pipeline: str, job: str | None, datum: str | None, after: int) -> list[LogLine]:
        params = _params(job=job, datum=datum, after=after)
        url = f"/pipelines/{_seg(pipeline)}/logs"
        from tusk.pps.models import LogLine

        return decode_list(LogLine, self._call("GET", url, params=params))

    def wait_commit_set(
        self,
        commit_set: str,
        timeout: float | None,
        run: bool,
        log: Callable[[str], None] | None,
    ) -> list[JobInfo]:
        from tusk.pps.models import JobInfo

        return decode_list(JobInfo, self._wait(f"/commit-sets/{_seg(commit_set)}/wait", timeout))

    def lineage(self, addr: Address, path: str, depth: int) -> LineageStep:
        url = self._commit_url(addr, "lineage", _path(path))
        from tusk.pps.models import LineageStep

        return decode(LineageStep, self._call("GET", url, params={"depth": depth}))

    # Secrets

    def create_secret(self, manifest: dict[str, Any] | str) -> SecretInfo:
        from tusk.pps.models import SecretInfo

        return decode(SecretInfo, self._call("POST", "/secrets", json={"manifest": manifest}))

    def list_secrets(self) -> list[SecretInfo]:
        from tusk.pps.models import SecretInfo

        return decode_list(SecretInfo, self._call("GET", "/secrets"))

    def inspect_secret(self, name: str) -> SecretInfo:
        from tusk.pps.models import SecretInfo

        return decode(SecretInfo, self._call("GET", f"/secrets/{_seg(name)}"))

    def delete_secret(self, name: str) -> None:
        self._call("DELETE", f"/secrets/{_seg(name)}")

    # Images

    def load_image(self, path: Path, progress: Progress | None) -> CachedImage:
        f = _open_local(path)
        size = os.fstat(f.fileno()).st_size
        body = _counted(_closing_blocks(f, size), progress)
        headers = {"content-type": "application/x-tar", "content-length": str(size)}
        url = "/images"
        params = {"name": str(path)}
        from tusk.pps.cached_images import CachedImage

        return decode(
            CachedImage, self._call("POST", url, params=params, content=body, headers=headers)
        )

    def list_images(self) -> list[CachedImage]:
        from tusk.pps.cached_images import CachedImage

        return decode_list(CachedImage, self._call("GET", "/images"))

    def delete_image(self, name: str) -> CachedImage:
        from tusk.pps.cached_images import CachedImage

        return decode(CachedImage, self._call("DELETE", f"/images/{_seg(name)}"))

    # Running jobs: the server's business; a remote worker runs datums it hands out

    def run_scheduler(
        self,
        stop: threading.Event | None,
        once: bool,
        sandbox: str | None,
        log: Callable[[str], None] | None,
        executor: str | None,
        role: str,
        api_url: str | None,
        pipelines: Sequence[str] | None = None,
        s3_url: str | None = None,
    ) -> None:
        """``role="worker"`` (``tusk worker --address``): run the datums of ``pipelines`` that
        the server hands out, reaching it through the API only (``tusk.pps.remote_worker``)."""
        if role != "worker":
            raise InvalidArgument(
                f"the scheduler runs on the server ({self.address}): start it there with tusk up"
            )
        if not pipelines:
            raise InvalidArgument(
                "a worker of a server runs named pipelines' datums: give --pipeline NAME"
            )
        if s3_url:
            raise InvalidArgument("a worker of a server reads no S3 gateway: drop --s3-endpoint")
        from tusk.pps.executor import executor_named, sandbox_mode
        from tusk.pps.remote_worker import RemoteWorker

        runner = executor_named(executor, None if executor else sandbox_mode(sandbox))
        if runner is None:
            raise InvalidArgument(f"a worker of a server runs datums here, not on {executor}")
        RemoteWorker(self, runner, pipelines, log).run(stop, once=once)

    def claim_datums(self, pipeline: str, worker: str, limit: int) -> dict[str, Any]:
        """Datums of ``pipeline`` under a new lease (``tusk.pps.workqueue``)."""
        body = {"worker": worker, "limit": limit}
        return cast(
            "dict[str, Any]",
            self._call("POST", f"/pipelines/{_seg(pipeline)}/datums/claim", json=body),
        )

    def renew_lease(self, pipeline: str, job: str, lease: str, datums: list[str]) -> None:
        url = f"/pipelines/{_seg(pipeline)}/jobs/{_seg(job)}/renew"
        self._call("POST", url, json={"lease": lease, "datums": datums})

    def finish_datum(
        self,
        pipeline: str,
        job: str,
        datum: str,
        lease: str,
        outcome: dict[str, Any],
        outputs: Sequence[tuple[tuple[str, ...], Path]],
    ) -> dict[str, Any]:
        """A datum's end: ``outcome.json`` and its output files (``out/...``) as one tar stream."""
        data = json.dumps(outcome).encode()
        members: list[tuple[tuple[str, ...], Callable[[], tuple[int, BinaryIO]]]]
        members = [(("outcome.json",), _sized_source(data))]
        members += [(("out", *parts), _sized_source(path)) for parts, path in outputs]
        url = f"/pipelines/{_seg(pipeline)}/jobs/{_seg(job)}/datums/{_seg(datum)}/finish"
        return cast(
            "dict[str, Any]",
            self._call(
                "POST", url, params={"lease": lease}, content=_tar_of(iter(members)),
                headers={"content-type": "application/x-tar"},
            ),
        )  # fmt: skip

    def download_file(
        self, repo: str, commit: str, path: str, dest: Path, token: str | None = None
    ) -> None:
        """One file of a commit into ``dest``, as ``token``'s holder (default: this client)."""
        headers = {"authorization": f"Bearer {token}"} if token else None
        response = self._send("GET", self._file_url(repo, commit, path), stream=True,
                              headers=headers)  # fmt: skip
        with open(dest, "wb") as f:
            for block in self._blocks(response):
                f.write(block)

    def scheduler_running(self) -> bool | None:
        return None

    def sandbox_mode(self, sandbox: str | None) -> NoReturn:
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
        raise local_error(exc, os.fspath(path)) from exc


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
    if url.startswith("s3://"):  # read here, with this machine's AWS credentials
        from tusk.storage.backends.objects import s3_objects

        body = s3_objects().open(url)
        try:
            yield from _read_blocks(body)
        finally:
            body.close()
        return
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
    import tempfile

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


class HttpFileReader:
    """Random access to one file of one commit on a server (``BaseClient.file_reader``):
    each read is one ranged GET of that commit (by id), checked by the server's one
    permission check as any file read is."""

    def __init__(self, transport: HttpTransport, info: FileInfo) -> None:
        self._t = transport
        self.repo, self.commit, self.path, self.size = info.repo, info.commit, info.path, info.size

    def read(self, start: int, stop: int) -> bytes:
        start, stop = max(start, 0), min(stop, self.size)
        if stop <= start:
            return b""
        return self._t.read_range(self.repo, self.commit, self.path, start, stop)

    def close(self) -> None:
        pass
