"""Run by tests/grpcapi/test_pachyderm_sdk.py in pachyderm-sdk's venv: a pipeline created,
watched and removed through pps_v2, as a Pachyderm user's script does it. Prints JSON."""

import json
import sys
import time

import grpc
from pachyderm_sdk import Client
from pachyderm_sdk.api import pfs, pps

host, port = sys.argv[1], int(sys.argv[2])
c = Client(host=host, port=port)
out = {}


def first_job(pipeline):
    """The pipeline's first job, once it is done (it appears once the scheduler sees it)."""
    deadline = time.monotonic() + 60
    jobs = []
    while not jobs and time.monotonic() < deadline:
        jobs = list(c.pps.list_job(pipeline=pipeline))
        time.sleep(0.1)
    return c.pps.inspect_job(job=jobs[0].job, wait=True)


c.pfs.create_repo(repo=pfs.Repo(name="words"))
with c.pfs.commit(branch=pfs.Branch.from_uri("words@master")) as commit:
    commit.put_file_from_bytes(path="/a", data=b"alpha")
    commit.put_file_from_bytes(path="/b", data=b"beta")
spec = {
    "pipeline": {"name": "shout"},
    "input": {"pfs": {"repo": "words", "glob": "/*"}},
    "transform": {
        "cmd": [
            "sh",
            "-c",
            'for f in "$TUSK_PFS"/words/*; do echo "shouting $f"; '
            'tr a-z A-Z < "$f" > "$TUSK_PFS/out/$(basename "$f")"; done',
        ]
    },
}
made = c.pps.create_pipeline_v2(create_pipeline_request_json=json.dumps(spec))
out["effective"] = json.loads(made.effective_create_pipeline_request_json)["pipeline"]
shout = pps.Pipeline(name="shout")
job = first_job(shout)
out["job"] = [pps.JobState(job.state).name, job.data_total, job.data_processed, job.reason]
out["output"] = c.pfs.pfs_file(file=pfs.File.from_uri("shout@master:/b")).read().decode()
datums = list(c.pps.list_datum(job=job.job))
out["datums"] = sorted(
    [pps.DatumState(d.state).name, [f.file.path for f in d.data]] for d in datums
)
one = c.pps.inspect_datum(datum=datums[0].datum)
out["datum"] = one.datum.id == datums[0].datum.id
info = c.pps.inspect_pipeline(pipeline=shout)
out["pipeline"] = [
    pps.PipelineState(info.state).name,
    info.version,
    json.loads(info.user_spec_json)["input"]["pfs"]["glob"],
]
logs = list(c.pps.get_logs(pipeline=shout))
out["logs"] = sorted(m.message.rsplit("/", 1)[1] for m in logs if "shouting" in m.message)
out["log job"] = {m.job_id for m in logs if "shouting" in m.message} == {job.job.id}
jobs = c.pps.subscribe_job(pipeline=shout)
out["subscribed job"] = [next(jobs).job.id == job.job.id]
jobs.close()
in_set = c.pfs.inspect_commit_set(commit_set=pfs.CommitSet(id=job.job.id))
out["commit set"] = sorted(ci.commit.repo.name for ci in in_set)
c.pps.stop_pipeline(pipeline=shout)
out["stopped"] = c.pps.inspect_pipeline(pipeline=shout).stopped
c.pps.start_pipeline(pipeline=shout)
out["listed"] = [p.pipeline.name for p in c.pps.list_pipeline()]
try:
    c.pps.create_pipeline_v2(create_pipeline_request_json=json.dumps(spec))
    out["again"] = "ok"
except grpc.RpcError as exc:
    out["again"] = exc.code().name
bad = {**spec, "transform": {"cmd": []}}
try:
    c.pps.create_pipeline_v2(create_pipeline_request_json=json.dumps(bad))
    out["bad"] = "ok"
except grpc.RpcError as exc:
    out["bad"] = [exc.code().name, exc.details()]
# The SDK's structured create_pipeline: the request is the spec.
count = pps.Pipeline(name="count")
c.pps.create_pipeline(
    pipeline=count,
    transform=pps.Transform(cmd=["sh", "-c", 'ls "$TUSK_PFS/words" | wc -l > "$TUSK_PFS/out/n"']),
    input=pps.Input(pfs=pps.PfsInput(repo="words", glob="/")),
    datum_tries=2,
)
done = first_job(count)
out["count"] = [
    pps.JobState(done.state).name,
    c.pfs.pfs_file(file=pfs.File.from_uri("count@master:/n")).read().decode().strip(),
]
detailed = c.pps.inspect_pipeline(pipeline=count, details=True).details
out["details"] = [
    detailed.transform.cmd[0],
    detailed.input.pfs.repo,
    detailed.input.pfs.glob,
    detailed.datum_tries,
    detailed.output_branch,
]
out["count spec"] = json.loads(c.pps.inspect_pipeline(pipeline=count).user_spec_json)["datum_tries"]
try:
    c.pps.create_pipeline(
        pipeline=pps.Pipeline(name="tf"),
        transform=pps.Transform(cmd=["true"]),
        input=pps.Input(pfs=pps.PfsInput(repo="words", glob="/")),
        tf_job=pps.TfJob(tf_job="x"),
    )
    out["tf"] = "ok"
except grpc.RpcError as exc:
    out["tf"] = [exc.code().name, exc.details()]
c.pps.delete_pipeline(pipeline=count)
c.pps.delete_pipeline(pipeline=shout)
out["after delete"] = [p.pipeline.name for p in c.pps.list_pipeline()]
print(json.dumps(out))
