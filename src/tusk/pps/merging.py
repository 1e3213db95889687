"""``tusk merge --run-pipelines``: a merge whose downstream pipelines run before anything moves,
and that lands whole or not at all; and a check that runs a pipeline on its candidate.

The merge is made on a temporary branch ``merge-<id>`` of the repo, started at the target's
head, with the same branch of every pipeline downstream (and of their other inputs), made the
way ``tusk run pipeline --branch`` makes a pull request's branches (O(1): nothing is copied;
datums the target's outputs already hold are skipped). The merge commit starts one commit set
there; its jobs run as any others (the server's scheduler, or this process for an embedded
store). When every job succeeded and the target's merge checks passed on the merge commit, the
target branch and every downstream output branch move to that commit set's commits in one
transaction (:meth:`PfsService.land_together`), so readers see the merged data and all the
outputs computed from it appear at once, as one commit set. If a job fails, nothing moves:
the commit set is dropped and the failed jobs and datums are named. Either way the temporary
branches are deleted.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tusk.errors import InvalidArgument, JobFailed, Timeout, TuskError
from tusk.pfs import holds
from tusk.pfs.gates import CheckRequest
from tusk.pfs.models import MergeResult
from tusk.pfs.sources import Source
from tusk.pps.executor import DatumOutcome
from tusk.pps.spec import CronInput

if TYPE_CHECKING:
    from tusk.pps.models import JobInfo
    from tusk.pps.service import Pause, PpsService


def merge_and_run(
    pps: PpsService,
    repo: str,
    source: str,
    into: str,
    *,
    message: str | None,
    strategy: str,
    resolve: Mapping[str, str | Source],
    timeout: float | None,
    pause: Pause | None,
) -> MergeResult:
    readers = pps._readers()
    direct = [
        name
        for name in dict.fromkeys(readers.get(repo, ()))
        if any(
            leaf.repo == repo and not isinstance(leaf, CronInput) and leaf.branch == into
            for leaf in pps.spec_of(name)[0].inputs()
        )
    ]
    if not direct:
        raise InvalidArgument(
            f"no pipeline reads {repo}@{into}: there is nothing to run; merge without "
            "--run-pipelines"
        )
    tmp = f"merge-{secrets.token_hex(6)}"
    pfs = pps.pfs
    expected = {(repo, into): pps._head_of(repo, into)}
    done: set[str] = set()
    try:
        with pps.meta.atomic():
            _hold(pps, tmp)
            for name in direct:
                pps._branch_out(name, tmp, done)
                pps._branch_downstream(name, tmp, readers, done)
        outputs = {name: pps.spec_of(name)[0].output_branch for name in done}
        expected.update({(name, out): pps._head_of(name, out) for name, out in outputs.items()})
        merged = pfs.merge(
            repo, source, tmp, strategy=strategy, resolve=resolve,
            message=message if message is not None else f"merge {repo}@{source} into {into}",
        )  # fmt: skip
        if merged.commit is None:  # already merged: nothing to run
            return replace(merged, into=into)
        commit_set = merged.commit.commit_set
        try:
            jobs = pps.wait_commit_set(commit_set, timeout, pause)
            failed = [j for j in jobs if j.state != "success"]
            if failed:
                raise JobFailed(_failures(pps, repo, source, into, failed))
            moves = [(repo, tmp, into, expected[(repo, into)])]
            moves += [(n, tmp, out, expected[(n, out)]) for n, out in sorted(outputs.items())]
            heads = pfs.land_together(moves, gate=(repo, into))
        except BaseException:
            _drop(pps, commit_set)
            raise
        commit = next(h for h in heads if h.repo == repo)
        return replace(
            merged, into=into, commit=commit, outputs=[h for h in heads if h.repo != repo]
        )
    finally:
        _delete_branches(pps, tmp)
        _release(pps, tmp)


def _failures(pps: PpsService, repo: str, source: str, into: str, failed: list[JobInfo]) -> str:
    parts = []
    for job in failed:
        bad = [d for d in pps.list_datums(job.pipeline, job.id) if d.state == "failed"]
        shown = "; ".join(f"datum {d.id[:12]}: {d.error or 'failed'}" for d in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        reason = f" ({shown}{more})" if shown else (f" ({job.reason})" if job.reason else "")
        parts.append(f"pipeline {job.pipeline} job {job.id} {job.state}{reason}")
    return (
        f"merging {repo}@{source} into {into} with its pipelines: {', '.join(parts)}; nothing "
        f"moved ({repo}@{into} and every output branch are as they were; tusk inspect job and "
        "tusk list datum show the failures)"
    )


def _drop(pps: PpsService, commit_set: str) -> None:
    """The commit set of a run that did not land (what remains of it: failed jobs drop their
    output commits themselves)."""
    with contextlib.suppress(TuskError):  # CommitNotFound: nothing of it is left
        pps.pfs.drop_commit_set(commit_set)


def _hold(pps: PpsService, branch: str) -> None:
    """Record ``branch`` (of every repo) as this process's, for gc to remove if it dies."""
    with pps.meta.write() as tx:
        tx.put_hold(holds.BRANCH, "", branch, holds.owner())


