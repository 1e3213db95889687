"""PPS routes: pipelines, dry runs, jobs, datums and logs.

Jobs are named as in the CLI: ``/pipelines/{pipeline}/jobs/{job}``, or ``/jobs/{job}`` with a
job id alone (a unique prefix is enough).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.routing import APIRoute

from tusk.api import bodies, creating
from tusk.api.docs import operation_id, returns
from tusk.api.guard import EDGE, current_caller
from tusk.api.pfs_routes import BIG, WaitSeconds, ok, ref_text, repo_name, wait_for
from tusk.api.wire import API_PREFIX, name_param
from tusk.auth.permissions import REPO_READ, REPO_WRITE
from tusk.auth.service import AuthService
from tusk.errors import InvalidSpec, NotFound
from tusk.pfs.models import CheckRunInfo, CommitInfo
from tusk.pps.apply import Document, apply_documents
from tusk.pps.models import (
    ApplyResult,
    CheckInfo,
    DatumInfo,
    DatumRun,
    JobInfo,
    LogLine,
    PipelineInfo,
)
from tusk.pps.service import PpsService
from tusk.pps.spec import PipelineSpec


def _origin(origin: dict[str, Any] | None) -> dict[str, Any]:
    where = dict(origin or {})
    # As the in-process SDK does: the transform runs where the spec was created from.
    where.setdefault("working_dir", str(Path(os.getcwd()).resolve()))
    return where


def pps_router(
    pps: PpsService, stopping: threading.Event, auth: AuthService, route_class: type[APIRoute]
) -> APIRouter:
    r = APIRouter(
        prefix=API_PREFIX,
        tags=["pipelines"],
        generate_unique_id_function=operation_id,
        route_class=route_class,
    )

    def may_read_inputs(spec: dict[str, Any] | PipelineSpec, operation: str) -> set[str]:
        """With auth on, the spec's input repos, each checked for read (else nothing)."""
        from tusk.pps.spec import load_spec

        loaded = spec if isinstance(spec, PipelineSpec) else load_spec(spec)
        return creating.may_read_inputs(
            auth, current_caller(), loaded, edge=EDGE, operation=operation
        )

    # Pipelines

    @r.post("/pipelines", status_code=201)
    @returns(PipelineInfo)
    def create_pipeline(body: bodies.PipelineCreate) -> Response:
        """Create a pipeline (with ``update``, replace it); it owns an output repo of its name.

        With auth on: read on every input; the creator owns the output repo, and the
        pipeline's identity may read its inputs and write its output repo.
        """
        from tusk.pps.spec import load_spec

        spec = load_spec(body.spec)
        info = creating.create_pipeline(
            pps, auth, current_caller(), spec, update=body.update, reprocess=body.reprocess,
            origin=_origin(body.origin), edge=EDGE, operation="create_pipeline",
        )  # fmt: skip
        return ok(info, 201)

    @r.get("/pipelines")
    @returns(list[PipelineInfo])
    def list_pipelines() -> Response:
        """Every pipeline (with auth on, those whose repo the caller may read)."""
        pipelines = pps.list_pipelines()
        readable = auth.readable(current_caller(), {p.name for p in pipelines})
        return ok([p for p in pipelines if p.name in readable])

    @r.get("/pipelines/{name}")
    @returns(PipelineInfo)
    def inspect_pipeline(name: str, history: bool = False) -> Response:
        name = name_param(name)
        return ok(pps.inspect_pipeline(name, history))

    @r.put("/pipelines/{name}")
    @returns(PipelineInfo)
    def update_pipeline(name: str, body: bodies.PipelineUpdate) -> Response:
        """A new version of a pipeline; ``reprocess`` reruns every datum under it."""
        from tusk.pps.spec import load_spec

        name = name_param(name)
        spec = load_spec(body.spec)
        if spec.name != name:
            raise InvalidSpec(f"pipeline.name is {spec.name!r} but the request is for {name!r}")
        inputs = may_read_inputs(spec, "update_pipeline")
        info = pps.create_pipeline(
            spec, origin=_origin(body.origin), update=True, reprocess=body.reprocess
        )
        auth.grant_pipeline(current_caller(), info.name, inputs)
        return ok(info)

    @r.delete("/pipelines/{name}", status_code=204)
    def delete_pipeline(name: str, keep_repo: bool = False, force: bool = False) -> Response:
        """Delete a pipeline (its running jobs are killed) and, unless ``keep_repo``, its repo."""
        name = name_param(name)
        pps.delete_pipeline(name, keep_repo=keep_repo, force=force)
        if not keep_repo:
            auth.forget_repo(name)
        return Response(status_code=204)

    @r.post("/pipelines/{name}/stop")
    @returns(PipelineInfo)
    def stop_pipeline(name: str) -> Response:
        """Pause: new input commits queue jobs that start when the pipeline is started."""
        name = name_param(name)
        return ok(pps.set_pipeline_state(name, "paused"))

    @r.post("/pipelines/{name}/start")
    @returns(PipelineInfo)
    def start_pipeline(name: str) -> Response:
        name = name_param(name)
        return ok(pps.set_pipeline_state(name, "running"))

    @r.post("/pipelines/{name}/run")
    @returns(CommitInfo)
    def run_pipeline(name: str, branch: str | None = None) -> Response:
        """Run again on the inputs' current heads; returns the new output commit.

        With ``branch``, run on that branch of the inputs into that branch of the output repo.
        """
        name = name_param(name)
        return ok(pps.run_pipeline(name, branch))

    @r.post("/apply")
    @returns(ApplyResult)
    def apply(body: bodies.Apply) -> Response:
        """Make repos and pipelines match the documents, in one transaction (``tusk apply``)."""
        docs = [Document(d.spec, d.source, _origin(d.origin)) for d in body.documents]
        result = apply_documents(
            pps,
            docs,
            prune=body.prune,
            dry_run=body.dry_run,
            reprocess=body.reprocess,
            caller=current_caller(),
            edge=EDGE,
        )
        return ok(result)

    @r.post("/dry-run")
    @returns(list[dict[str, Any]])
    def dry_run(body: bodies.Spec) -> Response:
        """The datums a spec would have on the current data, creating nothing."""
        may_read_inputs(body.spec, "dry_run")
        return ok([d.to_json() for d in pps.datums_for_spec(body.spec)])

    # Jobs

    @r.get("/jobs", tags=["jobs"])
    @returns(list[JobInfo])
    def list_jobs(pipeline: str | None = None, commit_set: str | None = None) -> Response:
        """Jobs, newest first (with auth on, those of pipelines the caller may read)."""
        jobs = pps.list_jobs(pipeline, commit_set)
        readable = auth.readable(current_caller(), {j.pipeline for j in jobs})
        return ok([j for j in jobs if j.pipeline in readable])

    @r.get("/jobs/{job}", tags=["jobs"])
    @returns(JobInfo)
    def inspect_any_job(job: str) -> Response:
        info = pps.inspect_job(None, job)
        auth.require(
            current_caller(), REPO_READ, info.pipeline, edge=EDGE, operation="inspect_any_job"
        )
        return ok(info)

    @r.get("/pipelines/{name}/jobs/{job}", tags=["jobs"])
    @returns(JobInfo)
    def inspect_job(name: str, job: str) -> Response:
        name = name_param(name)
        return ok(pps.inspect_job(name, job))

    @r.get("/jobs/{job}/wait", tags=["jobs"])
    @returns(JobInfo)
    def wait_any_job(job: str, timeout: WaitSeconds = None) -> Response:
        pipeline = pps.inspect_job(None, job).pipeline
        auth.require(current_caller(), REPO_READ, pipeline, edge=EDGE, operation="wait_any_job")
        return ok(wait_for(lambda t: pps.wait_job(pipeline, job, t), timeout, stopping))

    @r.get("/pipelines/{name}/jobs/{job}/wait", tags=["jobs"])
    @returns(JobInfo)
    def wait_job(name: str, job: str, timeout: WaitSeconds = None) -> Response:
        """Wait until the job is done; 504 when ``timeout`` (at most 30 s) passes."""
        name = name_param(name)
        return ok(wait_for(lambda t: pps.wait_job(name, job, t), timeout, stopping))

    @r.post("/jobs/{job}/stop", tags=["jobs"])
    @returns(JobInfo)
    def stop_any_job(job: str) -> Response:
        pipeline = pps.inspect_job(None, job).pipeline
        auth.require(current_caller(), REPO_WRITE, pipeline, edge=EDGE, operation="stop_any_job")
        return ok(pps.stop_job(pipeline, job))

    @r.post("/pipelines/{name}/jobs/{job}/stop", tags=["jobs"])
    @returns(JobInfo)
    def stop_job(name: str, job: str) -> Response:
        """Kill a job: its running datums stop and its output commit is dropped."""
        name = name_param(name)
        return ok(pps.stop_job(name, job))

    @r.post("/pipelines/{name}/jobs/{job}/restart", tags=["jobs"])
    def restart_datums(name: str, job: str, body: bodies.DatumRestart | None = None) -> Response:
        """Stop the job's running datums that the filters name (no body: all of them) and run
        them again (the try is not counted); 409 when the job is done. The ids of the datums
        restarted."""
        name = name_param(name)
        filters = body.data_filters if body is not None else []
        return ok({"restarted": pps.restart_datums(name, job, filters)})

    # Datums and logs

    @r.get("/pipelines/{name}/jobs/{job}/datums", tags=["datums"])
    @returns(list[DatumInfo])
    def list_datums(name: str, job: str) -> Response:
        name = name_param(name)
        return ok(pps.list_datums(name, job))

    @r.get("/pipelines/{name}/jobs/{job}/datums/{datum}", tags=["datums"])
    @returns(DatumInfo)
    def inspect_datum(name: str, job: str, datum: str) -> Response:
        """One datum (a unique prefix of its id is enough)."""
        name = name_param(name)
        return ok(pps.inspect_datum(name, job, datum))

    @r.get("/pipelines/{name}/jobs/{job}/datums/{datum}/run", tags=["datums"])
    @returns(DatumRun)
    def datum_run(name: str, job: str, datum: str) -> Response:
        """What the datum ran with (``tusk debug datum`` reruns it from this): its files, each
        with the commit the job read it from, the pipeline version, code and image. Secrets
        are named, never valued; the files themselves are read from their repos."""
        name = name_param(name)
        return ok(pps.datum_run(name, job, datum))

    # Checks (declared with apply): what gates a repo's branches, and their runs per commit

    @r.get("/repos/{repo}/checks", tags=["checks"])
    @returns(list[CheckInfo])
    def list_checks(repo: str) -> Response:
        """The checks that gate the repo's branches."""
        name = repo_name(repo)
        pps.pfs.inspect_repo(name)
        return ok([c.info() for c in pps.list_checks(name)])

    @r.delete("/repos/{repo}/checks/{check}", status_code=204, tags=["checks"])
    def delete_check(repo: str, check: str) -> Response:
        """Remove a check of the repo (``tusk apply --prune`` does too)."""
        spec = pps.inspect_check(check)
        if spec.repo != repo_name(repo):
            raise NotFound(f"check {check} does not gate repo {repo_name(repo)}")
        pps.delete_check(check)
        return Response(status_code=204)

    @r.get("/repos/{repo}/commits/{ref}/checks", tags=["checks"])
    @returns(list[CheckRunInfo])
    def list_check_runs(repo: str, ref: str) -> Response:
        """The checks run on a commit (or on a merge's candidate that failed them, by id)."""
        return ok(pps.check_runs(repo_name(repo), ref_text(ref)))

    @r.get("/repos/{repo}/commits/{ref}/checks/{check}", tags=["checks"])
    @returns(CheckRunInfo)
    def inspect_check_run(repo: str, ref: str, check: str) -> Response:
        """One check's run on a commit, with its log."""
        return ok(pps.inspect_check_run(repo_name(repo), ref_text(ref), check))

    @r.get("/pipelines/{name}/logs", tags=["logs"])
    @returns(list[LogLine])
    def logs(
        name: str,
        job: str | None = None,
        datum: str | None = None,
        after: Annotated[int, Query(ge=0, le=BIG, description="Lines after this id.")] = 0,
    ) -> Response:
        """What user code wrote, oldest first; page with ``after`` = the last id seen."""
        name = name_param(name)
        return ok(pps.logs(name, job, datum, after))

    return r
