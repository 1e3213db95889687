"""``pps_v2.API``: pipelines, jobs and datums, as pachyderm-sdk and pachctl call them.

A pipeline is created from its JSON spec (``CreatePipelineV2``, what pachctl 2.12 sends and
``client.pps.create_pipeline_v2`` takes), checked by Tusk's spec loader as every other spec;
it is shown with its spec as JSON (``user_spec_json``, ``effective_spec_json``). A ``Job`` is
``{pipeline, id}`` (the id is its commit set's); its states are Pachyderm's (JOB_RUNNING...).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import empty_pb2

from tusk.errors import InvalidArgument, InvalidSpec, PipelineNotFound
from tusk.grpcapi.gen import pfs_pb2 as pfs
from tusk.grpcapi.gen import pps_pb2 as pb
from tusk.grpcapi.pfs import pb_commit, timestamp
from tusk.grpcapi.server import EDGE, Edge, Rpc, in_projects, page
from tusk.ids import DEFAULT_PROJECT, qualify
from tusk.pps.models import DatumInfo, JobInfo, PipelineInfo

SERVICE = "pps_v2.API"
_DETAIL_FIELDS = {f.name for f in pb.PipelineInfo.Details.DESCRIPTOR.fields} - {
    "created_at",
    "updated_at",
}

RPCS = [
    Rpc(SERVICE, "CreatePipeline", pb.CreatePipelineRequest, "unary"),
    Rpc(SERVICE, "CreatePipelineV2", pb.CreatePipelineV2Request, "unary"),
    Rpc(SERVICE, "InspectPipeline", pb.InspectPipelineRequest, "unary"),
    Rpc(SERVICE, "ListPipeline", pb.ListPipelineRequest, "server_stream"),
    Rpc(SERVICE, "DeletePipeline", pb.DeletePipelineRequest, "unary"),
    Rpc(SERVICE, "StartPipeline", pb.StartPipelineRequest, "unary"),
    Rpc(SERVICE, "StopPipeline", pb.StopPipelineRequest, "unary"),
    Rpc(SERVICE, "InspectJob", pb.InspectJobRequest, "unary"),
    Rpc(SERVICE, "ListJob", pb.ListJobRequest, "server_stream"),
    Rpc(SERVICE, "ListDatum", pb.ListDatumRequest, "server_stream"),
    Rpc(SERVICE, "InspectDatum", pb.InspectDatumRequest, "unary"),
    Rpc(SERVICE, "GetLogs", pb.GetLogsRequest, "server_stream"),
    Rpc(SERVICE, "SubscribeJob", pb.SubscribeJobRequest, "server_stream"),
    Rpc(SERVICE, "StopJob", pb.StopJobRequest, "unary"),
    Rpc(SERVICE, "RestartDatum", pb.RestartDatumRequest, "unary"),
]
_POLL = 0.2  # seconds between looks, when following logs or jobs

_JOB_STATES = {
    "created": pb.JOB_CREATED,
    "running": pb.JOB_RUNNING,
    "egressing": pb.JOB_EGRESSING,
    "success": pb.JOB_SUCCESS,
    "failure": pb.JOB_FAILURE,
    "killed": pb.JOB_KILLED,
}
_DATUM_STATES = {
    "pending": pb.STARTING,
    "running": pb.STARTING,
    "success": pb.SUCCESS,
    "skipped": pb.SKIPPED,
    "failed": pb.FAILED,
    "recovered": pb.RECOVERED,
}


def pipeline_name(pipeline: Any) -> str:
    """The stored name of a ``Pipeline`` message (its output repo's)."""
    if not pipeline.name:
        raise InvalidArgument("no pipeline given: set Pipeline.name")
    return qualify(pipeline.project.name or DEFAULT_PROJECT, pipeline.name)


def pb_pipeline(stored: str) -> Any:
    project, _, bare = stored.rpartition("/")
    return pb.Pipeline(name=bare, project=pfs.Project(name=project or DEFAULT_PROJECT))


def pipeline_info(p: PipelineInfo) -> Any:
    spec = json.dumps(p.spec, sort_keys=True)
    kind = pb.PIPELINE_TYPE_TRANSFORM
    if p.spec.get("spout") is not None:
        kind = pb.PIPELINE_TYPE_SPOUT
    elif p.spec.get("service") is not None:
        kind = pb.PIPELINE_TYPE_SERVICE
    state = pb.PIPELINE_RUNNING if p.state == "running" else pb.PIPELINE_PAUSED
    if p.process_state == "crashed":
        state = pb.PIPELINE_CRASHING
    elif p.process_state == "restarting":
        state = pb.PIPELINE_RESTARTING
    info = pb.PipelineInfo(
        pipeline=pb_pipeline(p.name),
        version=p.version,
        stopped=p.state != "running",
        state=state,
        reason=p.process_detail,
        last_job_state=_JOB_STATES.get(p.last_job_state or "", pb.JOB_STATE_UNKNOWN),
        parallelism=int(p.spec.get("parallelism_spec", {}).get("constant", 1)),
        type=kind,
        user_spec_json=spec,
        effective_spec_json=spec,
    )
    info.details.CopyFrom(details(p))
    return info


def details(p: PipelineInfo) -> Any:
    """``PipelineInfo.details``: the stored spec in Pachyderm's message (what the SDK's
    ``inspect_pipeline(details=True)`` reads, as ``details.transform.cmd``)."""
    from google.protobuf import json_format

    spec = {k: v for k, v in p.spec.items() if k in _DETAIL_FIELDS}
    for key in ("datum_timeout", "job_timeout"):  # seconds -> a Duration's JSON
        if isinstance(spec.get(key), int | float):
            spec[key] = f"{spec[key]:g}s"
    if isinstance(spec.get("egress"), dict) and "url" in spec["egress"]:
        spec["egress"] = {"URL": spec["egress"]["url"]}
    if isinstance(spec.get("input"), dict):
        spec["input"] = _plain_projects(spec["input"])
    message = pb.PipelineInfo.Details(
        created_at=timestamp(p.created_at), updated_at=timestamp(p.updated_at)
    )
    try:
        json_format.ParseDict(spec, message, ignore_unknown_fields=True)
    except json_format.ParseError:  # a recorded setting of another shape: the JSON has it
        message = pb.PipelineInfo.Details(
            created_at=timestamp(p.created_at), updated_at=timestamp(p.updated_at)
        )
    return message


def _plain_projects(node: Any) -> Any:
    """An input tree with each leaf's project as the plain name Pachyderm's PFSInput and
    CronInput carry (``project: {name}``, or Tusk's stored ``project/repo``)."""
    if isinstance(node, list):
        return [_plain_projects(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _plain_projects(v) for k, v in node.items()}
    if isinstance(out.get("project"), dict):
        out["project"] = out["project"].get("name", "")
    if isinstance(out.get("repo"), str) and "/" in out["repo"]:  # Tusk's "project/repo"
        out["project"], _, out["repo"] = out["repo"].rpartition("/")
    return out


def job_info(j: JobInfo) -> Any:
    info = pb.JobInfo(
        job=pb.Job(pipeline=pb_pipeline(j.pipeline), id=j.id),
        pipeline_version=j.version,
        output_commit=pb_commit(j.pipeline, j.output_commit),
        data_processed=j.processed,
        data_skipped=j.skipped,
        data_total=j.datums_total,
        data_failed=j.failed,
        data_recovered=j.recovered,
        state=_JOB_STATES.get(j.state, pb.JOB_STATE_UNKNOWN),
        reason=j.reason,
        created=timestamp(j.created_at),
    )
    if j.started_at is not None:
        info.started.CopyFrom(timestamp(j.started_at))
    if j.finished_at is not None:
        info.finished.CopyFrom(timestamp(j.finished_at))
    return info


def datum_info(d: DatumInfo) -> Any:
    job = pb.Job(pipeline=pb_pipeline(d.pipeline), id=d.job)
    info = pb.DatumInfo(
        datum=pb.Datum(job=job, id=d.id), state=_DATUM_STATES.get(d.state, pb.UNKNOWN)
    )
    for f in d.files:
        repo = str(f.get("repo", ""))
        info.data.append(
            pfs.FileInfo(
                file=pfs.File(commit=pb_commit(repo, ""), path=str(f.get("path", ""))),
                file_type=pfs.FILE,
                size_bytes=int(f.get("size", 0)),
            )
        )
    return info


class Handlers:
    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.pps = edge.pps

    def _gate(self, context: grpc.ServicerContext, rpc: str, repo: str | None = None) -> Any:
        return self.edge.gate(context, f"{SERVICE}/{rpc}", repo)

    # Pipelines

    def CreatePipeline(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The SDK's ``create_pipeline``: the request is the spec, field for field."""
        from google.protobuf import json_format

        caller = self._gate(context, "CreatePipeline")
        data = json_format.MessageToDict(request, preserving_proto_field_name=True)
        flags = {k: bool(data.pop(k, False)) for k in ("update", "reprocess", "dry_run")}
        self._create(caller, data, **flags)
        return empty_pb2.Empty()

    def CreatePipelineV2(self, request: Any, context: grpc.ServicerContext) -> Any:
        caller = self._gate(context, "CreatePipelineV2")
        try:
            data = json.loads(request.create_pipeline_request_json)
        except ValueError as exc:
            raise InvalidSpec(f"create_pipeline_request_json is not JSON: {exc}") from None
        effective = self._create(
            caller, data, update=request.update, reprocess=request.reprocess,
            dry_run=request.dry_run,
        )  # fmt: skip
        return pb.CreatePipelineV2Response(
            effective_create_pipeline_request_json=json.dumps(effective, sort_keys=True)
        )

    def _create(
        self, caller: Any, data: Any, *, update: bool, reprocess: bool, dry_run: bool
    ) -> dict[str, Any]:
        """Check and create (or update) a pipeline from its spec, as the REST API does; the
        stored spec (``dry_run``: the checked one, nothing created)."""
        from tusk.api import creating
        from tusk.pps.spec import load_spec

        spec = load_spec(data)
        if dry_run:
            auth, op = self.edge.auth, "CreatePipeline"
            creating.may_create_pipeline(self.pps, auth, caller, spec, update, edge=EDGE,
                                         operation=op)  # fmt: skip
            return spec.canonical()
        info = creating.create_pipeline(
            self.pps, self.edge.auth, caller, spec, update=update, reprocess=reprocess,
            origin=None, edge=EDGE, operation="CreatePipeline",
        )  # fmt: skip
        return info.spec

    def InspectPipeline(self, request: Any, context: grpc.ServicerContext) -> Any:
        name = pipeline_name(request.pipeline)
        self._gate(context, "InspectPipeline", name)
        return pipeline_info(self.pps.inspect_pipeline(name))

    def ListPipeline(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        caller = self._gate(context, "ListPipeline")
        pipelines = self.pps.list_pipelines()
        if request.HasField("pipeline") and request.pipeline.name:
            wanted = pipeline_name(request.pipeline)
            pipelines = [p for p in pipelines if p.name == wanted]
        readable = self.edge.auth.readable(caller, [p.name for p in pipelines])
        for p in pipelines:
            if p.name in readable and in_projects(p.name, request.projects):
                yield pipeline_info(p)

    def DeletePipeline(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.all:
            raise InvalidArgument("deleting all pipelines at once is not supported; name one")
        name = pipeline_name(request.pipeline)
        self._gate(context, "DeletePipeline", name)
        try:
            self.pps.delete_pipeline(name, keep_repo=request.keep_repo, force=request.force)
        except PipelineNotFound:
            if request.must_exist:
                raise
        return empty_pb2.Empty()

    def StartPipeline(self, request: Any, context: grpc.ServicerContext) -> Any:
        name = pipeline_name(request.pipeline)
        self._gate(context, "StartPipeline", name)
        self.pps.set_pipeline_state(name, "running")
        return empty_pb2.Empty()

    def StopPipeline(self, request: Any, context: grpc.ServicerContext) -> Any:
        name = pipeline_name(request.pipeline)
        self._gate(context, "StopPipeline", name)
        try:
            self.pps.set_pipeline_state(name, "paused")
        except PipelineNotFound:
            if request.must_exist:
                raise
        return empty_pb2.Empty()

    # Jobs and datums

    def _job(self, context: grpc.ServicerContext, rpc: str, job: Any) -> tuple[str, str]:
        name = pipeline_name(job.pipeline)
        self._gate(context, rpc, name)
        if not job.id:
            raise InvalidArgument("no job given: set Job.id")
        return name, job.id

    def StopJob(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.pps.stop_job(*self._job(context, "StopJob", request.job))
        return empty_pb2.Empty()

    def RestartDatum(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The running datums the filters name stop and run again (no filter: all of the
        job's running datums), as ``pachctl restart datum``."""
        name, job = self._job(context, "RestartDatum", request.job)
        self.pps.restart_datums(name, job, list(request.data_filters))
        return empty_pb2.Empty()

    def InspectJob(self, request: Any, context: grpc.ServicerContext) -> Any:
        name, job = self._job(context, "InspectJob", request.job)
        if request.wait:
            return job_info(self.pps.wait_job(name, job))
        return job_info(self.pps.inspect_job(name, job))

    def ListJob(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        caller = self._gate(context, "ListJob")
        pipeline = None
        if request.HasField("pipeline") and request.pipeline.name:
            pipeline = pipeline_name(request.pipeline)
        jobs = self.pps.list_jobs(pipeline)
        readable = self.edge.auth.readable(caller, {j.pipeline for j in jobs})
        jobs = [
            j for j in jobs if j.pipeline in readable and in_projects(j.pipeline, request.projects)
        ]
        for j in page(jobs, request.number, request.reverse):
            yield job_info(j)

    def ListDatum(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        name = pipeline_name(request.job.pipeline)
        self._gate(context, "ListDatum", name)
        datums = self.pps.list_datums(name, request.job.id)
        for d in page(datums, request.number, request.reverse):
            yield datum_info(d)

    def InspectDatum(self, request: Any, context: grpc.ServicerContext) -> Any:
        name = pipeline_name(request.datum.job.pipeline)
        self._gate(context, "InspectDatum", name)
        return datum_info(self.pps.inspect_datum(name, request.datum.job.id, request.datum.id))

    # Logs and subscriptions

    def GetLogs(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        """A pipeline's (or job's, or datum's) log lines; ``follow``: then each new one until
        the client hangs up; ``tail``: only the last N first."""
        if request.HasField("job") and request.job.pipeline.name:
            name = pipeline_name(request.job.pipeline)
        else:
            name = pipeline_name(request.pipeline)
        self._gate(context, "GetLogs", name)
        job = request.job.id or (request.datum.job.id if request.HasField("datum") else "")
        datum = request.datum.id if request.HasField("datum") else ""
        lines = self.pps.logs(name, job or None, datum or None)
        if request.tail > 0:
            lines = lines[-request.tail :]
        project, _, bare = name.rpartition("/")
        last = 0
        while True:
            for line in lines:
                last = max(last, line.id)
                if request.data_filters and not all(f in line.line for f in request.data_filters):
                    continue
                yield pb.LogMessage(
                    pipeline_name=bare, project_name=project or DEFAULT_PROJECT,
                    job_id=line.job, datum_id=line.datum, user=line.stream != "system",
                    ts=timestamp(line.ts), message=line.line,
                )  # fmt: skip
            if not request.follow or not context.is_active():
                return
            time.sleep(_POLL)
            lines = self.pps.logs(name, job or None, datum or None, after=last)

    def SubscribeJob(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        """A pipeline's jobs, then each again whenever its state changes, until the client
        hangs up."""
        name = pipeline_name(request.pipeline)
        self._gate(context, "SubscribeJob", name)
        seen: dict[str, str] = {}
        while context.is_active():
            for j in sorted(self.pps.list_jobs(name), key=lambda j: j.created_at):
                if seen.get(j.id) != j.state:
                    seen[j.id] = j.state
                    yield job_info(j)
            time.sleep(_POLL)