def _release(pps: PpsService, branch: str) -> None:
    with pps.meta.write() as tx:
        tx.drop_hold(holds.BRANCH, "", branch)


def remove_abandoned(pps: PpsService, branch: str) -> None:
    """What a killed ``merge --run-pipelines`` or pipeline check left (tusk.pfs.holds): the
    commit sets its temporary ``branch`` heads, unless they landed (a branch other than
    ``branch`` points at them: it was killed after the move), and the branch in every repo."""
    sets: set[str] = set()
    with pps.meta.read() as tx:
        for repo in tx.list_repos():
            b = tx.get_branch(repo.name, branch)
            if b is None or b.head is None:
                continue
            if all(other.name == branch for other in tx.branches_at(b.head)):
                commit = tx.get_commit(b.head)
                if commit is not None:
                    sets.add(commit.commit_set)
    for commit_set in sorted(sets):
        with pps.meta.write() as tx:  # its jobs' process is gone: they end here
            for job in tx.list_jobs(states=["created", "running", "egressing"]):
                if job.id == commit_set:
                    tx.update_job(
                        job.pipeline, job.id, state="killed", finished_at=time.time(),
                        reason=f"the process that ran it on {branch} died; removed by tusk gc",
                    )  # fmt: skip
        _drop(pps, commit_set)
    _delete_branches(pps, branch)
    _release(pps, branch)


def _delete_branches(pps: PpsService, branch: str) -> None:
    """``branch`` of every repo, pipelines' output repos first (they hold the provenance)."""
    repos = [r.name for r in pps.pfs.list_repos() if branch in r.branches]
    pipelines = {p.name for p in pps.list_pipelines()}
    for name in sorted(repos, key=lambda r: r not in pipelines):
        with contextlib.suppress(TuskError):
            pps.pfs.delete_branch(name, branch, force=True)


# A check that names a pipeline (``kind: check`` with ``pipeline: NAME``, tusk.pps.checks):
# the same temporary branches, for one pipeline, on the candidate alone.


def pipeline_check(
    pps: PpsService, request: CheckRequest, spec: dict[str, Any], pause: Pause | None
) -> DatumOutcome:
    """Run the check's pipeline on the candidate: a copy of it heads ``check-<id>`` of the
    repo, the pipeline gets that branch (its other inputs at their usual heads) and one job;
    the check passes if that job succeeds. The job's record stays (``tusk list job`` shows
    it on its branch); its commits and the branches go."""
    name = str(spec["pipeline"])
    tmp = f"check-{secrets.token_hex(6)}"
    try:
        reads = [leaf.repo for leaf in pps.spec_of(name)[0].inputs()
                 if not isinstance(leaf, CronInput)]  # fmt: skip
    except TuskError as exc:
        return DatumOutcome(False, error=f"check {spec['name']}: {exc.message}")
    if request.repo not in reads:
        return DatumOutcome(
            False, error=f"check {spec['name']}: pipeline {name} does not read {request.repo}"
        )
    started = None
    _hold(pps, tmp)
    try:
        pps.pfs.branch_at_copy(
            request.repo, tmp, request.commit, f"check {spec['name']} of {request.commit}"
        )
        pps._branch_out(name, tmp, set())
        started = pps.pfs.trigger_branch(name, tmp)
        if started is None:
            return DatumOutcome(False, error=f"pipeline {name} has no input data to run on")
        try:
            pps.wait_commit(name, started.id, float(spec["timeout"]), pause)
        except Timeout:
            return DatumOutcome(
                False,
                error=f"timed out after {float(spec['timeout']):g}s (the check's timeout)",
                logs=_job_logs(pps, name, started.commit_set),
            )
        except JobFailed as exc:
            return DatumOutcome(
                False, exit_code=1, error=exc.message,
                logs=_job_logs(pps, name, started.commit_set),
            )  # fmt: skip
        logs = _job_logs(pps, name, started.commit_set)
        return DatumOutcome(True, exit_code=0, logs=logs)
    finally:
        if started is not None:
            _drop(pps, started.commit_set)
        _delete_branches(pps, tmp)
        _release(pps, tmp)


def _job_logs(pps: PpsService, pipeline: str, commit_set: str) -> list[tuple[float, str, str]]:
    """What the check's job printed, and its failed datums, as a check's log lines."""
    out: list[tuple[float, str, str]] = []
    for job in pps.list_jobs(pipeline=pipeline, commit_set=commit_set):
        out.append((job.created_at, "stdout", f"job {pipeline}@{job.id}: {job.state}"))
        for line in pps.logs(pipeline, job.id, None, 0):
            out.append((line.ts, line.stream, line.line))
        if job.reason:
            out.append((time.time(), "stderr", job.reason))
    return out
