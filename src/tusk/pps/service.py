"""PpsService: the one facade of pipelines: specs, jobs, datums, logs and lineage.

How a job comes to be (Pachyderm's model, on PFS's commit sets): a pipeline owns an output
repo whose branch has the input branches as provenance. When a commit finishes on an input
branch, PFS opens a commit in the same commit set on every downstream branch; the scheduler
(``pps.scheduler``) finds each open output commit without a job, makes a job for it, computes
its datums and runs them. A job's id is its commit set's id, so ``pipeline@<id>`` names it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tusk.errors import (
    AlreadyExists,
    CommitNotFound,
    Conflict,
    DatumNotFound,
    InUse,
    InvalidArgument,
    InvalidSpec,
    JobFailed,
    JobNotFound,
    NotFound,
    PipelineNotFound,
    RepoNotFound,
)
from tusk.ids import check_branch_name, is_commit_id
from tusk.pfs import PfsService
from tusk.pfs.gates import CheckRequest
from tusk.pfs.models import (
    DEFAULT_GRACE,
    BranchTrigger,
    CheckRunInfo,
    CommitInfo,
    GcReport,
    MergeResult,
)
from tusk.polling import poll_until
from tusk.pps.cached_images import CachedImage, cached_images, find_image
from tusk.pps.datums import Datum, FileInfo, compute_datums, cron_as_pfs, datum_files
from tusk.pps.models import (
    DatumInfo,
    DatumRun,
    JobInfo,
    LineageStep,
    LogLine,
    PipelineInfo,
    PipelineVersion,
)
from tusk.pps.resources import describe as describe_resources
from tusk.pps.secrets import SecretService
from tusk.pps.spec import CronInput, Input, PfsInput, PipelineSpec, load_spec, spec_hash
from tusk.storage.meta.records import (
    CommitRecord,
    DatumRecord,
    JobRecord,
    PipelineRecord,
    PipelineVersionRecord,
)
from tusk.storage.meta.store import MetaTx

if TYPE_CHECKING:
    from tusk.pfs.sources import Source
    from tusk.pps.checkrun import CheckRunner
    from tusk.pps.checks import CheckSpec
    from tusk.pps.executor import DatumOutcome
    from tusk.pps.images import ImageCache

DONE_STATES = ("success", "failure", "killed")
Pause = Callable[[float], None]  # what a waiter does between two checks (default: sleep)


def input_summary(inp: Input) -> str:
    """``images:/*`` or ``cross(images:/*, edges:/)``: one line for tables."""
    if inp.pfs is not None:
        return f"{inp.pfs.name}:{inp.pfs.glob}"
    if inp.cron is not None:
        return f"cron {inp.cron.name} ({inp.cron.spec})"
    for kind in ("cross", "union", "join", "group"):
        children = getattr(inp, kind)
        if children:
            return f"{kind}({', '.join(input_summary(c) for c in children)})"
    return "?"


def _process_fields(tx: MetaTx, name: str, spec: PipelineSpec) -> dict[str, Any]:
    """PipelineInfo's fields on a spout's or a service's process (none for others)."""
    if spec.spout is None and spec.service is None:
        return {}
    row = tx.get_process(name)
    if row is None:
        return {"process_state": "starting"}
    return {"process_state": row.state, "restarts": row.restarts, "process_detail": row.detail}


_UNPIN = "delete the pipeline first (its versions and jobs keep the image they ran)"


def _pins_text(pins: list[tuple[str, int]]) -> str:
    """``pipeline edges v1, v2`` or ``pipelines a v1 and edges v2, v3``, from sorted pairs."""
    by_pipeline: dict[str, list[str]] = {}
    for pipeline, version in pins:
        by_pipeline.setdefault(pipeline, []).append(f"v{version}")
    parts = [f"{p} {', '.join(versions)}" for p, versions in by_pipeline.items()]
    if len(parts) == 1:
        return f"pipeline {parts[0]}"
    return f"pipelines {', '.join(parts[:-1])} and {parts[-1]}"


class PpsService:
    def __init__(self, pfs: PfsService, home: Path) -> None:
        self.pfs = pfs
        self.meta = pfs.meta
        self.home = Path(home)
        self._specs: dict[tuple[str, int, float], tuple[PipelineSpec, str, dict]] = {}
        self._secrets: SecretService | None = None
        self._checks: CheckRunner | None = None
        self.sandbox: str | None = None  # checks' sandbox: tusk up --sandbox, else TUSK_SANDBOX
        if pfs.check_runner is None:  # an embedded client installs its own (jobs run there)
            pfs.check_runner = self.run_checks  # what gates branches runs here

    @property
    def secrets(self) -> SecretService:
        """Stored secrets (``tusk create secret``), encrypted under a key outside the store."""
        if self._secrets is None:
            self._secrets = SecretService(self.meta, self.home)
        return self._secrets

    @property
    def images(self) -> ImageCache:
        """The OCI images pipelines run in, copied and unpacked under ``<home>/images``."""
        from tusk.pps.images import cache_for

        return cache_for(self.home)

    def resolve_image(self, spec: PipelineSpec) -> str:
        """Fetch ``transform.image`` into the image cache and return its manifest digest.

        ``image_pull_secrets`` name stored secrets holding a Docker config (key
        ``.dockerconfigjson``, as Kubernetes names it, or ``config.json``); their registries'
        credentials are merged into one auth file that lives only while the image is copied.
        """
        ref = spec.transform.image
        if not ref:
            raise InvalidArgument(f"pipeline {spec.name} names no image")
        auths: dict[str, Any] = {}
        for name in spec.transform.image_pull_secrets:
            values = self.secrets.values_for(name)
            raw = values.get(".dockerconfigjson") or values.get("config.json")
            if raw is None:
                raise InvalidArgument(
                    f"image_pull_secrets: secret {name} has no .dockerconfigjson key "
                    "(create it from a Docker config.json)"
                )
            try:
                auths.update(json.loads(raw)["auths"])
            except (ValueError, KeyError, TypeError):
                raise InvalidArgument(
                    f"image_pull_secrets: secret {name}'s .dockerconfigjson is not a Docker "
                    'config ({"auths": {...}})'
                ) from None
        if not auths:
            return self.images.resolve(ref).digest
        folder = self.home / "images" / "tmp"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"pull-{secrets.token_hex(8)}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"auths": auths}, f)
            return self.images.resolve(ref, authfile=path).digest
        finally:
            path.unlink(missing_ok=True)

    def delete_image(self, name: str) -> CachedImage:
        """Remove the cached image ``name`` names (digest, unique digest prefix or reference)
        and return what it was, as ``docker rmi`` does; its disk space comes back at once.

        Refused (InUse) while a pipeline version or a job pins its digest: they keep it for
        their reruns and lineage until the pipeline is deleted. ImageNotFound when no image
        of the cache has that name.
        """
        cache = self.images
        image = find_image(cached_images(cache), name)
        with self.meta.read() as tx:
            pins = tx.image_pins(image.digest)
        if pins:
            raise InUse(f"image {image.digest} is pinned by {_pins_text(pins)}: {_UNPIN}")
        cache.remove(image.digest)
        return image

    def merge_and_run(
        self,
        repo: str,
        source: str,
        into: str,
        *,
        message: str | None = None,
        strategy: str = "fail",
        resolve: Mapping[str, str | Source] | None = None,
        timeout: float | None = None,
        pause: Pause | None = None,
    ) -> MergeResult:
        """``tusk merge --run-pipelines`` (tusk.pps.merging): the downstream pipelines run on
        the merge first; the target and every output branch move together only if all
        succeed."""
        from tusk.pps.merging import merge_and_run

        return merge_and_run(
            self, repo, source, into, message=message, strategy=strategy,
            resolve=resolve or {}, timeout=timeout, pause=pause,
        )  # fmt: skip

    # Checks (tusk.pps.checks): commands that gate commits and merges of branches

    def run_checks(self, request: CheckRequest) -> list[CheckRunInfo]:
        if self._checks is None:
            from tusk.pps.checkrun import CheckRunner

            self._checks = CheckRunner(self.pfs, self.home, self.sandbox, self.pipeline_check)
        return self._checks(request)

    def pipeline_check(
        self, request: CheckRequest, spec: dict[str, Any], pause: Pause | None = None
    ) -> DatumOutcome:
        """A check that names a pipeline: its job on the candidate must succeed
        (tusk.pps.merging); ``pause`` runs the job here when no scheduler does."""
        from tusk.pps.merging import pipeline_check

        return pipeline_check(self, request, spec, pause)

    def put_check(self, spec: CheckSpec) -> tuple[CheckSpec, str]:
        """Create or replace a check; (its spec as stored, created|updated|unchanged). An
        image is pinned by digest now, so every run of this version runs the same image."""
        from tusk.pps import checks

        self.pfs.inspect_repo(spec.repo)
        if spec.image:
            spec = spec.model_copy(update={"image_digest": self.images.resolve(spec.image).digest})
        now = time.time()
        with self.meta.write() as tx:
            old = tx.get_check(spec.name)
            record = checks.record_of(spec, old.created_at if old else now, now)
            if old is not None and old.spec == record.spec:
                return spec, "unchanged"
            tx.put_check(record)
        return spec, "created" if old is None else "updated"

    def list_checks(self, repo: str | None = None) -> list[CheckSpec]:
        from tusk.pps import checks

        with self.meta.read() as tx:
            return [checks.spec_of(r) for r in tx.list_checks(repo)]

    def inspect_check(self, name: str) -> CheckSpec:
        from tusk.pps import checks

        return checks.spec_of(checks.need_check(self, name))

    def delete_check(self, name: str) -> None:
        from tusk.pps import checks

        checks.need_check(self, name)
        with self.meta.write() as tx:
            tx.delete_check(name)

    def check_runs(self, repo: str, ref: str) -> list[CheckRunInfo]:
        """The checks run on a commit of ``repo``: one ``ref`` names, or a candidate commit
        that never landed (a failed merge's), by its id."""
        from tusk.pps.checkrun import run_info

        commit = self._checked_commit(repo, ref)
        with self.meta.read() as tx:
            return [run_info(r) for r in tx.check_runs(commit) if r.repo == repo]

    def inspect_check_run(self, repo: str, ref: str, name: str) -> CheckRunInfo:
        for run in self.check_runs(repo, ref):
            if run.name == name:
                return run
        raise NotFound(f"check {name} has not run on {repo}@{ref} (tusk list check {repo}@{ref})")

    def _checked_commit(self, repo: str, ref: str) -> str:
        try:
            return self.pfs.inspect_commit(repo, ref).id
        except NotFound:
            if not is_commit_id(ref):
                raise
            with self.meta.read() as tx:
                if any(r.repo == repo for r in tx.check_runs(ref)):
                    return ref  # a candidate that was dropped when its checks failed
            raise

    # Specs and pipelines

    def _need_pipeline(self, tx: MetaTx, name: str) -> PipelineRecord:
        p = tx.get_pipeline(name)
        if p is None:
            raise PipelineNotFound(
                f"pipeline {name} not found (list pipelines with: tusk list pipeline)"
            )
        return p

    def _version(self, tx: MetaTx, name: str, version: int) -> PipelineVersionRecord:
        v = tx.get_pipeline_version(name, version)
        if v is None:
            raise PipelineNotFound(f"pipeline {name} has no version {version}")
        return v

    def spec_of(self, name: str, version: int | None = None) -> tuple[PipelineSpec, str, dict]:
        """(spec, salt, origin) of a pipeline's current or given version."""
        with self.meta.read() as tx:
            p = self._need_pipeline(tx, name)
        return self.spec_for(p, version)

    def spec_for(
        self, p: PipelineRecord, version: int | None = None
    ) -> tuple[PipelineSpec, str, dict]:
        """Like ``spec_of`` for a pipeline row in hand. A version never changes once written,
        so parsed versions are cached (a pipeline made again has a new ``created_at``)."""
        key = (p.name, version or p.version, p.created_at)
        cached = self._specs.get(key)
        if cached is None:
            with self.meta.read() as tx:
                v = self._version(tx, p.name, version or p.version)
            cached = (load_spec(json.loads(v.spec)), v.salt, json.loads(v.origin))
            self._specs[key] = cached
        return cached

    def _check_inputs(self, tx: MetaTx, spec: PipelineSpec, updating: bool) -> None:
        name = spec.name
        sql = spec.egress.sql_database if spec.egress is not None else None
        if sql is not None and sql.secret is not None:  # its password: checked now, read later
            stored = tx.get_secret(sql.secret.name)
            if stored is None or sql.secret.key not in stored.keys:
                missing = "does not exist" if stored is None else f"has no key {sql.secret.key}"
                raise InvalidSpec(
                    f"invalid pipeline spec: egress.sql_database.secret: secret "
                    f"{sql.secret.name} {missing} (create it with: tusk create secret -f FILE)"
                )
        for leaf in spec.inputs():
            if isinstance(leaf, CronInput):
                continue
            if leaf.commit is not None and tx.get_repo(leaf.repo) is not None:
                pinned = self.pfs._lookup_commit(tx, leaf.repo, leaf.commit)
                if pinned is None or not pinned.finished:
                    raise InvalidSpec(
                        f"invalid pipeline spec: input.pfs.commit: {leaf.repo}@{leaf.commit} is "
                        "not a finished commit of that repo"
                    )
            if leaf.repo == name:
                raise InvalidSpec(
                    f"invalid pipeline spec: input.pfs.repo: pipeline {name} cannot read its own "
                    "output repo"
                )
            if tx.get_repo(leaf.repo) is None:
                raise RepoNotFound(
                    f"invalid pipeline spec: input repo {leaf.repo} does not exist (create it "
                    f"with: tusk create repo {leaf.repo})"
                )
        if updating:
            # A cycle: an input that is (transitively) computed from this pipeline's output.
            stack = [(r, b) for r, b in spec.input_branches()]
            seen: set[tuple[str, str]] = set()
            while stack:
                node = stack.pop()
                if node[0] == name:
                    raise InvalidSpec(
                        f"invalid pipeline spec: input: {node[0]}@{node[1]} depends on pipeline "
                        f"{name}'s output, which would make a cycle"
                    )
                if node not in seen:
                    seen.add(node)
                    stack.extend(tx.branch_provenance(*node))

    def create_pipeline(
        self,
        data: dict[str, Any] | PipelineSpec,
        *,
        origin: dict[str, Any] | None = None,
        update: bool = False,
        reprocess: bool = False,
    ) -> PipelineInfo:
        """Create (or with ``update``, replace) a pipeline; starts a job if inputs have data.

        All or nothing: the pipeline's rows, its output repo and branch, cron repos and the
        branch's provenance are written in one metadata transaction.
        """
        spec = data if isinstance(data, PipelineSpec) else load_spec(data)
        name = spec.name
        now = time.time()
        canonical = json.dumps(spec.canonical(), sort_keys=True)
        with self.meta.atomic() as tx:
            existing = tx.get_pipeline(name, lock=True)
            if existing is not None and not update:
                raise AlreadyExists(
                    f"pipeline {name} already exists (change it with: tusk update pipeline)"
                )
            if existing is None and update:
                raise PipelineNotFound(f"pipeline {name} not found; create it first")
            if existing is None and tx.get_repo(name) is not None:
                raise AlreadyExists(
                    f"repo {name} already exists; a pipeline makes its own output repo, so "
                    "choose another pipeline name or delete the repo"
                )
            self._check_inputs(tx, spec, updating=existing is not None)
            version = 1
            salt = spec.salt or secrets.token_hex(16)
            if existing is not None:
                version = existing.version + 1
                prev = self._version(tx, name, existing.version)
                prev_spec = json.loads(prev.spec)
                if reprocess:
                    salt = secrets.token_hex(16)  # --reprocess always reruns every datum
                elif spec.salt != prev_spec.get("salt"):
                    salt = spec.salt or secrets.token_hex(16)  # a changed salt reruns too
                else:
                    salt = prev.salt
            tx.upsert_pipeline(
                PipelineRecord(
                    name,
                    version,
                    existing.state if existing else "running",
                    existing.created_at if existing else now,
                    now,
                )
            )
            tx.insert_pipeline_version(
                PipelineVersionRecord(
                    name, version, canonical, spec_hash(spec), salt, json.dumps(origin or {}), now
                )
            )
            if existing is None:
                self.pfs.create_repo(name, spec.description or f"output of pipeline {name}")
            for leaf in spec.inputs():
                if isinstance(leaf, CronInput) and tx.get_repo(leaf.repo) is None:
                    self.pfs.create_repo(leaf.repo, f"ticks of cron input {leaf.name} of {name}")
            for leaf in spec.inputs():
                if isinstance(leaf, PfsInput) and leaf.trigger is not None:
                    # As Pachyderm: the input's branch is made (or kept, at its head) to follow
                    # the trigger's branch; the pipeline's jobs run when it moves.
                    self.pfs.create_branch(leaf.repo, leaf.branch, trigger=_branch_trigger(leaf))
            # A repo read under two names (cross, join, group, union) is one provenance edge.
            provenance = list(dict.fromkeys(spec.input_branches()))
            self.pfs.create_branch(name, spec.output_branch, provenance=provenance)
            if spec.spout is None:  # a spout's commits are its own: no job to start
                self.pfs.trigger_branch(name, spec.output_branch, defer_if_open=True)
        return self.inspect_pipeline(name)

    def is_pipeline(self, name: str) -> bool:
        """Whether ``name`` is a pipeline (so its repo is a pipeline's output repo)."""
        with self.meta.read() as tx:
            return tx.get_pipeline(name) is not None

    def inspect_pipeline(self, name: str, history: bool = False) -> PipelineInfo:
        with self.meta.read() as tx:
            return self._pipeline_info(tx, self._need_pipeline(tx, name), history)

    def _pipeline_info(self, tx: MetaTx, p: PipelineRecord, history: bool) -> PipelineInfo:
        v = self._version(tx, p.name, p.version)
        spec_dict = json.loads(v.spec)
        spec = load_spec(spec_dict)
        jobs = tx.list_jobs(p.name)
        versions = []
        if history:
            versions = [
                PipelineVersion(
                    r.version,
                    r.spec_hash,
                    r.created_at,
                    r.salt,
                    json.loads(r.origin),
                    json.loads(r.spec),
                )
                for r in tx.pipeline_versions(p.name)
            ]
        return PipelineInfo(
            name=p.name,
            version=p.version,
            state=p.state,
            description=spec.description,
            input=input_summary(spec.input) if spec.input is not None else "spout",
            output_branch=spec.output_branch,
            created_at=p.created_at,
            updated_at=p.updated_at,
            spec=spec_dict,
            last_job=jobs[0].id if jobs else None,
            last_job_state=jobs[0].state if jobs else None,
            versions=versions,
            resources=describe_resources(spec),
            **_process_fields(tx, p.name, spec),
        )

    def list_pipelines(self) -> list[PipelineInfo]:
        with self.meta.read() as tx:
            return [self._pipeline_info(tx, p, False) for p in tx.list_pipelines()]

    def delete_pipeline(self, name: str, *, keep_repo: bool = False, force: bool = False) -> None:
        with self.meta.read() as tx:
            self._need_pipeline(tx, name)
            users = [
                f"{r}@{b}" for r, b in tx.branch_subvenance(name) if tx.get_pipeline(r) is not None
            ]
        if users and not force:
            raise InUse(
                f"pipeline {name}'s output is an input of {', '.join(sorted(set(users)))}; "
                "delete those pipelines first or use --force"
            )
        with self.meta.write() as tx:
            for job in tx.list_jobs(name, states=["created", "running", "egressing"]):
                tx.update_job(name, job.id, state="killed", reason="pipeline deleted")
            tx.delete_pipeline(name)
        if not keep_repo:
            with contextlib.suppress(RepoNotFound):
                self.pfs.delete_repo(name, force=True)

    def set_pipeline_state(self, name: str, state: str) -> PipelineInfo:
        with self.meta.write() as tx:
            p = self._need_pipeline(tx, name)
            tx.upsert_pipeline(PipelineRecord(p.name, p.version, state, p.created_at, p.updated_at))
        return self.inspect_pipeline(name)

    def run_pipeline(self, name: str, branch: str | None = None) -> CommitInfo:
        """A new job on the current inputs (a new commit set at the output branch).

        With ``branch`` (say ``pr-12``), the pipeline runs on that branch of its inputs
        instead, into that branch of its output repo: the branch-per-pull-request pattern.
        Missing branches are made first, each from its usual branch (O(1), nothing copied):
        the inputs', the upstream pipelines' and the downstream pipelines', so that a later
        commit to ``data@pr-12`` runs the whole graph on ``pr-12``. Datums that match the
        usual branch's are skipped, so only what the branch changed is computed.
        """
        spec, _salt, _origin = self.spec_of(name)
        target = spec.output_branch
        if branch is not None and branch != spec.output_branch:
            check_branch_name(branch)
            with self.meta.atomic():
                self._branch_out(name, branch, set())
                self._branch_downstream(name, branch, self._readers(), set())
            target = branch
        started = self.pfs.trigger_branch(name, target)
        if started is None:
            raise InvalidArgument(
                f"pipeline {name} has no input data yet; put a file into one of its inputs"
            )
        return started

    def _branch_out(self, name: str, branch: str, done: set[str]) -> None:
        """Give pipeline ``name`` (and every pipeline upstream) a ``branch`` fed by ``branch``
        of each of its inputs."""
        if name in done:
            return
        done.add(name)
        spec, _salt, _origin = self.spec_of(name)
        provenance = []
        for leaf in spec.inputs():
            usual = "master" if isinstance(leaf, CronInput) else leaf.branch
            if self._is_pipeline(leaf.repo):
                self._branch_out(leaf.repo, branch, done)
            elif branch not in self.pfs.inspect_repo(leaf.repo).branches:
                self.pfs.create_branch(leaf.repo, branch, head=self._head_of(leaf.repo, usual))
            provenance.append((leaf.repo, branch))
        exists = branch in self.pfs.inspect_repo(name).branches
        head = None if exists else self._head_of(name, spec.output_branch)
        self.pfs.create_branch(name, branch, head=head, provenance=provenance)

    def _branch_downstream(
        self, name: str, branch: str, readers: dict[str, list[str]], done: set[str]
    ) -> None:
        for reader in dict.fromkeys(readers.get(name, ())):
            if reader not in done:
                self._branch_out(reader, branch, done)
                self._branch_downstream(reader, branch, readers, done)

    def _readers(self) -> dict[str, list[str]]:
        """Repo -> the pipelines that read it (cron inputs aside)."""
        readers: dict[str, list[str]] = {}
        for p in self.list_pipelines():
            for leaf in self.spec_of(p.name)[0].inputs():
                if not isinstance(leaf, CronInput):
                    readers.setdefault(leaf.repo, []).append(p.name)
        return readers

    def _is_pipeline(self, name: str) -> bool:
        with self.meta.read() as tx:
            return tx.get_pipeline(name) is not None

    def _head_of(self, repo: str, branch: str) -> str | None:
        """The head commit of repo@branch, or None if the branch is missing or empty."""
        if branch not in self.pfs.inspect_repo(repo).branches:
            return None
        return self.pfs.inspect_branch(repo, branch).head

    # Maintenance

    def gc(
        self, grace: float, dry_run: bool, repack_threshold: float, retention: bool = True
    ) -> GcReport:
        """PFS's gc, then what pipelines leave in the home: webhook checkouts no delivery or
        pipeline uses any more, dead schedulers' scratch (see ``webhooks.prune_scratch``), and
        cached images no pipeline version or job pins and no ``tusk image load`` holds."""
        from dataclasses import replace

        from tusk.pps.webhooks import prune_scratch  # it needs this module's class

        branches = self.remove_abandoned_branches(grace, dry_run)
        report = self.pfs.gc(grace, dry_run, repack_threshold, retention)
        with self.meta.read() as tx:
            pinned = tx.pinned_image_digests()
        images, image_bytes = self.images.prune(pinned, grace, dry_run)
        return replace(
            report,
            scratch_deleted=prune_scratch(self, grace, dry_run),
            images_deleted=images,
            image_bytes_freed=image_bytes,
            leftovers_removed=report.leftovers_removed + branches,
        )

    def remove_abandoned_branches(self, grace: float, dry_run: bool = False) -> int:
        """Remove the temporary branches (with their unlanded commits and jobs) that a
        ``merge --run-pipelines`` or a pipeline check now gone held for longer than ``grace``
        seconds (tusk.pfs.holds); how many names (would) go."""
        from tusk.pfs import holds
        from tusk.pps.merging import remove_abandoned

        branches = [h for h in self.pfs.abandoned_holds(grace) if h.kind == holds.BRANCH]
        if not dry_run:
            for h in branches:
                remove_abandoned(self, h.name)
        return len(branches)

    def remove_leftovers(self, grace: float = DEFAULT_GRACE) -> int:
        """What killed processes left of gated merges and checks, older than ``grace``: their
        temporary branches, then their open commits (``tusk up`` runs it every hour; gc too)."""
        return self.remove_abandoned_branches(grace) + self.pfs.remove_abandoned_commits(grace)

    # Datums of a spec against current data (dry run) and of a job

    def files_for(
        self, commits: dict[tuple[str, str], str]
    ) -> Callable[[PfsInput], list[FileInfo]]:
        """A ``files_for`` callback reading each input from the given (repo, branch) commits."""

        def files(inp: PfsInput) -> list[FileInfo]:
            commit = inp.commit or commits.get((inp.repo, inp.branch))
            if commit is None:
                return []
            return [
                FileInfo(path, entry.hash.hex(), entry.size)
                for path, entry in self.pfs.walk_files(inp.repo, commit)
            ]

        return files

    def datums_for_spec(self, data: dict[str, Any] | PipelineSpec) -> list[Datum]:
        """The datums a spec would have on the inputs' current heads (nothing is created)."""
        spec = data if isinstance(data, PipelineSpec) else load_spec(data)
        heads: dict[tuple[str, str], str] = {}
        with self.meta.read() as tx:
            for repo, branch in spec.input_branches():
                if tx.get_repo(repo) is None:
                    if any(
                        isinstance(leaf, CronInput) and leaf.repo == repo for leaf in spec.inputs()
                    ):
                        continue
                    raise RepoNotFound(f"input repo {repo} does not exist")
                b = tx.get_branch(repo, branch)
                if b is not None and b.head is not None:
                    heads[(repo, branch)] = b.head
        if spec.input is None:
            raise InvalidArgument(f"pipeline {spec.name} is a spout: it has no datums")
        return compute_datums(spec.input, self.files_for(heads), cron=cron_as_pfs)

    # Jobs

    def _job_info(self, tx: MetaTx, j: JobRecord) -> JobInfo:
        counts = tx.count_datums(j.pipeline, j.id) if j.state != "created" else {}
        inputs = tx.commit_provenance(j.output_commit)
        named = []
        for cid in inputs:
            c = tx.get_commit(cid)
            named.append(f"{c.repo}@{cid}" if c else f"?@{cid}")
        return JobInfo(
            pipeline=j.pipeline,
            id=j.id,
            version=j.version,
            output_commit=j.output_commit,
            state=j.state,
            reason=j.reason,
            created_at=j.created_at,
            started_at=j.started_at,
            finished_at=j.finished_at,
            datums_total=j.datums_total,
            processed=counts.get("success", j.processed),
            skipped=counts.get("skipped", j.skipped),
            failed=counts.get("failed", j.failed),
            recovered=counts.get("recovered", 0),
            input_commits=sorted(named),
            image_digest=j.image_digest,
        )

    def _find_job(self, tx: MetaTx, pipeline: str | None, job_id: str) -> JobRecord:
        found = tx.find_jobs_by_prefix(pipeline, job_id)
        exact = [j for j in found if j.id == job_id]
        if exact:
            found = exact
        where = f"{pipeline}@{job_id}" if pipeline else job_id
        if not found:
            raise JobNotFound(f"job {where} not found (list jobs with: tusk list job)")
        if len(found) > 1 and len({(j.pipeline, j.id) for j in found}) > 1:
            raise InvalidArgument(f"job id {where} is ambiguous; give the pipeline or more digits")
        return found[0]

    def inspect_job(self, pipeline: str | None, job_id: str) -> JobInfo:
        with self.meta.read() as tx:
            if pipeline is not None:
                self._need_pipeline(tx, pipeline)
            return self._job_info(tx, self._find_job(tx, pipeline, job_id))

    def list_jobs(
        self, pipeline: str | None = None, commit_set: str | None = None
    ) -> list[JobInfo]:
        with self.meta.read() as tx:
            if pipeline is not None:
                self._need_pipeline(tx, pipeline)
            jobs = tx.list_jobs(pipeline)
            if commit_set is not None:
                jobs = [j for j in jobs if j.id == commit_set]
            return [self._job_info(tx, j) for j in jobs]

    def stop_job(self, pipeline: str, job_id: str) -> JobInfo:
        with self.meta.write() as tx:
            self._need_pipeline(tx, pipeline)
            job = self._find_job(tx, pipeline, job_id)
            if job.state in DONE_STATES:
                raise Conflict(f"job {pipeline}@{job.id} is already {job.state}")
            tx.update_job(
                pipeline, job.id, state="killed", reason="stopped by user", finished_at=time.time()
            )
        self.pfs.drop_open_commit(job.output_commit)
        return self.inspect_job(pipeline, job.id)

    def restart_datums(self, pipeline: str, job_id: str, filters: Sequence[str] = ()) -> list[str]:
        """Stop the running datums of a running job that match ``filters`` (each a datum id or
        prefix of one, an input file's path or its content hash; none: every running datum)
        and run them again, as ``pachctl restart datum`` does; the try is not counted. The
        datums restarted (none when none was running).

        They go back to the queue at once; the scheduler running them (here or in another
        process) sees they are no longer its own, stops their process and drops its result."""
        with self.meta.write() as tx:
            self._need_pipeline(tx, pipeline)
            job = self._find_job(tx, pipeline, job_id)
            if job.state in DONE_STATES:
                raise Conflict(
                    f"job {pipeline}@{job.id} is {job.state}: only a running job's datums "
                    "restart (a new job: tusk run pipeline)"
                )
            held = [(d.id, d.owner or "") for d in tx.list_datums(pipeline, job.id, ["running"])
                    if not filters or _datum_matches(d, filters)]  # fmt: skip
            tx.requeue_datums(pipeline, job.id, held)
        return [d for d, _owner in held]

    def wait_job(
        self, pipeline: str, job_id: str, timeout: float | None = None, pause: Pause | None = None
    ) -> JobInfo:
        """Wait until a job is done; a job its commit set will make (the scheduler has not yet
        seen the input commit) counts as one to wait for."""

        def check() -> tuple[bool, JobInfo | None]:
            try:
                info = self.inspect_job(pipeline, job_id)
            except JobNotFound:
                with self.meta.read() as tx:
                    coming = any(
                        c.repo == pipeline and not c.finished for c in tx.commits_in_set(job_id)
                    )
                if not coming:
                    raise
                return False, None
            return info.done, info

        def still(i: JobInfo | None) -> str:
            return f"job {pipeline}@{i.id if i else job_id} is still {i.state if i else 'to come'}"

        info = poll_until(check, timeout, still, pause=pause)
        assert info is not None
        return info

    def wait_commit(
        self, repo: str, ref: str, timeout: float | None = None, pause: Pause | None = None
    ) -> CommitInfo:
        """:meth:`PfsService.wait_commit`, saying why when a failed job dropped the commit."""
        try:
            first = self.pfs.inspect_commit(repo, ref)
        except CommitNotFound:
            # A pipeline's branch whose first job failed before this wait began has no commit:
            # the failure is the answer, not "no commits yet".
            with self.meta.read() as tx:
                jobs = tx.list_jobs(repo) if tx.get_pipeline(repo) is not None else []
            last = max(jobs, key=lambda j: j.created_at, default=None)
            if last is not None and last.state in ("failure", "killed"):
                with self.meta.read() as tx:
                    dropped = tx.get_commit(last.output_commit) is None
                if dropped:
                    raise JobFailed(
                        f"{repo}@{ref} has no finished commit: job {last.pipeline}@{last.id} "
                        f"{'failed' if last.state == 'failure' else 'was stopped'}: {last.reason}"
                    ) from None
            raise
        try:
            return self.pfs.wait_commit(repo, first.id, timeout, pause)
        except CommitNotFound:
            with self.meta.read() as tx:
                job = tx.job_for_commit(first.id)
            if job is None or job.state not in ("failure", "killed"):
                raise
            raise JobFailed(
                f"commit {repo}@{first.id} will not finish: job {job.pipeline}@{job.id} "
                f"{'failed' if job.state == 'failure' else 'was stopped'}: {job.reason}"
            ) from None

    def wait_commit_set(
        self, commit_set: str, timeout: float | None = None, pause: Pause | None = None
    ) -> list[JobInfo]:
        """Wait until every job of a commit set is done; return the jobs."""

        def check() -> tuple[bool, list[JobInfo]]:
            try:
                commits = self.pfs.inspect_commit_set(commit_set)
            except CommitNotFound:
                commits = []  # a failed job drops its output commit: the set may be gone
            jobs = self.list_jobs(commit_set=commit_set)
            if not commits and not jobs:
                raise CommitNotFound(f"commit set {commit_set} not found")
            job_commits = {j.output_commit for j in jobs}
            pending_outputs = [
                c for c in commits if not c.finished and c.id not in job_commits and c.provenance
            ]
            return all(j.done for j in jobs) and not pending_outputs, jobs

        still = lambda _: f"commit set {commit_set} still has jobs"  # noqa: E731
        return poll_until(check, timeout, still, pause=pause)

    # Datums

    def _files_of(self, d: DatumRecord) -> list[dict[str, Any]]:
        """A datum's files (a datum carried forward unchanged names the job that listed them)."""

        def lookup(job: str) -> str | None:
            with self.meta.read() as tx:
                found = tx.get_datum(d.pipeline, job, d.id)
            return found.files if found is not None else None

        return datum_files(d.files, lookup)

    def _datum_info(self, d: DatumRecord) -> DatumInfo:
        outputs = None
        if d.output_tree is not None:
            outputs = sum(1 for _ in self.pfs.tree_files(d.output_tree))
        return DatumInfo(
            pipeline=d.pipeline,
            job=d.job,
            id=d.id,
            state=d.state,
            files=self._files_of(d),
            attempts=d.attempts,
            exit_code=d.exit_code,
            error=d.error,
            stderr_tail=d.stderr_tail,
            started_at=d.started_at,
            finished_at=d.finished_at,
            output_files=outputs,
        )

    def list_datums(self, pipeline: str, job_id: str) -> list[DatumInfo]:
        with self.meta.read() as tx:
            self._need_pipeline(tx, pipeline)
            job = self._find_job(tx, pipeline, job_id)
            rows = tx.list_datums(pipeline, job.id)
        return [self._datum_info(d) for d in rows]

    def inspect_datum(self, pipeline: str, job_id: str, datum_id: str) -> DatumInfo:
        with self.meta.read() as tx:
            self._need_pipeline(tx, pipeline)
            job = self._find_job(tx, pipeline, job_id)
            found = tx.find_datums_by_prefix(pipeline, job.id, datum_id)
        if len(found) != 1:
            what = "not found" if not found else "ambiguous; give more digits"
            raise DatumNotFound(f"datum {datum_id} of job {pipeline}@{job.id} {what}")
        return self._datum_info(found[0])

    def datum_run(self, pipeline: str, job_id: str, datum_id: str) -> DatumRun:
        """What a datum of a job ran with (``tusk debug datum``): its files, each with the
        commit the job read it from, the pipeline version and code, the image it ran in."""
        info = self.inspect_datum(pipeline, job_id, datum_id)
        with self.meta.read() as tx:
            job = self._find_job(tx, pipeline, info.job)
            version = self._version(tx, pipeline, job.version)
            reads: dict[str, str] = {}  # repo -> the commit the job read (older records)
            for cid in tx.commit_provenance(job.output_commit):
                c = tx.get_commit(cid)
                if c is not None:
                    reads.setdefault(c.repo, c.id)
        files = []
        for f in info.files:
            commit = f.get("commit") or reads.get(f["repo"])
            if not commit:
                raise CommitNotFound(
                    f"datum {info.id} of job {pipeline}@{job.id} does not record the commit of "
                    f"{f['repo']}:{f['path']} (a job of an older Tusk, whose output commit is gone)"
                )
            files.append({**f, "commit": commit})
        origin, spec = json.loads(version.origin), json.loads(version.spec)
        return DatumRun(
            pipeline=pipeline,
            job=job.id,
            datum=info.id,
            state=info.state,
            attempts=info.attempts,
            exit_code=info.exit_code,
            error=info.error,
            stderr_tail=info.stderr_tail,
            output_commit=job.output_commit,
            version=job.version,
            spec_hash=version.spec_hash,
            spec=spec,
            origin=origin,
            code=_code_of(origin, spec),
            image=(spec.get("transform") or {}).get("image"),
            image_digest=job.image_digest,
            files=files,
        )

    # Logs

    def logs(
        self,
        pipeline: str,
        job_id: str | None = None,
        datum: str | None = None,
        after: int = 0,
    ) -> list[LogLine]:
        with self.meta.read() as tx:
            self._need_pipeline(tx, pipeline)
            job = self._find_job(tx, pipeline, job_id).id if job_id else None
            rows = tx.read_logs(pipeline, job, datum, after)
        return [LogLine(i, r.pipeline, r.job, r.datum, r.ts, r.stream, r.line) for i, r in rows]

    # Lineage

    def lineage(self, repo: str, ref: str, path: str, depth: int = 32) -> LineageStep:
        """How the file at repo@ref:path was made, recursively up to the original data."""
        commit = self.pfs.inspect_commit(repo, ref)
        self.pfs.inspect_file(repo, commit.id, path)  # NotFound if absent
        return self._lineage(repo, commit.id, "/" + path.strip("/"), depth)

    def _lineage(self, repo: str, commit_id: str, path: str, depth: int) -> LineageStep:
        with self.meta.read() as tx:
            job = tx.job_for_commit(commit_id)
            c = tx.get_commit(commit_id)
            # A carried-forward output was made by an earlier job: follow the parents.
            while job is None and c is not None and c.parent is not None and tx.get_pipeline(repo):
                c = tx.get_commit(c.parent)
                job = tx.job_for_commit(c.id) if c else None
            if job is None:
                return self._data_step(tx, repo, c, commit_id, path)
            version = self._version(tx, job.pipeline, job.version)
            datums = tx.list_datums(job.pipeline, job.id, states=["success", "skipped"])
        for d in datums:
            if d.output_tree is None or self.pfs.tree_kind(d.output_tree, path) != "file":
                continue
            run_job = job
            if d.state == "skipped":
                # Carried forward: the job that computed it read the inputs it names.
                with self.meta.read() as tx:
                    origin_datum = tx.datum_origin(job.pipeline, d.hash)
                    found = tx.get_job(job.pipeline, origin_datum.job) if origin_datum else None
                    if found is not None:
                        run_job = found
                        version = self._version(tx, found.pipeline, found.version)
            origin = json.loads(version.origin)
            spec = json.loads(version.spec)
            step = LineageStep(
                repo,
                commit_id,
                path,
                pipeline=run_job.pipeline,
                job=run_job.id,
                datum=d.id,
                pipeline_version=run_job.version,
                spec_hash=version.spec_hash,
                code=_code_of(origin, spec),
                image=(spec.get("transform") or {}).get("image"),
                image_digest=run_job.image_digest,
            )
            if depth > 0:
                for f in self._files_of(d):
                    commit = self._input_commit(run_job, f["repo"])
                    if commit is not None:
                        step.inputs.append(self._lineage(f["repo"], commit, f["path"], depth - 1))
            return step
        return LineageStep(repo, commit_id, path, pipeline=job.pipeline, job=job.id)

    def _data_step(
        self, tx: MetaTx, repo: str, c: CommitRecord | None, commit_id: str, path: str
    ) -> LineageStep:
        """A file put in, not made by a job: of a merge commit, say which parent it came from;
        of a commit that names provenance (``tusk sql --to``), the commits it was computed
        from are its inputs (whole commits: the description names the files read)."""
        step = LineageStep(repo, commit_id, path)
        if c is None:
            return step
        if c.merge_parent is None or c.parent is None:
            named = [tx.get_commit(p) for p in tx.commit_provenance(c.id)]
            step.inputs.extend(LineageStep(s.repo, s.id, "/") for s in named if s is not None)
            return step
        parents = [tx.get_commit(p) for p in (c.parent, c.merge_parent)]
        mine = self.pfs.tree_entry(c.tree, path)
        source = next(
            (p.id for p in parents if p is not None and self.pfs.tree_entry(p.tree, path) == mine),
            None,
        )
        return LineageStep(
            repo, commit_id, path, merge_parents=[c.parent, c.merge_parent], merged_from=source
        )

    def _input_commit(self, job: JobRecord, repo: str) -> str | None:
        """The commit of ``repo`` that ``job`` read (its output commit's provenance)."""
        with self.meta.read() as tx:
            for cid in tx.commit_provenance(job.output_commit):
                c = tx.get_commit(cid)
                if c is not None and c.repo == repo:
                    return c.id
        return None


def _datum_matches(d: DatumRecord, filters: Sequence[str]) -> bool:
    """A datum a filter names: its id (or a prefix), an input file's path or content hash."""
    names = {d.id}
    for f in json.loads(d.files):
        path = str(f.get("path", ""))
        names.update((path, path.lstrip("/"), str(f.get("hash", ""))))
    return any(f in names or (len(f) >= 6 and d.id.startswith(f)) for f in filters)


def _code_of(origin: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Where the pipeline's code came from: git facts recorded at apply, or spec metadata."""
    code: dict[str, Any] = dict(origin.get("git") or {})
    annotations = ((spec.get("metadata") or {}).get("annotations")) or {}
    for key in ("git_commit", "git_sha", "git-commit", "commit"):
        if key in annotations and "sha" not in code:
            code["sha"] = annotations[key]
    if origin.get("spec_file"):
        code.setdefault("spec_file", origin["spec_file"])
    return code


def _branch_trigger(leaf: PfsInput) -> BranchTrigger:
    """A spec's ``input.pfs.trigger`` as PFS takes it."""
    assert leaf.trigger is not None
    t = leaf.trigger
    return BranchTrigger(t.branch, t.size, t.commits, t.cron_spec, t.all)
