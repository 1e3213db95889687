"""PFS routes: repos, branches, commits, commit sets, files, maintenance, version and health.

Refs in paths are what the CLI takes after '@' (``master``, a commit id, ``master~2``); file
paths follow ``/files/``, ``/tar/``, ``/list/``... and are checked as the CLI's are (no '..').
Blocking service calls run on the thread pool: sync endpoints, or ``run_in_threadpool``.

Listings (files, glob, diff, commits) answer a JSON array, or with ``Accept:
application/x-ndjson`` one JSON object per line, streamed from the service's ``iter_*`` as it
reads, so neither side ever holds a listing of a million files.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute

from tusk.api import bodies, creating
from tusk.api.docs import operation_id, returns
from tusk.api.guard import EDGE, current_caller
from tusk.api.streams import batched, tar_items, tar_stream, with_body
from tusk.api.wire import (
    API_PREFIX,
    MAX_WAIT,
    NDJSON,
    error_body,
    name_param,
    ndjson_line,
    plain,
    timed_out,
    tusk_version,
)
from tusk.auth.permissions import CLUSTER_ADMIN, REPO_READ
from tusk.auth.service import AuthService
from tusk.errors import InvalidArgument, Timeout, TuskError, Unavailable
from tusk.ids import check_repo_name
from tusk.pfs.models import (
    BranchInfo,
    BranchTrigger,
    CommitInfo,
    DiffEntry,
    FileInfo,
    FsckReport,
    GcReport,
    ImportResult,
    MergeResult,
    ProtectionInfo,
    PutResult,
    RepoInfo,
    RetentionRule,
    TagInfo,
)
from tusk.pfs.paths import normalize_path, split_path
from tusk.pfs.refs import Address, parse_address, parse_ref
from tusk.pfs.service import PfsService
from tusk.pfs.sources import BytesSource, Source, StreamSource
from tusk.pfs.tree import FileEntry
from tusk.pps.models import JobInfo, LineageStep
from tusk.pps.service import PpsService

BIG = 2**62  # bounds for integers that reach SQL
# A page of a listing (files, diffs, globs): ``offset`` entries skipped, at most ``limit``.
Offset = Annotated[int, Query(ge=0, le=BIG, description="Skip this many entries first.")]
Limit = Annotated[
    int | None, Query(ge=1, le=BIG, description="At most this many entries (a page).")
]
T = TypeVar("T")

WaitSeconds = Annotated[
    float | None,
    Query(ge=0, allow_inf_nan=False, description=f"Seconds; at most {MAX_WAIT:g} per request."),
]
Description = Annotated[str, Query(description="Description of the commit made.")]
Append = Annotated[bool, Query(description="Append to existing files instead of replacing.")]

OCTETS = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
TAR = {
    "requestBody": {
        "required": True,
        "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def ok(obj: Any, status: int = 200) -> JSONResponse:
    """A result object, a list of them, or plain JSON data, as JSON."""
    return JSONResponse(plain(obj), status_code=status)


LINES_BATCH = 64 * 1024  # bytes of NDJSON per write: few thread hops, yet the first lines soon


def wants_ndjson(request: Request) -> bool:
    """Whether the ``Accept`` header names NDJSON (with a ``q`` above 0)."""
    for media_range in request.headers.get("accept", "").split(","):
        media, *params = media_range.split(";")
        if media.strip().lower() != NDJSON:
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def listing(
    request: Request, items: Iterator[Any], offset: int = 0, limit: int | None = None
) -> Response:
    """``items`` (a page of them: ``offset`` skipped, at most ``limit``) as a JSON array, or
    streamed as NDJSON when the client asks for it.

    The first item is made before the answer starts, so that what fails there (no such repo,
    ref or path) answers with its own status and JSON error, as without NDJSON.
    """
    if offset or limit is not None:
        items = itertools.islice(items, offset, None if limit is None else offset + limit)
    if not wants_ndjson(request):
        response: Response = ok(list(items))
    else:
        first = next(items, None)
        response = StreamingResponse(
            batched(ndjson_lines(_chain(first, items)), LINES_BATCH), media_type=NDJSON
        )
    response.headers["vary"] = "accept"
    return response


def ndjson_lines(items: Iterator[Any]) -> Iterator[bytes]:
    """Each item as a line. The status is sent by now: a failure ends the stream with an
    error line, ``{"error": {"code", "message"}}``, which the SDK raises as its class."""
    try:
        for item in items:
            yield ndjson_line(item)
    except TuskError as exc:
        yield ndjson_line(error_body(exc.code, exc.shown()))


def ndjson_of(model: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entry of a listing's NDJSON form: one ``model`` per line."""
    schema = {"$ref": f"#/components/schemas/{model}"}
    return {200: {"content": {NDJSON: {"schema": schema}}}}


