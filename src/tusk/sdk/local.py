"""The in-process transport: the client API's calls go straight to ``PfsService`` and
``PpsService`` on a home folder (see :mod:`tusk.sdk.base` for the seam).

Loaded only by an in-process client, so a client of a server never imports the storage
layer; the pipeline service (and pydantic) loads on the first pipeline call.
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

from tusk.config import StoreConfig
from tusk.errors import InvalidArgument
from tusk.ids import is_commit_id
from tusk.pfs import PfsService
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
from tusk.pfs.sources import BlockStream, BytesSource, LocalFile, Source, StreamSource, source_for
from tusk.pfs.tree import TreeParams
from tusk.sdk.base import Progress, SourceLike, ref_text, walk_local

if TYPE_CHECKING:  # the pipeline layer loads with the first call that needs it
    from tusk.pfs.gates import CheckRequest
    from tusk.pps.cached_images import CachedImage
    from tusk.pps.dask_executor import DaskExecutor
    from tusk.pps.executor import DatumOutcome, LocalExecutor
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
    from tusk.pps.service import Pause, PpsService
    from tusk.storage.meta.records import CommitRecord


PINNED_SECONDS = 2.0  # how long LocalTransport reuses a commit it resolved by id


def _to_source(src: SourceLike) -> Source:
    if isinstance(src, bytes):
        return BytesSource(src)
    if isinstance(src, os.PathLike):
        return LocalFile(Path(src))
    if isinstance(src, str):
        return source_for(src)
    return StreamSource(src)


class LocalTransport:
    """Tusk in this process, on ``home``."""

    def __init__(
        self, home: Path, config: StoreConfig | None = None, tree_params: TreeParams | None = None
    ) -> None:
        self.home = home
        self.pfs = PfsService.open(home, config=config)
        if tree_params is not None:
            self.pfs.tree_params = tree_params
        self._pps_service: PpsService | None = None
        self._pins: dict[tuple[str, str], tuple[float, CommitRecord]] = {}  # see _pinned
        # Checks that gate a branch run in this process, as pipelines do (tusk.pfs.gates),
        # without loading the pipeline layer for it (tusk.pps.checkrun).
        self.pfs.check_runner = self._run_checks

    def _run_checks(self, request: CheckRequest) -> list[CheckRunInfo]:
        from tusk.pps.checkrun import CheckRunner

        return CheckRunner(self.pfs, self.home, pipelines=self._pipeline_check)(request)

    def _pipeline_check(self, request: CheckRequest, spec: dict[str, Any]) -> DatumOutcome:
        """A check that runs a pipeline: its job runs in this process unless a scheduler
        runs on the home."""
        with self._waiting(True, None) as pause:
            return self.pps.pipeline_check(request, spec, pause)

    @property
    def pps(self) -> PpsService:
        if self._pps_service is None:
            from tusk.pps.service import PpsService

            self._pps_service = PpsService(self.pfs, self.home)
        return self._pps_service

    def close(self) -> None:
        self.pfs.close()

    def rest(self, what: str, method: str, url: str, **kw: Any) -> NoReturn:
        """Server-only calls (auth): there is no server here."""
        raise InvalidArgument(
            f"auth applies to a server: {what} needs Client(address=...) (or $TUSK_ADDRESS); "
            f"the home {self.home} in-process has no auth"
        )

    # Projects, repos, branches

    def create_project(self, name: str, description: str, update: bool) -> ProjectInfo:
        return self.pfs.create_project(name, description, update)

    def list_projects(self) -> list[ProjectInfo]:
        return self.pfs.list_projects()

    def inspect_project(self, name: str) -> ProjectInfo:
        return self.pfs.inspect_project(name)

    def delete_project(self, name: str) -> None:
        self.pfs.delete_project(name)

    def create_repo(self, name: str, description: str, update: bool) -> RepoInfo:
        return self.pfs.create_repo(name, description, update)

    def inspect_repo(self, name: str) -> RepoInfo:
        return self.pfs.inspect_repo(name)

    def list_repos(self) -> list[RepoInfo]:
        return self.pfs.list_repos()

    def delete_repo(self, name: str, force: bool) -> None:
        self.pfs.delete_repo(name, force)

    def create_branch(
        self,
        addr: Address,
        head: str | None,
        provenance: list[tuple[str, Address]],
        trigger: BranchTrigger | None = None,
    ) -> BranchInfo:
        prov = [(p.repo, p.ref.base) for _, p in provenance]
        return self.pfs.create_branch(addr.repo, addr.ref.base, head, prov, trigger)

    def inspect_branch(self, addr: Address) -> BranchInfo:
        return self.pfs.inspect_branch(addr.repo, addr.ref.base)

    def list_branches(self, repo: str) -> list[BranchInfo]:
        return self.pfs.list_branches(repo)

    def delete_branch(self, addr: Address, force: bool) -> None:
        self.pfs.delete_branch(addr.repo, addr.ref.base, force)

    def protect_branch(self, repo: str, branch: str, checks: list[str]) -> ProtectionInfo:
        import getpass

        by = f"local:{getpass.getuser()}"
        return self.pfs.protect_branch(repo, branch, by=by, checks=checks)

    @contextmanager
    def force_protected(self) -> Iterator[None]:
        from tusk.pfs.protection import overriding

        with overriding():
            yield

    def unprotect_branch(self, repo: str, branch: str) -> None:
        self.pfs.unprotect_branch(repo, branch)

    def list_protections(self, repo: str | None) -> list[ProtectionInfo]:
        return self.pfs.list_protections(repo)

    def list_checks(self, repo: str | None) -> list[CheckInfo]:
        if repo is not None:
            self.pfs.inspect_repo(repo)
        return [c.info() for c in self.pps.list_checks(repo)]

    def delete_check(self, name: str) -> None:
        self.pps.delete_check(name)

    def check_runs(self, repo: str, ref: str) -> list[CheckRunInfo]:
        return self.pps.check_runs(repo, ref)

    def inspect_check_run(self, repo: str, ref: str, name: str) -> CheckRunInfo:
        return self.pps.inspect_check_run(repo, ref, name)

    def create_tag(self, repo: str, ref: str, name: str) -> TagInfo:
        return self.pfs.create_tag(repo, ref, name)

    def list_tags(self, repo: str) -> list[TagInfo]:
        return self.pfs.list_tags(repo)

    def inspect_tag(self, repo: str, name: str) -> TagInfo:
        return self.pfs.inspect_tag(repo, name)

    def delete_tag(self, repo: str, name: str) -> None:
        self.pfs.delete_tag(repo, name)

    # Commits

    def start_commit(
        self,
        addr: Address,
        parent: str | None,
        description: str,
        provenance: Sequence[tuple[str, str]] = (),
    ) -> CommitInfo:
        return self.pfs.start_commit(
            addr.repo, addr.ref.base, parent, description, provenance=provenance
        )

    def finish_commit(self, addr: Address, description: str | None) -> CommitInfo:
        return self.pfs.finish_commit(addr.repo, ref_text(addr), description)

    def inspect_commit(self, addr: Address) -> CommitInfo:
        return self.pfs.inspect_commit(addr.repo, ref_text(addr))

    def iter_commits(
        self, repo: str, ref: str | None, number: int | None, all_parents: bool
    ) -> Iterator[CommitInfo]:
        return self.pfs.iter_commits(repo, ref, number, all_parents)

    def wait_commit(
        self,
        addr: Address,
        timeout: float | None,
        run: bool,
        log: Callable[[str], None] | None,
    ) -> CommitInfo:
        with self._waiting(run, log) as pause:
            return self.pps.wait_commit(addr.repo, ref_text(addr), timeout, pause)

    def squash_commit(self, addr: Address, description: str | None) -> CommitInfo:
        return self.pfs.squash_commit(addr.repo, ref_text(addr), description)

    def delete_commit(self, addr: Address) -> None:
        self.pfs.delete_commit(addr.repo, ref_text(addr))

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
        how = {p: v if isinstance(v, str) else _to_source(v) for p, v in resolve.items()}
        if run_pipelines:  # the jobs run here meanwhile when no scheduler runs on the home
            with self._waiting(True, None) as pause:
                return self.pps.merge_and_run(
                    repo, source, into, message=message, strategy=strategy, resolve=how,
                    timeout=timeout, pause=pause,
                )  # fmt: skip
        return self.pfs.merge(
            repo, source, into, message=message, strategy=strategy, resolve=how, dry_run=dry_run
        )

    def inspect_commit_set(self, commit_set: str) -> list[CommitInfo]:
        return self.pfs.inspect_commit_set(commit_set)

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
        return self._put(addr, [(path, _to_source(source))], append, description, progress)

    def put_files(
        self,
        addr: Address,
        members: Iterable[tuple[tuple[str, ...], SourceLike]],
        append: bool,
        description: str,
        progress: Progress | None,
    ) -> PutResult:
        pairs = ((parts, _to_source(s)) for parts, s in members)
        return self._put(addr, pairs, append, description, progress)

    def put_dir(
        self,
        addr: Address,
        prefix: tuple[str, ...],
        root: Path,
        append: bool,
        description: str,
        progress: Progress | None,
    ) -> PutResult:
        # Plain strings: a folder of 10^5 files would otherwise make 10^5 Path objects.
        pairs = (((*prefix, *rel.split("/")), LocalFile(full)) for rel, full in walk_local(root))
        return self._put(addr, pairs, append, description, progress)

    def _put(
        self,
        addr: Address,
        pairs: Iterable[tuple[str | tuple[str, ...], Source]],
        append: bool,
        description: str,
        progress: Progress | None,
    ) -> PutResult:
        return self.pfs.put_files(
            addr.repo,
            ref_text(addr),
            pairs,
            append=append,
            description=description,
            progress=progress,
        )

    def delete_file(self, addr: Address, path: str, description: str) -> CommitInfo:
        return self.pfs.delete_files(addr.repo, ref_text(addr), [path], description)

    def copy_file(self, src_text: str, src: Address, dst: Address, path: str) -> CommitInfo:
        return self.pfs.copy_file(src, dst.repo, ref_text(dst), path)

    def modify_files(
        self, addr: Address, changes: Sequence[tuple[str, ...]], description: str
    ) -> CommitInfo:
        return self.pfs.modify_files(addr.repo, ref_text(addr), changes, description)

    def open_file(self, addr: Address) -> Iterator[bytes]:
        return self.pfs.read_file(addr.repo, ref_text(addr), addr.path or "/")

    def file_reader(self, addr: Address) -> LocalFileReader:
        ref = ref_text(addr)
        return LocalFileReader(
            self.pfs, addr.repo, ref, addr.path or "/", self._pinned(addr.repo, ref)
        )

    def _pinned(self, repo: str, ref: str) -> CommitRecord | None:
        """A finished commit named by its full id, as resolved within the last
        ``PINNED_SECONDS``: readers of many files of one commit (``tusk mount``: a reader per
        file opened) skip resolving it each time (~0.4 ms, most of opening a small file). A
        commit id names the same finished tree for ever; the short life bounds how long a
        commit deleted meanwhile stays readable here."""
        if not is_commit_id(ref):
            return None
        now = time.monotonic()
        key = (repo, ref)
        hit = self._pins.get(key)
        if hit is not None and now - hit[0] < PINNED_SECONDS:
            return hit[1]
        commit = self.pfs.resolve_commit(repo, ref)
        if not commit.finished:
            return None
        if len(self._pins) >= 1024:
            self._pins.clear()
        self._pins[key] = (now, commit)
        return commit

    def get_dir(self, addr: Address, root: Path, progress: Progress | None) -> int:
        base = addr.path or "/"
        count = 0
        for path, entry in self.pfs.walk_files(addr.repo, ref_text(addr), base):
            rel = path[len(base.rstrip("/")) + 1 :] if base != path else Path(path).name
            target = root.joinpath(*split_path(rel))
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as f:
                for block in self.pfs.read_entry(entry):
                    f.write(block)
                    if progress:
                        progress(len(block))
            count += 1
        return count

    def get_tar(self, addr: Address, target: BinaryIO, progress: Progress | None) -> int:
        count = 0
        with tarfile.open(fileobj=target, mode="w|") as tar:
            for path, entry in self.pfs.walk_files(addr.repo, ref_text(addr), addr.path or "/"):
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size = entry.size
                # BufferedReader returns full blocks, which tarfile's copy loop requires.
                stream = io.BufferedReader(BlockStream(self.pfs.read_entry(entry), progress))
                tar.addfile(info, stream)
                count += 1
        return count

    def inspect_file(self, addr: Address) -> FileInfo:
        return self.pfs.inspect_file(addr.repo, ref_text(addr), addr.path or "/")

    def iter_files(self, addr: Address) -> Iterator[FileInfo]:
        return self.pfs.iter_files(addr.repo, ref_text(addr), addr.path or "/")

    def iter_glob(self, addr: Address, glob: str) -> Iterator[FileInfo]:
        return self.pfs.iter_glob(addr.repo, ref_text(addr), glob)

    def iter_diff(
        self, new: Address, old_text: str | None, old: Address | None
    ) -> Iterator[DiffEntry]:
        return self.pfs.iter_diff(new, old)

    # Maintenance

    def fsck(self, references: bool) -> FsckReport:
        return self.pfs.fsck(references)

    def import_objects(
        self, repo: str, ref: str, path: str, url: str, exclude: list[str],
        endpoint: str | None, description: str,
    ) -> ImportResult:  # fmt: skip
        commit, n = self.pfs.import_objects(
            repo, ref, path, url, exclude=exclude, endpoint=endpoint, description=description
        )
        return ImportResult(commit, n)

    def materialize(self, repo: str, ref: str, path: str, description: str) -> ImportResult:
        return ImportResult(*self.pfs.materialize(repo, ref, path, description))

    def gc(self, grace: float, dry_run: bool, repack_threshold: float, retention: bool) -> GcReport:
        return self.pps.gc(grace, dry_run, repack_threshold, retention)

    def set_retention(
        self, repo: str, keep_last: int | None, keep_within: float | None, keep_tagged: bool
    ) -> RetentionRule:
        return self.pfs.set_retention(repo, keep_last, keep_within, keep_tagged)

    def list_retention(self, repo: str | None) -> list[RetentionRule]:
        return self.pfs.list_retention(repo)

    def delete_retention(self, repo: str) -> None:
        self.pfs.delete_retention(repo)

    def stats(self) -> dict[str, int]:
        return self.pfs.stats()

    # Pipelines

    def create_pipeline(
        self, spec: dict[str, Any], origin: dict[str, Any], update: bool, reprocess: bool
    ) -> PipelineInfo:
        return self.pps.create_pipeline(spec, origin=origin, update=update, reprocess=reprocess)

    def apply(
        self,
        docs: list[tuple[dict[str, Any], str, dict[str, Any]]],
        prune: bool,
        dry_run: bool,
        reprocess: bool,
    ) -> ApplyResult:
        from tusk.pps.apply import Document, apply_documents

        documents = [Document(spec, source, origin) for spec, source, origin in docs]
        return apply_documents(
            self.pps, documents, prune=prune, dry_run=dry_run, reprocess=reprocess
        )

    def inspect_pipeline(self, name: str, history: bool) -> PipelineInfo:
        return self.pps.inspect_pipeline(name, history)

    def list_pipelines(self) -> list[PipelineInfo]:
        return self.pps.list_pipelines()

    def delete_pipeline(self, name: str, keep_repo: bool, force: bool) -> None:
        self.pps.delete_pipeline(name, keep_repo=keep_repo, force=force)

    def set_pipeline_state(self, name: str, state: str) -> PipelineInfo:
        return self.pps.set_pipeline_state(name, state)

    def run_pipeline(self, name: str, branch: str | None) -> CommitInfo:
        return self.pps.run_pipeline(name, branch)

    def dry_run(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        return [d.to_json() for d in self.pps.datums_for_spec(spec)]

    # Jobs, datums, logs

    def list_jobs(self, pipeline: str | None, commit_set: str | None) -> list[JobInfo]:
        return self.pps.list_jobs(pipeline, commit_set)

    def inspect_job(self, pipeline: str | None, job: str) -> JobInfo:
        return self.pps.inspect_job(pipeline, job)

    def wait_job(
        self,
        pipeline: str | None,
        job: str,
        timeout: float | None,
        run: bool,
        log: Callable[[str], None] | None,
    ) -> JobInfo:
        if pipeline is None:
            pipeline = self.pps.inspect_job(None, job).pipeline
        with self._waiting(run, log) as pause:
            return self.pps.wait_job(pipeline, job, timeout, pause)

    def stop_job(self, pipeline: str | None, job: str) -> JobInfo:
        if pipeline is None:
            pipeline = self.pps.inspect_job(None, job).pipeline
        return self.pps.stop_job(pipeline, job)

    def restart_datums(self, pipeline: str, job: str, filters: list[str]) -> list[str]:
        return self.pps.restart_datums(pipeline, job, filters)

    def list_datums(self, pipeline: str, job: str) -> list[DatumInfo]:
        return self.pps.list_datums(pipeline, job)

    def inspect_datum(self, pipeline: str, job: str, datum: str) -> DatumInfo:
        return self.pps.inspect_datum(pipeline, job, datum)

    def datum_run(self, pipeline: str, job: str, datum: str) -> DatumRun:
        return self.pps.datum_run(pipeline, job, datum)

    def logs(self, pipeline: str, job: str | None, datum: str | None, after: int) -> list[LogLine]:
        return self.pps.logs(pipeline, job, datum, after)

    def wait_commit_set(
        self,
        commit_set: str,
        timeout: float | None,
        run: bool,
        log: Callable[[str], None] | None,
    ) -> list[JobInfo]:
        with self._waiting(run, log) as pause:
            return self.pps.wait_commit_set(commit_set, timeout, pause)

    def lineage(self, addr: Address, path: str, depth: int) -> LineageStep:
        return self.pps.lineage(addr.repo, ref_text(addr), path, depth)

    # Secrets

    def create_secret(self, manifest: dict[str, Any] | str) -> SecretInfo:
        return self.pps.secrets.create(manifest)

    def list_secrets(self) -> list[SecretInfo]:
        return self.pps.secrets.list_all()

    def inspect_secret(self, name: str) -> SecretInfo:
        return self.pps.secrets.inspect(name)

    def delete_secret(self, name: str) -> None:
        self.pps.secrets.delete(name)

    # Images

    def load_image(self, path: Path, progress: Callable[[int], None] | None) -> CachedImage:
        from tusk.pps.cached_images import cached_image

        cache = self.pps.images
        return cached_image(cache, cache.load(path).digest)

    def list_images(self) -> list[CachedImage]:
        from tusk.pps.cached_images import cached_images

        return cached_images(self.pps.images)

    def delete_image(self, name: str) -> CachedImage:
        return self.pps.delete_image(name)

    # Running jobs here

    @contextmanager
    def _waiting(self, run: bool, log: Callable[[str], None] | None) -> Iterator[Pause]:
        """What a wait does between checks: run this home's jobs if nothing else does."""
        from tusk.pps.waiting import WaitRunner

        logger = logging.getLogger("tusk.scheduler")
        runner = WaitRunner(
            self.pps,
            run=run,
            log=log or logger.info,
            warn=log or logger.warning,
            executor=lambda: self._executor(None, None),
        )
        try:
            yield runner.pause
        finally:
            runner.close()

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
        from tusk.pps.scheduler import Scheduler

        if (executor or os.environ.get("TUSK_EXECUTOR")) == "workers":
            if role != "all":
                raise InvalidArgument("--executor workers is for tusk up, not tusk worker")
            role, executor = "coordinator", "host"  # this process runs no datum
        runner = self._executor(executor, sandbox)
        try:
            Scheduler(
                self.pps,
                runner,
                log=log,
                role=role,
                api_url=api_url,
                pipelines=pipelines,
                s3_url=s3_url,
            ).run(stop, once=once)
        finally:
            runner.close()

    def _executor(self, executor: str | None, sandbox: str | None) -> LocalExecutor | DaskExecutor:
        """``executor`` (default: ``$TUSK_EXECUTOR``, else local processes) for a scheduler."""
        from tusk.pps.executor import executor_named

        chosen = executor or os.environ.get("TUSK_EXECUTOR") or "local"
        runner = executor_named(chosen, sandbox)
        if runner is not None:
            return runner
        from tusk.pps.dask_executor import DaskExecutor, StoreSpec

        storage = self.pfs.storage
        spec = StoreSpec(str(self.home), storage.meta.url, storage.backend.url, sandbox)
        return DaskExecutor(chosen, spec)

    def scheduler_running(self) -> bool | None:
        return self.pfs.storage.meta.scheduler_presence().others_running()

    def sandbox_mode(self, sandbox: str | None) -> str:
        from tusk.pps.executor import sandbox_mode

        return sandbox_mode(sandbox)


class LocalFileReader:
    """Random access to one file of one commit, in this process (``BaseClient.file_reader``):
    a read fetches only the chunks it overlaps (:class:`tusk.storage.spans.SpanReader`)."""

    def __init__(
        self, pfs: PfsService, repo: str, ref: str, path: str, commit: CommitRecord | None = None
    ) -> None:
        from tusk.errors import FileNotFound, PathConflict
        from tusk.pfs.tree import FileEntry
        from tusk.storage.spans import SpanReader

        commit = commit or pfs.resolve_commit(repo, ref)
        entry = pfs.tree_entry(commit.tree, path)
        if entry is None:
            raise FileNotFound(f"no such file {repo}@{ref}:{path}")
        if not isinstance(entry, FileEntry):
            raise PathConflict(f"{repo}@{ref}:{path} is a directory, not a file")
        self.repo, self.commit, self.path, self.size = commit.repo, commit.id, path, entry.size
        self._span = SpanReader(pfs.chunks, pfs.reader().chunks(entry))

    def read(self, start: int, stop: int) -> bytes:
        return self._span.read(start, stop)

    def close(self) -> None:
        pass
