"""The scheduler and its workers: jobs from open output commits, datums by lease, merging.

One loop (``Scheduler.tick``) does, in order:

1. Datums held by a dead worker on this host go back to the queue (other hosts' leases run
   out on their own).
2. Every open commit on a pipeline's output branch without a job gets one (state ``created``).
3. A created job starts once its input commits are finished and its output commit's parent is
   finished (jobs of one pipeline run in commit order): its datums are computed from the input
   commits; a datum whose hash (inputs + pipeline salt) already succeeded is ``skipped`` and
   carries its earlier output; the rest are ``pending``.
4. Running jobs get worker threads (``parallelism_spec``). A worker claims datums with a
   lease, runs them through the executor, stores their outputs (data first), then records
   them in one transaction per batch. Failed datums are retried up to ``datum_tries``.
5. A job whose datums are all done is finished: any failed datum fails the job and drops its
   output commit (the branch does not move); otherwise the output commit becomes the parent's
   tree minus the outputs of removed and changed datums plus the new outputs, in one
   transaction. Two datums writing one path fail the job with both datums named.

Workers are threads because the work of a datum is the user's process; the threads only wait
for it and move bytes. Several ``tusk up`` processes can share a home: claims are exclusive
and a dead process's leases expire.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tusk.auth.service import AuthService
from tusk.cronspec import next_tick
from tusk.errors import CommitFinished, TuskError
from tusk.pfs.holds import HOST as _HOST
from tusk.pfs.holds import pid_alive as _pid_alive
from tusk.pfs.service import DeleteOp, Op, PfsService, PlaceOp
from tusk.pfs.sources import BytesSource
from tusk.pfs.tree import EMPTY_TREE, DirEntry, Entry, FileEntry
from tusk.pps import resources
from tusk.pps.batch import BatchItem, clear_mounts, run_batch
from tusk.pps.dask_executor import DaskExecutor
from tusk.pps.datums import (
    Datum,
    compute_datums,
    cron_as_pfs,
    datum_id,
    files_reference,
    glob_segments,
    match_datum,
)
from tusk.pps.datums import FileInfo as DatumInputFile
from tusk.pps.executor import DatumOutcome, DatumTask, ImageRun, LocalExecutor, kill_noted
from tusk.pps.s3io import NO_GATEWAY, Sessions, s3_input_names
from tusk.pps.secrets import SecretMaterial
from tusk.pps.service import PpsService
from tusk.pps.spec import CronInput, PfsInput, PipelineSpec
from tusk.pps.tasks import datum_task, spec_reads
from tusk.storage.meta.records import DatumRecord, JobRecord, LogRecord
from tusk.storage.meta.store_s3 import S3Session

if TYPE_CHECKING:
    from tusk.pps.supervisor import Supervisor

LEASE_SECONDS = float(os.environ.get("TUSK_LEASE_SECONDS", "30"))
RESTART_POLL = 2.0  # seconds between a running batch's looks at whether it was restarted
_DISCOVERY_SECONDS = 0.5
# How often a long-running scheduler (tusk up) applies the repos' retention rules; gc then
# reclaims the space (tusk.pfs.retention). TUSK_RETENTION_INTERVAL (seconds) changes it.
RETENTION_SECONDS = float(os.environ.get("TUSK_RETENTION_INTERVAL") or 3600)
_FAST_SCRATCH_MAX = 64 << 20  # input bytes of a batch that may go to a tmpfs


def _fast_scratch_root() -> Path | None:
    """``$TUSK_SCRATCH`` if set; else a folder on /dev/shm when it is a writable tmpfs."""
    env = os.environ.get("TUSK_SCRATCH")
    if env:
        return Path(env)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / f"tusk-scratch-{os.getuid()}"
    return None


def scratch_roots(home: Path) -> list[Path]:
    """Where the schedulers of ``home`` keep a scratch folder ``<host>-<pid>`` each: the
    home's ``scratch``, and a tmpfs root when there is one (the last is the fast one)."""
    roots = [home / "scratch"]
    fast = _fast_scratch_root()
    if fast is not None:
        roots.append(fast)
    return roots


def remove_dead_scratch(
    roots: list[Path],
    *,
    older_than: float | None = None,
    dry_run: bool = False,
    also_pid: int | None = None,
    log: Callable[[str], None] | None = None,
) -> int:
    """Remove the scratch folders of this host's dead processes (and of ``also_pid``), after
    ending the datum processes they noted; with ``older_than``, only folders untouched since
    then. Returns how many folders go (would go, with ``dry_run``)."""
    removed = 0
    for root in roots:
        try:
            entries = [e for e in root.iterdir() if e.is_dir() and not e.is_symlink()]
        except FileNotFoundError:
            continue
        for entry in entries:
            host, _, pid = entry.name.rpartition("-")
            if host != _HOST or not pid.isdigit():
                continue
            if int(pid) != also_pid and _pid_alive(int(pid)):
                continue
            if older_than is not None:
                try:
                    if entry.stat().st_mtime >= older_than:
                        continue
                except FileNotFoundError:
                    continue
            removed += 1
            if dry_run:
                continue
            killed = kill_noted(entry / "pids")
            if killed and log is not None:
                log(f"ended {killed} datum processes left by a dead worker")
            clear_mounts(entry)  # a lazy view of the dead process (tusk.pps.lazy)
            shutil.rmtree(entry, ignore_errors=True)
    return removed


@dataclass
class _Job:
    """What a worker needs about a running job, loaded once."""

    record: JobRecord
    spec: PipelineSpec
    origin: dict
    commits: dict[tuple[str, str], str]  # (repo, branch) -> input commit id
    trees: dict[tuple[str, str], bytes]  # (repo, branch) -> that commit's root tree
    dead: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    identity: dict[str, str] = field(default_factory=dict)  # TUSK_ADDRESS, TUSK_TOKEN
    token_id: str = ""
    secrets: SecretMaterial = field(default_factory=SecretMaterial)  # transform.secrets
    image: ImageRun | None = None  # the pinned image its datums run in (None: on the host)