NDJSON_NOTE = (
    "With `Accept: application/x-ndjson` the answer is streamed, one JSON object per line; "
    'a failure after the first line ends it with a line `{"error": {"code", "message"}}`.'
)


WAIT_STEP = 1.0  # a wait checks this often whether the server is stopping


def wait_for(wait: Callable[[float], T], timeout: float | None, stopping: threading.Event) -> T:
    """Run a service wait for ``timeout`` (at most MAX_WAIT) seconds, in steps, so that a
    stopping server answers its waiting clients (503) instead of leaving them hanging."""
    limit = MAX_WAIT if timeout is None or timeout > MAX_WAIT else timeout
    deadline = time.monotonic() + limit
    while True:
        if stopping.is_set():
            raise Unavailable("the server is stopping; ask again when it is back")
        left = max(0.0, deadline - time.monotonic())
        try:
            return wait(min(left, WAIT_STEP))
        except Timeout as exc:
            if left <= WAIT_STEP:
                raise timed_out(exc, limit) from None


def repo_name(repo: str) -> str:
    """The repo a path segment names (``research~images``: ``research%2Fimages`` as sent)."""
    return check_repo_name(name_param(repo))


def ref_text(ref: str) -> str:
    parse_ref(ref)  # a bad ref is a 400 before any lookup
    return ref


def file_path(path: str) -> str:
    return normalize_path("/" + path)


def address(repo: str, ref: str, path: str | None = None) -> Address:
    return Address(
        repo=repo_name(repo),
        ref=parse_ref(ref),
        path=file_path(path) if path is not None else None,
    )