class Scheduler:
    def __init__(
        self,
        pps: PpsService,
        executor: LocalExecutor | DaskExecutor | None = None,
        *,
        poll: float = 0.1,
        log: Callable[[str], None] | None = None,
        role: str = "all",
        api_url: str | None = None,
        pipelines: Sequence[str] | None = None,
        s3_url: str | None = None,
    ) -> None:
        """``role``: ``all`` (``tusk up``: jobs and datums), ``worker`` (``tusk worker``:
        only claims and runs datums of jobs that a scheduler elsewhere started and finishes)
        or ``coordinator`` (``tusk up --executor workers``: starts and finishes jobs, runs no
        datum: workers elsewhere do). ``pipelines``: only the jobs of these pipelines.

        ``api_url``: the REST API of this store. With auth on, each job's datums get
        ``TUSK_ADDRESS`` and a token of the pipeline's own identity (``pipeline:<name>``) in
        ``TUSK_TOKEN``, revoked when the job ends here: code that calls Tusk may read the
        pipeline's inputs and write its output repo, nothing else.

        ``s3_url``: the S3 gateway of this store, for pipelines whose datums read or write
        through it (``input.pfs.s3``, ``s3_out``: ``tusk.pps.s3io``).
        """
        if role not in ("all", "worker", "coordinator"):
            raise ValueError(f"unknown scheduler role {role!r}")
        self.role = role
        self.manages = role in ("all", "coordinator")  # starts, finishes and fails jobs
        self.pipelines = set(pipelines) if pipelines else None
        self.api_url = api_url
        self.auth = AuthService(pps.meta, key_dir=pps.home)  # the API's key: S3 keys it unseals
        self.s3 = Sessions(pps.pfs, self.auth, s3_url)
        self.pps = pps
        self.pfs = pps.pfs
        self.meta = pps.meta
        self.executor = executor or LocalExecutor()
        if isinstance(self.executor, LocalExecutor) and self.executor.images is None:
            self.executor.images = pps.images
        # False under --executor host: a spec's image is recorded, its command runs here.
        self.run_images = bool(getattr(self.executor, "run_images", True))
        self.admission = resources.admission()  # requests and GPUs of datums run here
        self.poll = poll
        self.log = log or (lambda msg: None)
        # Each process has its own scratch folders: several schedulers may share a home. Small
        # batches of datums go to a tmpfs when there is one (creating and removing files there
        # costs microseconds, not the milliseconds of a disk), big ones to the home's disk.
        me = f"{_HOST}-{os.getpid()}"
        self.scratch_roots = scratch_roots(pps.home)
        self.scratch = self.scratch_roots[0] / me
        self.fast_scratch = self.scratch_roots[-1] / me
        self.executor.pids_dir = self.fast_scratch / "pids"
        self._running: dict[tuple[str, str], _Job] = {}
        self._owners: set[str] = set()
        self._owner_seq = 0
        self._lock = threading.Lock()
        self._last_renew = 0.0
        self._last_discovery = 0.0
        self._last_retention = time.monotonic()  # not at start: a restart loop must not churn
        self._wake = threading.Event()
        self._pulls: dict[tuple[str, int], _Pull] = {}  # image fetches under way
        self.supervisor: Supervisor | None = None  # spouts' processes (a long-running scheduler)
        self.errors: list[str] = []

    # The loop

    def run(self, stop: threading.Event | None = None, once: bool = False) -> None:
        """Run until ``stop`` is set; with ``once``, until no job is waiting or running.

        A scheduler of role ``all`` holds the store's scheduler lock shared while it runs, so
        that ``tusk wait`` on the store knows jobs are run (it retries the lock each pass
        while a waiter that runs jobs itself holds it alone).
        """
        stop = stop or threading.Event()
        presence = self.meta.scheduler_presence() if self.manages else None
        if self.role == "all" and not once:  # spouts never end: not for a run until idle
            self.supervise_spouts()
        self.begin()
        try:
            while not stop.is_set():
                if presence is not None and not presence.held:
                    presence.hold_shared()
                busy = self.tick()
                if once and not busy:
                    return
                # Sleep until the poll interval passes, a worker finishes, or stop is asked.
                self.pause(self.poll)
                if stop.is_set():
                    break
        finally:
            self.end()
            if presence is not None:
                presence.release()

    def supervise_spouts(self) -> None:
        """Keep the processes of spout pipelines running from now on (``tusk.pps.supervisor``)."""
        from tusk.pps.supervisor import Supervisor

        def mint(pipeline: str) -> tuple[str, str] | None:
            return self.auth.mint_for_pipeline(pipeline, 24 * 3600.0)

        self.supervisor = Supervisor(
            self.pps, self.executor, f"{_HOST}-{os.getpid()}", self.api_url, self.log, mint,
            self.auth.revoke_quietly,
        )  # fmt: skip

    def begin(self) -> None:
        """Before the first :meth:`tick`: scratch folders of dead processes go."""
        self._clean_scratch()
        (self.fast_scratch / "pids").mkdir(parents=True, exist_ok=True)
        if self.manages:
            self.s3.end_finished()  # datums' S3 sessions that a crash left behind

    def pause(self, seconds: float) -> None:
        """Sleep until ``seconds`` pass or a worker has news (a datum done, a job started)."""
        self._wake.wait(seconds)
        self._wake.clear()

    def end(self) -> None:
        """Stop this process's workers (their unrun datums go back to the queue)."""
        if self.supervisor is not None:
            self.supervisor.close()
            self.supervisor = None
        for job in list(self._running.values()):
            job.dead.set()
        for job in list(self._running.values()):
            for t in job.threads:
                t.join()
        for key in list(self._running):
            self._forget(key)
        shutil.rmtree(self.scratch, ignore_errors=True)
        shutil.rmtree(self.fast_scratch, ignore_errors=True)

    def _apply_retention(self) -> None:
        """Each period: the repos' retention rules, and what killed processes left of gated
        merges and checks (tusk.pfs.holds)."""
        try:
            left = self.pps.remove_leftovers()
        except TuskError as exc:  # logged; the next period tries again
            self.log(f"leftovers: {exc}")
        else:
            if left:
                self.log(f"removed {left} leftover(s) of killed merges and checks")
        try:
            done = self.pfs.apply_retention()
        except TuskError as exc:  # logged; the next period tries again
            self.log(f"retention: {exc}")
            return
        if done.expired:
            self.log(f"retention: expired {len(done.expired)} commits, {len(done.jobs)} jobs")

    def _clean_scratch(self) -> None:
        """Remove scratch folders left by dead processes of this host (and our own)."""
        remove_dead_scratch(self.scratch_roots, also_pid=os.getpid(), log=self.log)

    def tick(self) -> bool:
        """One pass of the loop; True while there is work (jobs created or running)."""
        self._renew_leases()
        now = time.monotonic()
        if now - self._last_discovery >= _DISCOVERY_SECONDS or not self._running:
            # Finding new work costs a dozen queries: every pass while idle, else twice a second.
            self._last_discovery = now
            self._reap_dead_owners()
            if self.manages:
                self._cron_ticks()
                self.pfs.fire_cron_triggers(time.time())  # branch triggers with a cron_spec
                self._create_jobs()
                if now - self._last_retention >= RETENTION_SECONDS:
                    self._last_retention = now
                    self._apply_retention()
        if self.supervisor is not None:
            self.supervisor.tick()
        busy = False
        with self.meta.read() as tx:
            jobs = tx.list_jobs(states=["created", "running", "egressing"])
            paused = {p.name for p in tx.list_pipelines() if p.state != "running"}
        for job in sorted(jobs, key=lambda j: j.created_at):
            if job.pipeline in paused:
                continue
            if self.pipelines is not None and job.pipeline not in self.pipelines:
                continue
            busy = True
            try:
                if job.state == "created":
                    if self.manages:
                        self._start_job(job)
                else:
                    self._drive_job(job)
            except TuskError as exc:
                self._fail_job(job, f"{exc}")
        # Forget executions of jobs that ended elsewhere (stopped, deleted).
        live = {(j.pipeline, j.id) for j in jobs}
        for key, running in list(self._running.items()):
            if key not in live:
                running.dead.set()
                if not any(t.is_alive() for t in running.threads):
                    self._forget(key)
        return busy

    # 1. leases

    def _new_owner(self) -> str:
        with self._lock:
            self._owner_seq += 1
            owner = f"{_HOST}:{os.getpid()}:{self._owner_seq}"
            self._owners.add(owner)
            return owner

    def _renew_leases(self) -> None:
        now = time.time()
        if now - self._last_renew < LEASE_SECONDS / 3:
            return
        self._last_renew = now
        with self._lock:
            owners = list(self._owners)
        if owners:
            with self.meta.write() as tx:
                for owner in owners:
                    tx.renew_datum_leases(owner, now + LEASE_SECONDS)

    def _reap_dead_owners(self) -> None:
        with self.meta.read() as tx:
            owners = tx.running_datum_owners()
        dead = []
        for owner in owners:
            host, _, rest = owner.partition(":")
            pid = rest.split(":")[0]
            mine = host == _HOST and pid.isdigit() and int(pid) != os.getpid()
            if mine and not _pid_alive(int(pid)):
                dead.append(owner)
        if dead:
            with self.meta.write() as tx:
                for owner in dead:
                    n = tx.release_owner(owner)
                    self.log(f"worker {owner} is gone; {n} of its datums go back to the queue")

    # Cron inputs: a tick is a commit to the cron repo, which starts a job like any input.

    def _cron_ticks(self) -> None:
        now = time.time()
        with self.meta.read() as tx:
            pipelines = [p for p in tx.list_pipelines() if p.state == "running"]
        for p in pipelines:
            spec, _salt, _origin = self.pps.spec_for(p)
            for leaf in spec.inputs():
                if isinstance(leaf, CronInput):
                    self._cron_tick(leaf, p.created_at, now)

    def _cron_tick(self, cron: CronInput, created_at: float, now: float) -> None:
        heads = self.pfs.list_commits(cron.repo, "master", 1) if self._has_head(cron.repo) else []
        if heads:
            last = heads[0].started_at
        elif cron.start:
            last = datetime.fromisoformat(cron.start.replace("Z", "+00:00")).timestamp()
        else:
            last = created_at
        due = next_tick(cron.spec, last)
        if due > now:
            return
        stamp = datetime.fromtimestamp(due, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if cron.overwrite and heads:
            self.pfs.start_commit(cron.repo, "master", description=f"cron tick {stamp}")
            self.pfs.delete_files(cron.repo, "master", ["/"])
            self.pfs.put_files(cron.repo, "master", [(f"/{stamp}", BytesSource(stamp.encode()))])
            self.pfs.finish_commit(cron.repo, "master")
        else:
            self.pfs.put_files(
                cron.repo,
                "master",
                [(f"/{stamp}", BytesSource(stamp.encode()))],
                description=f"cron tick {stamp}",
            )
        self.log(f"cron {cron.name}: tick {stamp} in {cron.repo}@master")

    def _has_head(self, repo: str) -> bool:
        with self.meta.read() as tx:
            b = tx.get_branch(repo, "master")
            return b is not None and b.head is not None

    # 2. jobs from open output commits

    def _create_jobs(self) -> None:
        with self.meta.read() as tx:
            pipelines = tx.list_pipelines()
            wanted = []
            for p in pipelines:
                version = tx.get_pipeline_version(p.name, p.version)
                if version is None:
                    continue
                spec = json.loads(version.spec)
                if "spout" in spec:
                    continue  # a spout's commits are its own, never a job's
                branch = spec.get("output_branch", "master")
                for cid, cbranch, cset, started in tx.open_commits(p.name):
                    # Its own branch, or another one fed by inputs (tusk run pipeline --branch).
                    ours = cbranch == branch or (
                        cbranch is not None and bool(tx.branch_provenance(p.name, cbranch))
                    )
                    if ours and tx.job_for_commit(cid) is None:
                        wanted.append(JobRecord(
                            p.name, cset, p.version, cid, "created", "", started,
                            None, None, 0, 0, 0, 0, None, None,
                        ))  # fmt: skip
        if wanted:
            with self.meta.write() as tx:
                for job in wanted:
                    self._wake.set()
                    if tx.insert_job(job):
                        self.log(f"job {job.pipeline}@{job.id} created")
            if self.supervisor is not None:  # a service's inputs moved: restart it now
                self.supervisor.poke()

    # 3. starting a job

    def _input_commits(self, job: JobRecord) -> dict[tuple[str, str], str] | str:
        """(repo, branch) -> commit for each input; or why the job cannot start yet/ever."""
        out: dict[tuple[str, str], str] = {}
        with self.meta.read() as tx:
            output = tx.get_commit(job.output_commit)
            if output is None:
                return "its output commit was removed"
            if output.parent is not None:
                parent = tx.get_commit(output.parent)
                if parent is not None and not parent.finished:
                    return "wait"
            for cid in tx.commit_provenance(job.output_commit):
                c = tx.get_commit(cid)
                if c is None:
                    return f"input commit {cid} was removed (its job failed or was stopped)"
                if not c.finished:
                    return "wait"
                out[(c.repo, c.branch or "")] = c.id
        return out

    def _start_job(self, job: JobRecord, incremental: bool = True) -> None:
        try:
            self._start(job, incremental)
        except _Replan:
            self._start(job, False)

    def _start(self, job: JobRecord, incremental: bool) -> None:
        commits = self._input_commits(job)
        if commits == "wait":
            return
        if isinstance(commits, str):
            self._fail_job(job, commits)
            return
        spec, salt, _origin = self.pps.spec_of(job.pipeline, job.version)
        unusable = self.pps.secrets.problem(spec.transform.secrets)
        if unusable is not None:  # a secret or key it names is missing: fail before any datum
            self._fail_job(job, unusable)
            return
        commits = self._reads(spec, commits)
        try:
            digest = self._pin_image(job, spec)
        except _Pulling:
            return  # started again on a later pass, once the image is here
        if spec.input is None:  # a spout's commits are its own, never a job's
            self._fail_job(job, f"pipeline {job.pipeline} is a spout: it runs no jobs")
            return
        service = spec.service is not None  # its process is the work: its jobs have no datum
        plan = self._incremental_plan(job, spec, commits) if incremental and not service else None
        items: list[Datum | str] = (
            []
            if service
            else plan[1]
            if plan is not None
            else list(compute_datums(spec.input, self.pps.files_for(commits), cron=cron_as_pfs))
        )
        datums = [d for d in items if isinstance(d, Datum)]
        hashes = [d.hash(salt) for d in datums]
        now = time.time()
        cached: dict[str, bytes] = {}
        if spec.reprocess_spec != "every_job":
            # Most datums match the previous job's (one query by job); the rest are looked up
            # by hash across the pipeline's history (e.g. a failed job's finished datums).
            for _id, h, state, tree in plan[2] if plan is not None else self._parent_results(job):
                if state in ("success", "skipped") and tree is not None:
                    cached[h] = tree
            missing = [h for h in hashes if h not in cached]
            if missing:
                with self.meta.read() as tx:
                    cached.update(tx.datum_outputs_by_hash(job.pipeline, missing))
        rows = []
        copies: list[tuple[str, int]] = []  # unchanged datums of the parent job: (id, seq)
        by_datum = iter(hashes)
        for seq, d in enumerate(items):
            if isinstance(d, str):
                copies.append((d, seq))
                continue
            h = next(by_datum)
            tree = cached.get(h)
            rows.append(
                DatumRecord(
                    job.pipeline, job.id, d.id, seq, h,
                    "skipped" if tree is not None else "pending",
                    # each file names the commit it is read from (tusk debug datum reruns
                    # a failed datum from them: a failed job's output commit and its
                    # provenance are dropped)
                    json.dumps([
                        {**f.to_json(), "commit": commits.get((f.repo, f.branch), "")}
                        for f in d.files
                    ]),
                    tree, 0, None, "", "", None, None, None, None,
                )
            )  # fmt: skip
        skipped = sum(1 for r in rows if r.state == "skipped") + len(copies)
        with self.meta.write() as tx:
            if not tx.set_job_state_if(
                job.pipeline, job.id, "created",
                state="running", started_at=now, datums_total=len(items), skipped=skipped,
                image_digest=digest,
            ):  # fmt: skip
                return  # another scheduler started it
            tx.insert_datums(rows)
            if plan is not None and copies:
                ref = files_reference(plan[0])
                copied = tx.copy_datums_skipped(job.pipeline, plan[0], job.id, copies, ref)
                if copied != len(copies):  # the parent's rows went away: start it afresh
                    raise _Replan()
            if spec.transform.image:
                note = (
                    f"image {spec.transform.image} pinned as {digest}"
                    if digest
                    else f"transform.image {spec.transform.image} is recorded, not run: this "
                    "scheduler runs commands on the host (--executor host)"
                )
                tx.add_logs([LogRecord(job.pipeline, job.id, "", now, "system", note)])
        self._wake.set()  # give it workers on the next pass, right away
        self.log(f"job {job.pipeline}@{job.id} started: {len(items)} datums, {skipped} unchanged")

    def _reads(
        self, spec: PipelineSpec, commits: dict[tuple[str, str], str]
    ) -> dict[tuple[str, str], str]:
        """The commit each input of ``spec`` reads, keyed as the spec names it (see
        :func:`spec_reads`); an input pinned to a commit reads that commit."""
        reads = spec_reads(commits, spec)
        for leaf in spec.inputs():
            if isinstance(leaf, PfsInput) and leaf.commit:
                reads[(leaf.repo, leaf.branch)] = self.pfs.inspect_commit(leaf.repo, leaf.commit).id
        return reads

    def _pin_image(self, job: JobRecord, spec: PipelineSpec) -> str | None:
        """The image digest the job runs (None: no image, or images are not run here).

        Resolved once per pipeline version: the first job of a version fetches the image and
        records its digest on the version; every later job of that version runs the same
        digest, even if the tag has moved since (a new image needs a new pipeline version).
        The fetch runs on a thread of its own (a big pull takes minutes; this loop renews the
        leases of running datums meanwhile): until it is done this raises :class:`_Pulling`
        and the job waits, as it waits for an unfinished input.
        """
        if not spec.transform.image or not self.run_images:
            return None
        if job.image_digest:
            return job.image_digest
        key = (job.pipeline, job.version)
        with self.meta.read() as tx:
            version = tx.get_pipeline_version(*key)
        if version is not None and version.image_digest:
            return version.image_digest
        with self._lock:
            pull = self._pulls.get(key)
            if pull is None:
                pull = self._pulls[key] = _Pull()
                threading.Thread(
                    target=pull.run, args=(lambda: self.pps.resolve_image(spec), self._wake),
                    name=f"pull-{job.pipeline}", daemon=True,
                ).start()  # fmt: skip
        if not pull.done.is_set():
            raise _Pulling()
        with self._lock:
            self._pulls.pop(key, None)
        if pull.error is not None:
            raise pull.error
        with self.meta.write() as tx:
            return tx.pin_version_image(job.pipeline, job.version, pull.digest)

    def _incremental_plan(
        self, job: JobRecord, spec: PipelineSpec, commits: dict[tuple[str, str], str]
    ) -> tuple[str, list[Datum | str], list[tuple[str, str, str, bytes | None]]] | None:
        """The datums of a job from its parent job's, reading only what changed.

        For a pipeline with one pfs input whose glob matches segment by segment (``/*``,
        ``/*/*.csv``...): the matches come from walking the input tree to the glob's depth,
        and a match whose entry (a directory's node hash, a file's content hash) is the same
        in the parent job's input commit, and whose datum the parent job finished, is that
        datum again: same id, same files, same hash. It is returned as its id (the caller
        copies the parent's row, skipped); only the other matches are listed file by file
        and returned as :class:`Datum`. So the job after a one-file commit to a repo of a
        million files in a thousand directories lists one directory, not the repo.

        Returns (parent job id, items in datum order, the parent's datum results), or None
        when this does not apply (the caller computes every datum).
        """
        pfs = spec.input.pfs if spec.input is not None else None
        if pfs is None or pfs.commit or spec.reprocess_spec == "every_job":
            return None
        tests = glob_segments(pfs.glob)
        new_commit = commits.get((pfs.repo, pfs.branch))
        if tests is None or new_commit is None:
            return None
        parent = self._parent_job(job)
        if parent is None or parent.version != job.version:
            return None
        with self.meta.read() as tx:
            before: dict[tuple[str, str], str] = {}
            for cid in tx.commit_provenance(parent.output_commit):
                c = tx.get_commit(cid)
                if c is not None:
                    before[(c.repo, c.branch or "")] = c.id
            results = tx.datum_results(parent.pipeline, parent.id)
        old_commit = spec_reads(before, spec).get((pfs.repo, pfs.branch))
        if old_commit is None:
            return None
        old_root = self.pfs.commit_record(old_commit).tree
        new_root = self.pfs.commit_record(new_commit).tree
        done = {i for i, _h, state, tree in results if state in ("success", "skipped") and tree}
        items: list[Datum | str] = []
        matches = sorted(self.pfs.tree_matches(new_root, tests), key=lambda m: m[0])
        for path, entry in matches:
            did = datum_id([(pfs.name, path)])
            if did in done and _same_entry(self.pfs.tree_entry(old_root, path), entry):
                items.append(did)
                continue
            below = self.pfs.files_below(path, entry)
            files = [DatumInputFile(p, e.hash.hex(), e.size) for p, e in below]
            items.append(match_datum(pfs, path, files))
        return parent.id, items, results

    # 4. running datums

    def _drive_job(self, job: JobRecord) -> None:
        key = (job.pipeline, job.id)
        running = self._running.get(key)
        spec_timeout = None
        if running is not None:
            spec_timeout = running.spec.job_timeout
        elif self.role == "coordinator":  # it runs no datum, but it times jobs out
            spec_timeout = self.pps.spec_of(job.pipeline, job.version)[0].job_timeout
        late = spec_timeout and job.started_at and time.time() - job.started_at > spec_timeout
        if late and self.manages:
            self._fail_job(job, f"job timed out after {spec_timeout:g}s (job_timeout)")
            return
        with self.meta.read() as tx:
            counts = tx.count_datums(job.pipeline, job.id)
        open_datums = counts.get("pending", 0) + counts.get("running", 0)
        if open_datums == 0 or counts.get("failed", 0):  # a failed datum ends the job
            if running is None or not any(t.is_alive() for t in running.threads):
                self._forget(key)
                if self.manages:
                    self._finish_job(job)
            return
        if running is None and self.role == "coordinator":
            return  # its datums run in tusk worker processes elsewhere
        if running is None:
            commits = self._input_commits(job)
            if isinstance(commits, str):
                if self.manages:
                    self._fail_job(job, commits if commits != "wait" else "inputs changed")
                return
            spec, _salt, origin = self.pps.spec_of(job.pipeline, job.version)
            unfit = self._local() and resources.unfit(resources.request_of(spec))
            if unfit:  # it would wait for ever (Kubernetes: Pending); fail it, saying why
                if self.manages:
                    self._fail_job(job, f"{unfit}; no datum can run")
                return
            commits = self._reads(spec, commits)
            trees = {key: self.pfs.commit_record(cid).tree for key, cid in commits.items()}
            running = _Job(job, spec, origin, commits, trees)
            try:
                digest = self._pin_image(job, spec)
            except _Pulling:
                return
            if spec.uses_s3() and self.s3.endpoint is None:
                if self.manages:
                    self._fail_job(job, NO_GATEWAY)
                return
            if digest is not None and spec.transform.image:
                tf = spec.transform
                network = bool(tf.network) or spec.uses_s3()  # the gateway is on the host
                running.image = ImageRun(tf.image or "", digest, tf.user or "", network)
            elif not spec.transform.cmd and not (
                spec.transform.image and getattr(self.executor, "in_image_container", False)
            ):
                if self.manages:
                    self._fail_job(job, "the pipeline gives no cmd and images are not run here "
                                   "(--executor host): give transform.cmd")  # fmt: skip
                return
            running.secrets = self.pps.secrets.material(spec.transform.secrets)
            self._give_identity(running)
            self._running[key] = running
        alive = [t for t in running.threads if t.is_alive()]
        want = min(running.spec.parallelism_spec.constant, counts.get("pending", 0) + len(alive))
        while len(alive) < want:
            t = threading.Thread(
                target=self._worker, args=(running,), name=f"datum-{job.pipeline}", daemon=True
            )
            t.start()
            alive.append(t)
        running.threads = alive

    def _give_identity(self, job: _Job) -> None:
        if self.api_url is None:
            return
        ttl = max(3600.0, 2 * (job.spec.job_timeout or 0))
        minted = self.auth.mint_for_pipeline(job.record.pipeline, ttl)
        if minted is not None:
            job.token_id, token = minted
            job.identity = {"TUSK_ADDRESS": self.api_url, "TUSK_TOKEN": token}

    def _forget(self, key: tuple[str, str]) -> None:
        """A job no longer run here: its identity's token is revoked."""
        job = self._running.pop(key, None)
        if job is not None and job.token_id:
            self.auth.revoke_quietly(job.token_id)

    def _worker(self, job: _Job) -> None:
        owner = self._new_owner()
        try:
            while not job.dead.is_set():
                # Room on this machine for one more running datum (resource requests, GPUs),
                # taken before claiming and given back once the batch is recorded.
                need = resources.request_of(job.spec) if self._local() else resources.Request()
                grant = self.admission.acquire(need, job.dead)
                if grant is None:
                    return
                try:
                    with self.meta.read() as tx:
                        counts = tx.count_datums(job.record.pipeline, job.record.id)
                    pending = counts.get("pending", 0)
                    limit = max(1, min(32, pending // (2 * job.spec.parallelism_spec.constant)))
                    now = time.time()
                    with self.meta.write() as tx:
                        batch = tx.claim_datums(
                            job.record.pipeline, job.record.id, owner, now + LEASE_SECONDS, now,
                            limit,
                        )  # fmt: skip
                    if not batch:
                        return
                    self._run_batch(job, owner, batch, grant.env)
                finally:
                    self.admission.release(grant)
        except Exception as exc:  # a worker must not die silently: the job fails instead
            self.errors.append(f"{type(exc).__name__}: {exc}")
            with self.meta.write() as tx:
                tx.release_datums(job.record.pipeline, job.record.id, owner)
            job.dead.set()
            self._fail_job(job.record, f"worker error: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._owners.discard(owner)
            self._wake.set()

    def _task(self, job: _Job, d: DatumRecord, files: list[dict]) -> DatumTask:
        on_host = job.image is None and getattr(self.executor, "on_host", True)
        return datum_task(
            job.spec, job.origin, pipeline=job.record.pipeline, job=job.record.id, datum=d.id,
            output_commit=job.record.output_commit, files=files, commits=job.commits,
            env={**job.secrets.env, **job.identity}, secret_files=job.secrets.files,
            secret_values=job.secrets.values, image=job.image, on_host=on_host,
        )  # fmt: skip

    def _local(self) -> bool:
        """Datums run on this machine (not on Dask workers)."""
        return isinstance(self.executor, LocalExecutor)

    def _run_batch(
        self, job: _Job, owner: str, batch: list[DatumRecord], env: dict[str, str] | None = None
    ) -> None:
        pipeline, job_id = job.record.pipeline, job.record.id
        items = []
        sessions: dict[str, S3Session] = {}
        through_s3 = s3_input_names(job.spec) if job.spec.uses_s3() else None
        for d in batch:
            files = json.loads(d.files)
            if through_s3 is not None:  # read through the gateway, not written under /pfs
                files = [f for f in files if f["input_name"] not in through_s3]
            task = self._task(job, d, files)
            task.env.update(env or {})  # CUDA_VISIBLE_DEVICES of the GPUs given to it
            if through_s3 is not None:
                ttl = max(3600.0, 2 * (job.spec.datum_timeout or 0))
                sessions[d.id], s3_env = self.s3.open(
                    job.spec, pipeline, job_id, d.id, job.commits, ttl
                )
                task.env.update(s3_env)
            items.append(BatchItem(task, files))
        stopped = self._stop_check(job, owner, [d.id for d in batch])
        if isinstance(self.executor, LocalExecutor):
            size = sum(f.get("size", 0) for item in items for f in item.files)
            root = self.fast_scratch if size <= _FAST_SCRATCH_MAX else self.scratch
            # A handoff executor's datums live where the user container sees them (/pfs).
            root = getattr(self.executor, "scratch_root", None) or root
            base = root / pipeline / job_id / owner.rsplit(":", 1)[1]
            ran, index = run_batch(self.pfs, self.executor, base, job.trees, items, stopped)
        else:
            ran, index = self.executor.run_batch(job.trees, items, stopped)
        by_id = {d.id: d for d in batch}
        if job.spec.s3_out:  # the output is what the datum wrote to its bucket "out"
            for r in ran:
                r.outputs = self.s3.outputs(sessions[r.datum]) if r.outcome.ok else []
        results = [(by_id[r.datum], r.outcome, r.outputs) for r in ran]
        self._record(job, owner, results, index, list(sessions.values()))

    def _stop_check(self, job: _Job, owner: str, ids: list[str]) -> Callable[[], bool]:
        """What a running batch asks (every half second): stop? Yes once the job ended, or
        once one of its datums is no longer this owner's (restarted: ``tusk restart datum``,
        RestartDatum), which is read from the store at most every RESTART_POLL seconds."""
        last = [time.monotonic()]
        lost = [False]

        def stopped() -> bool:
            if job.dead.is_set() or lost[0]:
                return True
            if time.monotonic() - last[0] >= RESTART_POLL:
                last[0] = time.monotonic()
                with self.meta.read() as tx:
                    lost[0] = not tx.still_held(job.record.pipeline, job.record.id, owner, ids)
            return lost[0]

        return stopped

    def _record(
        self,
        job: _Job,
        owner: str,
        results: list[tuple[DatumRecord, DatumOutcome, list]],
        index: list,
        sessions: Sequence[S3Session] = (),
    ) -> None:
        """One transaction for a batch: chunk index, output trees, datum states, logs; the
        datums' S3 sessions end in it too."""
        final, tokens = record_results(
            self.pfs, job.record.pipeline, job.record.id, owner, job.spec.datum_tries, results,
            index, also=lambda tx: self.s3.end(tx, sessions),
        )  # fmt: skip
        if final:
            job.dead.set()  # a failed datum fails the job: stop the others
        self.s3.revoke(tokens)

    # 5. finishing a job

    def _fail_job(self, job: JobRecord, reason: str) -> None:
        with self.meta.write() as tx:
            current = tx.get_job(job.pipeline, job.id)
            if current is None or current.state in ("success", "failure", "killed"):
                return
            tx.update_job(
                job.pipeline, job.id, state="failure", reason=reason, finished_at=time.time()
            )
        running = self._running.get((job.pipeline, job.id))
        if running is not None:
            running.dead.set()
        self.pfs.drop_open_commit(job.output_commit)
        self.s3.end_job(job.pipeline, job.id)
        self.log(f"job {job.pipeline}@{job.id} failed: {reason}")

    def _parent_job(self, job: JobRecord) -> JobRecord | None:
        """The successful job whose output commit is the parent of this job's output commit."""
        with self.meta.read() as tx:
            output = tx.get_commit(job.output_commit)
            if output is None or output.parent is None:
                return None
            parent = tx.job_for_commit(output.parent)
        return parent if parent is not None and parent.state == "success" else None

    def _parent_results(self, job: JobRecord) -> list[tuple[str, str, str, bytes | None]]:
        parent = self._parent_job(job)
        if parent is None:
            return []
        with self.meta.read() as tx:
            return tx.datum_results(parent.pipeline, parent.id)

    def _finish_job(self, job: JobRecord) -> None:
        with self.meta.read() as tx:
            results = tx.datum_results(job.pipeline, job.id)
            output = tx.get_commit(job.output_commit)
            failed = (
                tx.list_datums(job.pipeline, job.id, ["failed"])
                if any(state == "failed" for _, _, state, _ in results)
                else []
            )
        counts: dict[str, int] = {}
        for _, _, state, _ in results:
            counts[state] = counts.get(state, 0) + 1
        if failed:
            d = failed[0]
            tail = d.stderr_tail.strip().splitlines()[-1:] if d.stderr_tail.strip() else []
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            reason = f"datum {d.id[:12]} failed{more}: {d.error}"
            if tail:
                reason += f"; stderr: {tail[0]}"
            self._fail_job(job, reason)
            return
        if output is None:
            self._fail_job(job, "its output commit was removed")
            return
        if output.finished:  # finished by an earlier run of this step that then died
            if self._egress(job, output.branch, counts):  # again: it may have died egressing
                self._mark_success(job, counts)
            return
        parent_job = self._parent_job(job)
        prev = self._parent_results(job) if parent_job is not None else []
        base = EMPTY_TREE
        if parent_job is not None and output.parent is not None:
            base = self.pfs.commit_record(output.parent).tree
        try:
            ops = self._merge_ops(base, prev, results)
        except _PathClash as exc:
            self._fail_job(job, str(exc))
            return
        with contextlib.suppress(CommitFinished):  # another scheduler got there first
            self.pfs.complete_commit(job.output_commit, base, ops, description=f"job {job.id}")
        if self._egress(job, output.branch, counts):
            self._mark_success(job, counts)

    def _mark_success(self, job: JobRecord, counts: dict[str, int]) -> None:
        with self.meta.write() as tx:
            tx.update_job(
                job.pipeline, job.id, state="success", finished_at=time.time(),
                processed=counts.get("success", 0), skipped=counts.get("skipped", 0),
                failed=0,
            )  # fmt: skip
        self.s3.end_job(job.pipeline, job.id)
        self.log(
            f"job {job.pipeline}@{job.id} succeeded: {counts.get('success', 0)} processed, "
            f"{counts.get('skipped', 0)} skipped"
        )

    def _merge_ops(
        self,
        base: bytes,
        prev: list[tuple[str, str, str, bytes | None]],
        results: list[tuple[str, str, str, bytes | None]],
    ) -> list[Op]:
        """Edits that turn the previous output into this job's: O(changed datums)."""
        done = ("success", "skipped")
        before = {i: tree for i, _h, st, tree in prev if st in done and tree is not None}
        now = {i: tree for i, _h, st, tree in results if st in done and tree is not None}
        changed = [t for i, t in before.items() if now.get(i) != t]
        changed += [t for i, t in now.items() if before.get(i) != t]
        self.pfs.prefetch_trees(changed)
        ops: list[Op] = []
        deleted: set[str] = set()
        for did, tree in before.items():
            if now.get(did) != tree:
                for path, _entry in self.pfs.tree_files(tree):
                    if path not in deleted:
                        deleted.add(path)
                        ops.append(DeleteOp(tuple(path.strip("/").split("/"))))
        placed: dict[str, str] = {}
        for did, tree in now.items():
            if before.get(did) == tree:
                continue
            for path, entry in self.pfs.tree_files(tree):
                if path in placed:
                    raise _PathClash(
                        f"datums {placed[path][:12]} and {did[:12]} both wrote {path}; each "
                        "output path must come from one datum"
                    )
                placed[path] = did
                if path not in deleted and self.pfs.tree_kind(base, path) is not None:
                    owner = self._owner_of(path, now, before, did)
                    raise _PathClash(
                        f"datums {owner[:12]} and {did[:12]} both wrote {path}; each output "
                        "path must come from one datum"
                    )
                ops.append(PlaceOp(tuple(path.strip("/").split("/")), entry))
        return ops

    def _owner_of(
        self, path: str, now: dict[str, bytes], before: dict[str, bytes], other: str
    ) -> str:
        for did, tree in now.items():
            if did != other and before.get(did) == tree and self.pfs.tree_kind(tree, path):
                return did
        return "(an earlier job)"

    def _egress(self, job: JobRecord, branch: str | None, counts: dict[str, int]) -> bool:
        """Copy the finished output commit to the spec's egress with retries (Pachyderm's
        JOB_EGRESSING; tusk.pps.egress), the job ``egressing`` meanwhile with "egressing to ..."
        as its reason. False when it failed: the job is failed with the cause, its commit kept
        (a scheduler that dies meanwhile leaves it egressing; the next one egresses again)."""
        from tusk.pps.egress import run_egress  # SQL and S3 clients load on first use

        spec = self.pps.spec_of(job.pipeline, job.version)[0]
        if spec.egress is None or branch != spec.output_branch:  # a branch run never egresses
            return True

        def note(reason: str) -> None:
            with self.meta.write() as tx:
                tx.update_job(job.pipeline, job.id, state="egressing", reason=reason)

        where = f"job {job.pipeline}@{job.id}"
        failure = run_egress(
            self.pfs, self.pps.secrets, job.output_commit, spec.egress,
            note=note, log=lambda message: self.log(f"{where}: {message}"),
            beat=self._renew_leases,  # egress runs on this loop: other jobs' datums keep theirs
        )  # fmt: skip
        if failure is None:
            note("")
            return True
        with self.meta.write() as tx:
            tx.update_job(
                job.pipeline, job.id, state="failure", reason=failure, finished_at=time.time(),
                processed=counts.get("success", 0), skipped=counts.get("skipped", 0), failed=0,
            )  # fmt: skip
        self.log(f"{where} failed: {failure}")
        return False


def record_results(
    pfs: PfsService,
    pipeline: str,
    job_id: str,
    owner: str,
    datum_tries: int,
    results: Sequence[tuple[DatumRecord, DatumOutcome, list]],
    index: list,
    *,
    release: bool = True,
    also: Callable[[Any], Any] | None = None,
) -> tuple[bool, Any]:
    """Record the ends of datums ``owner`` ran, in one transaction: chunk index, output trees,
    datum states (a failure is retried up to ``datum_tries``), logs. With ``release``, the
    datums it claimed but did not run go back to the queue; ``also(tx)`` runs in the same
    transaction. Returns (whether a datum failed for good, what ``also`` returned). The
    scheduler's workers and remote workers (``tusk.pps.workqueue``) both record here."""
    now = time.time()
    logs: list[LogRecord] = []
    updates: list[dict[str, Any]] = []
    final_failure = False
    for d, outcome, _outputs in results:
        logs.extend(LogRecord(pipeline, job_id, d.id, ts, s, line) for ts, s, line in outcome.logs)
        row: dict[str, Any] = {
            "id": d.id,
            "exit_code": outcome.exit_code,
            "stderr_tail": outcome.stderr_tail,
            "finished_at": now,
            "error": outcome.error,
            "output_tree": None,
        }
        if outcome.ok:
            row.update(state="success", error="")
        elif outcome.recovered:
            row["state"] = "recovered"
        elif outcome.error.startswith("stopped"):
            row.update(state="pending", error="")
        else:
            final = d.attempts >= datum_tries
            row["state"] = "failed" if final else "pending"
            logs.append(LogRecord(pipeline, job_id, d.id, now, "system",
                f"datum {d.id[:12]} attempt {d.attempts} of {datum_tries} "
                f"failed: {outcome.error}"))  # fmt: skip
            final_failure = final_failure or final
        updates.append(row)
    with pfs.meta.write() as tx:
        pfs.chunks.index_packs(tx, index)
        pairs = zip(updates, results, strict=True)
        ok = [(row, outputs) for row, (_d, o, outputs) in pairs if o.ok]
        roots = pfs.write_detached_trees(tx, [outputs for _, outputs in ok])
        for (row, _outputs), root in zip(ok, roots, strict=True):
            row["output_tree"] = root
        tx.finish_datums(pipeline, job_id, owner, updates)
        tx.add_logs(logs)
        if release:  # datums claimed but not run (the job was stopped) go back to the queue
            tx.release_datums(pipeline, job_id, owner)
        extra = also(tx) if also is not None else None
    return final_failure, extra


class _PathClash(Exception):
    pass


class _Pulling(Exception):
    """The job's image is being fetched: try again on a later pass."""


class _Pull:
    """One image fetch on a thread of its own: its digest or its error once ``done``."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.digest = ""
        self.error: TuskError | None = None

    def run(self, resolve: Callable[[], str], wake: threading.Event) -> None:
        try:
            self.digest = resolve()
        except TuskError as exc:
            self.error = exc
        except Exception as exc:  # a pull must not die silently: the job fails, saying why
            self.error = TuskError(f"fetching the image failed: {type(exc).__name__}: {exc}")
        finally:
            self.done.set()
            wake.set()  # the scheduler starts the job on its next pass


class _Replan(Exception):
    """The parent job's datums changed while a job was being planned from them."""


def _same_entry(old: Entry | None, new: Entry) -> bool:
    if isinstance(old, DirEntry) and isinstance(new, DirEntry):
        return old.node == new.node
    if isinstance(old, FileEntry) and isinstance(new, FileEntry):
        return old.hash == new.hash and old.size == new.size
    return False