def pfs_router(
    pfs: PfsService,
    pps: PpsService,
    home: str,
    stopping: threading.Event,
    auth: AuthService,
    route_class: type[APIRoute],
) -> APIRouter:
    r = APIRouter(
        prefix=API_PREFIX, generate_unique_id_function=operation_id, route_class=route_class
    )

    # Repos

    @r.post("/repos", status_code=201, tags=["repos"])
    @returns(RepoInfo)
    def create_repo(body: bodies.RepoCreate) -> Response:
        """Create a repo (``update``: or change its description); with auth on, its creator
        owns it, and changing an existing one needs repoOwner."""
        info = creating.create_repo(
            pfs, auth, current_caller(), repo_name(body.name), body.description, body.update,
            edge=EDGE, operation="create_repo",
        )  # fmt: skip
        return ok(info, 201)

    @r.get("/repos", tags=["repos"])
    @returns(list[RepoInfo])
    def list_repos() -> Response:
        return ok(pfs.list_repos())

    @r.get("/repos/{repo}", tags=["repos"])
    @returns(RepoInfo)
    def inspect_repo(repo: str) -> Response:
        return ok(pfs.inspect_repo(repo_name(repo)))

    @r.delete("/repos/{repo}", status_code=204, tags=["repos"])
    def delete_repo(repo: str, force: bool = False) -> Response:
        name = repo_name(repo)
        pfs.delete_repo(name, force)
        auth.forget_repo(name)
        return Response(status_code=204)

    # Branches

    @r.post("/repos/{repo}/branches", status_code=201, tags=["branches"])
    @returns(BranchInfo)
    def create_branch(repo: str, body: bodies.BranchCreate) -> Response:
        prov = []
        for p in body.provenance:
            pa = parse_address(p)
            prov.append((pa.repo, pa.ref.base))
        for upstream in sorted({r for r, _b in prov}):  # provenance reads them
            auth.require(
                current_caller(), REPO_READ, upstream, edge=EDGE, operation="create_branch"
            )
        trigger = None
        if body.trigger is not None:
            t = body.trigger
            trigger = BranchTrigger(t.branch, t.size, t.commits, t.cron_spec, t.all)
        return ok(pfs.create_branch(repo_name(repo), body.name, body.head, prov, trigger), 201)

    @r.get("/repos/{repo}/branches", tags=["branches"])
    @returns(list[BranchInfo])
    def list_branches(repo: str) -> Response:
        return ok(pfs.list_branches(repo_name(repo)))

    @r.get("/repos/{repo}/branches/{branch}", tags=["branches"])
    @returns(BranchInfo)
    def inspect_branch(repo: str, branch: str) -> Response:
        return ok(pfs.inspect_branch(repo_name(repo), branch))

    @r.delete("/repos/{repo}/branches/{branch}", status_code=204, tags=["branches"])
    def delete_branch(repo: str, branch: str, force: bool = False) -> Response:
        pfs.delete_branch(repo_name(repo), branch, force)
        return Response(status_code=204)

    @r.post("/repos/{repo}/branches/{branch}/merge", tags=["branches"])
    @returns(MergeResult)
    def merge(repo: str, branch: str, body: bodies.MergeRequest) -> Response:
        """Merge ``source`` into the branch: one commit with two parents. 409 (merge_conflict)
        when paths conflict and neither ``strategy`` nor ``resolve`` settles them."""
        how: dict[str, str | Source] = {}
        for path, v in body.resolve.items():
            if isinstance(v, str):
                how[path] = v
                continue
            try:
                how[path] = BytesSource(base64.b64decode(v.content, validate=True))
            except (binascii.Error, ValueError):  # ValueError: not even ASCII
                raise InvalidArgument(f"resolve {path}: content is not base64") from None
        if body.run_pipelines:
            if body.dry_run:
                raise InvalidArgument("run_pipelines and dry_run do not go together")
            return ok(pps.merge_and_run(
                repo_name(repo), ref_text(body.source), branch, message=body.message,
                strategy=body.strategy, resolve=how, timeout=body.timeout,
            ))  # fmt: skip
        result = pfs.merge(
            repo_name(repo), ref_text(body.source), branch, message=body.message,
            strategy=body.strategy, resolve=how, dry_run=body.dry_run,
        )  # fmt: skip
        return ok(result)

    # Data where it lives: import by reference, materialize

    @r.post("/repos/{repo}/branches/{branch}/import", tags=["branches"])
    @returns(ImportResult)
    def import_objects(repo: str, branch: str, body: bodies.ImportRequest) -> Response:
        """Commit one file per object below ``url`` at ``path``, by reference (no byte copied;
        the server lists the bucket with its own credentials, so only a clusterAdmin may)."""
        auth.require(current_caller(), CLUSTER_ADMIN, None, edge=EDGE, operation="import_objects")
        commit, n = pfs.import_objects(
            repo_name(repo), branch, body.path, body.url, exclude=body.exclude,
            endpoint=body.endpoint_url, description=body.description,
        )  # fmt: skip
        return ok(ImportResult(commit, n))

    @r.post("/repos/{repo}/branches/{branch}/materialize", tags=["branches"])
    @returns(ImportResult)
    def materialize(repo: str, branch: str, body: bodies.MaterializeRequest) -> Response:
        """Copy the referenced files at or below ``path`` into the store, in a new commit."""
        commit, n = pfs.materialize(repo_name(repo), branch, body.path, body.description)
        return ok(ImportResult(commit, n))

    # Protected branches

    @r.post("/repos/{repo}/branches/{branch}/protection", status_code=201, tags=["branches"])
    @returns(ProtectionInfo)
    def protect_branch(repo: str, branch: str, body: bodies.Protect | None = None) -> Response:
        """Protect a branch: only a merge from another branch moves it (403 to every write),
        after the checks ``require_checks`` names passed on the merge result (412 if not)."""
        by = current_caller().principal or "anonymous (auth off)"
        checks = body.require_checks if body is not None else []
        return ok(pfs.protect_branch(repo_name(repo), branch, by=by, checks=checks), 201)

    @r.delete("/repos/{repo}/branches/{branch}/protection", status_code=204, tags=["branches"])
    def unprotect_branch(repo: str, branch: str) -> Response:
        pfs.unprotect_branch(repo_name(repo), branch)
        return Response(status_code=204)

    @r.get("/repos/{repo}/protections", tags=["branches"])
    @returns(list[ProtectionInfo])
    def list_protections(repo: str) -> Response:
        return ok(pfs.list_protections(repo_name(repo)))

    # Retention

    @r.put("/repos/{repo}/retention", tags=["retention"])
    @returns(RetentionRule)
    def set_retention(repo: str, body: bodies.Retention) -> Response:
        """Set which old commits gc expires (replacing the repo's rule)."""
        name = repo_name(repo)
        return ok(pfs.set_retention(name, body.keep_last, body.keep_within, body.keep_tagged))

    @r.get("/repos/{repo}/retention", tags=["retention"])
    @returns(list[RetentionRule])
    def get_retention(repo: str) -> Response:
        """The repo's retention rule: a list of none or one."""
        return ok(pfs.list_retention(repo_name(repo)))

    @r.delete("/repos/{repo}/retention", status_code=204, tags=["retention"])
    def delete_retention(repo: str) -> Response:
        pfs.delete_retention(repo_name(repo))
        return Response(status_code=204)

    # Tags

    @r.post("/repos/{repo}/tags", status_code=201, tags=["tags"])
    @returns(TagInfo)
    def create_tag(repo: str, body: bodies.TagCreate) -> Response:
        """Name a finished commit (``commit``: any ref); ``repo@NAME`` then reads it."""
        return ok(pfs.create_tag(repo_name(repo), body.commit, body.name), 201)

    @r.get("/repos/{repo}/tags", tags=["tags"])
    @returns(list[TagInfo])
    def list_tags(repo: str) -> Response:
        return ok(pfs.list_tags(repo_name(repo)))

    @r.get("/repos/{repo}/tags/{tag}", tags=["tags"])
    @returns(TagInfo)
    def inspect_tag(repo: str, tag: str) -> Response:
        return ok(pfs.inspect_tag(repo_name(repo), tag))

    @r.delete("/repos/{repo}/tags/{tag}", status_code=204, tags=["tags"])
    def delete_tag(repo: str, tag: str) -> Response:
        pfs.delete_tag(repo_name(repo), tag)
        return Response(status_code=204)

    # Commits

    @r.post("/repos/{repo}/commits", status_code=201, tags=["commits"])
    @returns(CommitInfo)
    def start_commit(repo: str, body: bodies.CommitStart) -> Response:
        prov = []
        for p in body.provenance:
            pa = parse_address(p)
            prov.append((pa.repo, ref_text(str(pa.ref))))
        for upstream in sorted({r for r, _ref in prov}):  # naming them reads them
            auth.require(current_caller(), REPO_READ, upstream, edge=EDGE, operation="start_commit")
        info = pfs.start_commit(
            repo_name(repo), body.branch, body.parent, body.description, provenance=prov
        )
        return ok(info, 201)

    @r.get(
        "/repos/{repo}/commits",
        tags=["commits"],
        responses=ndjson_of("CommitInfo"),
        description=f"Commits, newest first. {NDJSON_NOTE}",
    )
    @returns(list[CommitInfo])
    def list_commits(
        request: Request,
        repo: str,
        ref: Annotated[str | None, Query(description="History of this ref; default: all.")] = None,
        number: Annotated[int | None, Query(ge=0, le=BIG, description="At most this many.")] = None,
        offset: Offset = 0,
        all_parents: Annotated[
            bool, Query(description="With ref: every ancestor, merged lines too (tusk log).")
        ] = False,
    ) -> Response:
        items = pfs.iter_commits(
            repo_name(repo),
            ref_text(ref) if ref else None,
            None if number is None else number + offset,
            all_parents,
        )
        return listing(request, items, offset)

    @r.get("/repos/{repo}/commits/{ref}", tags=["commits"])
    @returns(CommitInfo)
    def inspect_commit(repo: str, ref: str) -> Response:
        return ok(pfs.inspect_commit(repo_name(repo), ref_text(ref)))

    @r.post("/repos/{repo}/commits/{ref}/finish", tags=["commits"])
    @returns(CommitInfo)
    def finish_commit(repo: str, ref: str, body: bodies.Description | None = None) -> Response:
        desc = body.description if body is not None else None
        return ok(pfs.finish_commit(repo_name(repo), ref_text(ref), desc))

    @r.post("/repos/{repo}/commits/{ref}/squash", tags=["commits"])
    @returns(CommitInfo)
    def squash_commit(repo: str, ref: str, body: bodies.Description | None = None) -> Response:
        desc = body.description if body is not None else None
        return ok(pfs.squash_commit(repo_name(repo), ref_text(ref), desc))

    @r.get("/repos/{repo}/commits/{ref}/wait", tags=["commits"])
    @returns(CommitInfo)
    def wait_commit(repo: str, ref: str, timeout: WaitSeconds = None) -> Response:
        """Wait until the commit is finished; 504 when ``timeout`` (at most 30 s) passes, 409
        (job_failed) when the job that makes it failed and dropped it."""
        repo, ref = repo_name(repo), ref_text(ref)
        return ok(wait_for(lambda t: pps.wait_commit(repo, ref, t), timeout, stopping))

    @r.delete("/repos/{repo}/commits/{ref}", status_code=204, tags=["commits"])
    def delete_commit(repo: str, ref: str) -> Response:
        pfs.delete_commit(repo_name(repo), ref_text(ref))
        return Response(status_code=204)

    @r.get("/commit-sets/{commit_set}", tags=["commits"])
    @returns(list[CommitInfo])
    def inspect_commit_set(commit_set: str) -> Response:
        """The commits of a commit set (with auth on, those of repos the caller may read)."""
        commits = pfs.inspect_commit_set(commit_set)
        readable = auth.readable(current_caller(), {c.repo for c in commits})
        return ok([c for c in commits if c.repo in readable])

    @r.get("/commit-sets/{commit_set}/wait", tags=["jobs"])
    @returns(list[JobInfo])
    def wait_commit_set(commit_set: str, timeout: WaitSeconds = None) -> Response:
        """Wait until every job of a commit set is done; returns the jobs (with auth on, those
        of pipelines the caller may read)."""
        jobs = wait_for(lambda t: pps.wait_commit_set(commit_set, t), timeout, stopping)
        readable = auth.readable(current_caller(), {j.pipeline for j in jobs})
        return ok([j for j in jobs if j.pipeline in readable])

    # Files: writes (streamed request bodies)

    async def put(
        request: Request,
        repo: str,
        ref: str,
        items: Any,
        append: bool,
        description: str,
    ) -> Response:
        result = await with_body(
            request,
            lambda stream: pfs.put_files(
                repo, ref, items(stream), append=append, description=description
            ),
        )
        if isinstance(result, Response):
            return result
        return ok(result)

    @r.put("/repos/{repo}/commits/{ref}/files/{path:path}", tags=["files"], openapi_extra=OCTETS)
    @returns(PutResult)
    async def put_file(
        request: Request,
        repo: str,
        ref: str,
        path: str,
        append: Append = False,
        description: Description = "",
    ) -> Response:
        """Put one file from the raw request body, streamed (a new commit, or into the open one).

        Nothing is committed unless the whole body arrives: a dropped upload leaves no trace
        but unreferenced chunks, which gc removes; just send it again.
        """
        repo, ref = repo_name(repo), ref_text(ref)
        parts = split_path(file_path(path))
        return await put(
            request,
            repo,
            ref,
            lambda stream: [(parts, StreamSource(stream))],
            append,
            description,
        )

    @r.post("/repos/{repo}/commits/{ref}/tar/{path:path}", tags=["files"], openapi_extra=TAR)
    @returns(PutResult)
    async def put_tar(
        request: Request,
        repo: str,
        ref: str,
        path: str,
        append: Append = False,
        description: Description = "",
    ) -> Response:
        """Put every regular file of a tar stream (plain or gzip) under ``path``, as one change."""
        repo, ref = repo_name(repo), ref_text(ref)
        prefix = split_path(file_path(path))
        return await put(
            request, repo, ref, lambda stream: tar_items(stream, prefix), append, description
        )

    @r.delete("/repos/{repo}/commits/{ref}/files/{path:path}", tags=["files"])
    @returns(CommitInfo)
    def delete_file(repo: str, ref: str, path: str, description: Description = "") -> Response:
        """Delete a file or a whole directory."""
        return ok(pfs.delete_files(repo_name(repo), ref_text(ref), [file_path(path)], description))

    @r.post("/repos/{repo}/commits/{ref}/copy/{path:path}", tags=["files"])
    @returns(CommitInfo)
    def copy_file(repo: str, ref: str, path: str, body: bodies.CopySource) -> Response:
        """Copy a file or directory (any repo or commit) to ``path``; no data moves."""
        src = parse_address(body.src)
        auth.require(current_caller(), REPO_READ, src.repo, edge=EDGE, operation="copy_file")
        return ok(pfs.copy_file(src, repo_name(repo), ref_text(ref), file_path(path)))

    @r.post("/repos/{repo}/commits/{ref}/changes", tags=["files"])
    @returns(CommitInfo)
    def modify_files(repo: str, ref: str, body: bodies.Changes) -> Response:
        """Deletes and copies as one commit, in one transaction (all or nothing)."""
        changes: list[tuple[str, ...]] = []
        for c in body.changes:
            if c.delete is not None and c.copy_ is None and c.to is None:
                changes.append(("delete", c.delete))
            elif c.delete is None and c.copy_ is not None and c.to is not None:
                src = parse_address(c.copy_)
                auth.require(current_caller(), REPO_READ, src.repo, edge=EDGE,
                             operation="modify_files")  # fmt: skip
                changes.append(("copy", c.copy_, c.to))
            else:
                raise InvalidArgument(
                    "each change is {delete: PATH} or {copy: REPO@REF:/PATH, to: PATH}"
                )
        return ok(pfs.modify_files(repo_name(repo), ref_text(ref), changes, body.description))

    # Files: reads

    @r.get(
        "/repos/{repo}/commits/{ref}/files/{path:path}",
        tags=["files"],
        response_class=StreamingResponse,
        responses={
            200: {"content": {"application/octet-stream": {}}},
            206: {"description": "The bytes a Range header asked for (one range)."},
            416: {"description": "A Range that starts past the end of the file."},
        },
    )
    def get_file(repo: str, ref: str, path: str, request: Request) -> Response:
        """A file's bytes, streamed; the ``X-Tusk-Commit`` header names the commit read. A
        ``Range: bytes=FIRST-LAST`` header (one range) reads only the chunks holding those
        bytes: 206, as ``tusk sql`` and the SDK's ``file_reader`` read remote files."""
        repo, ref, norm = repo_name(repo), ref_text(ref), file_path(path)
        info = pfs.inspect_file(repo, ref, norm)
        headers = {"x-tusk-commit": info.commit, "accept-ranges": "bytes"}
        span = byte_range(request.headers.get("range"), info.size)
        if span is None:
            blocks = pfs.read_file(repo, info.commit, norm)  # by id: the size below stays true
            headers["content-length"] = str(info.size)
            # The first block is read here: a file that cannot be read (a broken reference)
            # is an error answer, not a download that breaks off.
            first = next(blocks, None)
            return StreamingResponse(
                _chain(first, blocks), media_type="application/octet-stream", headers=headers
            )
        start, stop = span
        if start >= info.size:
            headers["content-range"] = f"bytes */{info.size}"
            return Response(status_code=416, headers=headers)
        commit = pfs.resolve_commit(repo, info.commit)
        entry = pfs.tree_entry(commit.tree, norm)
        assert isinstance(entry, FileEntry)  # inspect_file found a file at this commit
        headers["content-length"] = str(stop - start)
        headers["content-range"] = f"bytes {start}-{stop - 1}/{info.size}"
        blocks = pfs.read_range(entry, start, stop)
        first = next(blocks, None)
        return StreamingResponse(
            _chain(first, blocks), 206, media_type="application/octet-stream", headers=headers
        )

    @r.get(
        "/repos/{repo}/commits/{ref}/tar/{path:path}",
        tags=["files"],
        response_class=StreamingResponse,
        responses={200: {"content": {"application/x-tar": {}}}},
    )
    def get_tar(repo: str, ref: str, path: str) -> Response:
        """Every file at or below ``path`` as a tar stream (names relative to the root)."""
        repo, ref, norm = repo_name(repo), ref_text(ref), file_path(path)
        commit = pfs.inspect_file(repo, ref, norm).commit
        files = pfs.walk_files(repo, commit, norm)
        first = next(files, None)  # raises here, not mid-stream, for a missing path
        stream = tar_stream(pfs, _chain(first, files))
        return StreamingResponse(
            stream, media_type="application/x-tar", headers={"x-tusk-commit": commit}
        )

    @r.get("/repos/{repo}/commits/{ref}/info/{path:path}", tags=["files"])
    @returns(FileInfo)
    def inspect_file(repo: str, ref: str, path: str) -> Response:
        """Type, size, hash and chunk count of a file or directory."""
        return ok(pfs.inspect_file(repo_name(repo), ref_text(ref), file_path(path)))

    @r.get(
        "/repos/{repo}/commits/{ref}/list/{path:path}",
        tags=["files"],
        responses=ndjson_of("FileInfo"),
        description=f"The entries of a directory (or the file itself). {NDJSON_NOTE}",
    )
    @returns(list[FileInfo])
    def list_files(
        request: Request, repo: str, ref: str, path: str, offset: Offset = 0, limit: Limit = None
    ) -> Response:
        items = pfs.iter_files(repo_name(repo), ref_text(ref), file_path(path))
        return listing(request, items, offset, limit)

    @r.get(
        "/repos/{repo}/commits/{ref}/glob",
        tags=["files"],
        responses=ndjson_of("FileInfo"),
        description=f"Files and directories matching a glob, in path order. {NDJSON_NOTE}",
    )
    @returns(list[FileInfo])
    def glob_files(
        request: Request,
        repo: str,
        ref: str,
        pattern: Annotated[str, Query(min_length=1, description="e.g. /**/*.csv")],
        offset: Offset = 0,
        limit: Limit = None,
    ) -> Response:
        items = pfs.iter_glob(repo_name(repo), ref_text(ref), pattern)
        return listing(request, items, offset, limit)

    @r.get(
        "/repos/{repo}/commits/{ref}/diff/{path:path}",
        tags=["files"],
        responses=ndjson_of("DiffEntry"),
        description=f"Files added, removed or changed below `path`. {NDJSON_NOTE}",
    )
    @returns(list[DiffEntry])
    def diff_file(
        request: Request,
        repo: str,
        ref: str,
        path: str,
        old: Annotated[
            str | None, Query(description="Compare with 'repo@ref' (default: the parent).")
        ] = None,
        offset: Offset = 0,
        limit: Limit = None,
    ) -> Response:
        new = address(repo, ref, path)
        items = pfs.iter_diff(new, parse_address(old) if old is not None else None)
        return listing(request, items, offset, limit)

    @r.get("/repos/{repo}/commits/{ref}/lineage/{path:path}", tags=["lineage"])
    @returns(LineageStep)
    def lineage(
        repo: str, ref: str, path: str, depth: Annotated[int, Query(ge=0, le=1000)] = 32
    ) -> Response:
        """The job, datum, inputs and code behind a file, up the graph."""
        return ok(pps.lineage(repo_name(repo), ref_text(ref), file_path(path), depth))

    # Maintenance and the server

    @r.post("/fsck", tags=["maintenance"])
    @returns(FsckReport)
    def fsck(references: bool = False) -> Response:
        """Re-read every pack and check every hash and reference; with ``references``, also
        every object imported by reference (HEAD requests)."""
        return ok(pfs.fsck(references))

    @r.post("/gc", tags=["maintenance"])
    @returns(GcReport)
    def gc(body: bodies.Gc | None = None) -> Response:
        """Delete data no commit references and nobody touched within ``grace`` seconds,
        repack packs less than ``repack_threshold`` live, prune old scratch folders."""
        body = body or bodies.Gc.model_validate({})
        return ok(pps.gc(body.grace, body.dry_run, body.repack_threshold, body.retention))

    @r.get("/stats", tags=["maintenance"])
    @returns(dict[str, int])
    def stats() -> Response:
        return ok(pfs.stats())

    @r.get("/version", tags=["server"])
    def version() -> Response:
        return ok({"tusk": tusk_version(), "api": "v1", "home": home})

    @r.get("/health", tags=["server"])
    def health() -> Response:
        """200 when the metadata store answers, else 503."""
        pfs.list_repos()
        return ok({"status": "ok"})

    return r


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, stop) of a one-range ``Range: bytes=`` header; None (the whole file) for no
    header or one this does not read (several ranges, other units: RFC 9110 allows ignoring
    it). ``start`` may lie past the end: the caller answers 416."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[len("bytes=") :].strip().partition("-")
    if not sep or not (first or last) or not (first + last).isdigit():
        return None
    if not first:  # bytes=-N: the last N bytes
        return max(size - int(last), 0), size
    start = int(first)
    if last and int(last) < start:
        return None  # LAST before FIRST: not a valid range, ignored
    return start, max(min(int(last) + 1, size) if last else size, start)


def _chain(first: T | None, rest: Iterator[T]) -> Iterator[T]:
    if first is not None:
        yield first
    yield from rest
