"""Run by tests/grpcapi/test_pachyderm_sdk.py in pachyderm-sdk's venv: transactions (the
SDK's ``client.transaction``), StopJob and RestartDatum, as Pachyderm users' scripts call
them. Prints JSON. argv: host port marker-folder."""

import json
import sys
import time

from pachyderm_sdk import Client
from pachyderm_sdk.api import pfs, pps, transaction
from sdk_common import code

host, port, marks = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = Client(host=host, port=port)
out = {}


def jobs_of(name):
    return list(c.pps.list_job(pipeline=pps.Pipeline(name=name)))


def wait_for(check, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {check}")


for name in ("left", "right"):
    c.pfs.create_repo(repo=pfs.Repo(name=name))
    c.pfs.put_file_from_bytes(commit=pfs.Commit.from_uri(f"{name}@master"), path="/0", data=b"0")
joined = {
    "pipeline": {"name": "joined"},
    "input": {"cross": [{"pfs": {"repo": "left", "glob": "/"}},
                        {"pfs": {"repo": "right", "glob": "/"}}]},
    "transform": {"cmd": ["sh", "-c",
                          'ls "$TUSK_PFS/left" "$TUSK_PFS/right" > "$TUSK_PFS/out/ls"']},
}  # fmt: skip
c.pps.create_pipeline_v2(create_pipeline_request_json=json.dumps(joined))
wait_for(lambda: [j for j in jobs_of("joined") if j.state == pps.JobState.JOB_SUCCESS])

# Two inputs changed in one transaction: one job, not two (the Pachyderm docs' example).
with c.transaction.transaction() as txn:
    lc = c.pfs.start_commit(branch=pfs.Branch.from_uri("left@master"))
    rc = c.pfs.start_commit(branch=pfs.Branch.from_uri("right@master"))
    c.pfs.create_repo(repo=pfs.Repo(name="made"))
    # Not part of it: reads run at once, and see nothing of the transaction yet.
    out["inside"] = code(lambda: c.pfs.inspect_repo(repo=pfs.Repo(name="made")))[0]
    info = c.transaction.inspect_transaction(transaction=txn)
    out["requests"] = [r.to_dict() and next(iter(r.to_dict())) for r in info.requests]
    out["listed"] = [t.transaction.id for t in c.transaction.list_transaction().transaction_info]
    out["listed"] = out["listed"] == [txn.id]
out["made"] = c.pfs.inspect_repo(repo=pfs.Repo(name="made")).repo.name
out["commit set"] = sorted(
    ci.commit.repo.name for ci in c.pfs.inspect_commit_set(commit_set=pfs.CommitSet(id=txn.id))
)
out["same ids"] = [c.pfs.inspect_commit(commit=x).commit.id == x.id for x in (lc, rc)]
c.pfs.put_file_from_bytes(commit=lc, path="/1", data=b"1")
c.pfs.put_file_from_bytes(commit=rc, path="/1", data=b"1")
c.pfs.finish_commit(commit=lc)
c.pfs.finish_commit(commit=rc)
wait_for(lambda: len(jobs_of("joined")) == 2 and all(
    j.state == pps.JobState.JOB_SUCCESS for j in jobs_of("joined")))  # fmt: skip
time.sleep(1)  # a second job would show by now
out["jobs"] = len(jobs_of("joined"))
out["joined"] = c.pfs.pfs_file(file=pfs.File.from_uri("joined@master:/ls")).read().decode().split()

# All or nothing: the second request fails when the transaction runs; the first is undone.
txn = c.transaction.start_transaction()
c.pfs.create_repo(repo=pfs.Repo(name="first"))
c.pfs.create_repo(repo=pfs.Repo(name="second"))
c.transaction_id = ""
c.pfs.create_repo(repo=pfs.Repo(name="second"))  # meanwhile, outside it
out["finish"] = code(lambda: c.transaction.finish_transaction(transaction=txn))
out["first"] = code(lambda: c.pfs.inspect_repo(repo=pfs.Repo(name="first")))[0]
out["kept"] = c.transaction.transaction_exists(txn)
c.transaction.delete_transaction(transaction=txn)
out["deleted"] = c.transaction.transaction_exists(txn)
# A request that cannot run is refused when added, and the transaction keeps what it had.
txn = c.transaction.start_transaction()
c.pfs.create_branch(branch=pfs.Branch.from_uri("left@dev"), head=pfs.Commit.from_uri("left@master"))
out["refused"] = code(lambda: c.pfs.start_commit(branch=pfs.Branch.from_uri("nowhere@master")))
out["pipeline in txn"] = code(
    lambda: c.pps.create_pipeline_v2(create_pipeline_request_json=json.dumps(joined))
)[0]
c.transaction_id = ""
out["left"] = len(c.transaction.inspect_transaction(transaction=txn).requests)
c.transaction.finish_transaction(transaction=txn)
out["dev"] = c.pfs.inspect_branch(branch=pfs.Branch.from_uri("left@dev")).head.id == (
    c.pfs.inspect_commit(commit=pfs.Commit.from_uri("left@master")).commit.id
)
done = c.transaction.batch_transaction(requests=[
    transaction.TransactionRequest(create_repo=pfs.CreateRepoRequest(repo=pfs.Repo(name="b1"))),
    transaction.TransactionRequest(start_commit=pfs.StartCommitRequest(
        branch=pfs.Branch.from_uri("b1@master"))),
])  # fmt: skip
out["batch"] = [bool(done.responses[1].commit.id), c.pfs.inspect_commit(
    commit=done.responses[1].commit).commit.id == done.responses[1].commit.id]  # fmt: skip
out["unknown txn"] = code(
    lambda: c.transaction.finish_transaction(transaction=transaction.Transaction(id="f" * 32))
)[0]

# RestartDatum: a datum stuck on its first try runs again; StopJob kills a job.
c.pfs.create_repo(repo=pfs.Repo(name="work"))
c.pfs.put_file_from_bytes(commit=pfs.Commit.from_uri("work@master"), path="/f", data=b"f")
stuck = {
    "pipeline": {"name": "stuck"},
    "input": {"pfs": {"repo": "work", "glob": "/*"}},
    "transform": {
        "cmd": ["sh", "-c", f'if [ ! -e {marks}/tried ]; then touch {marks}/tried; sleep 120; fi; '
                'cp "$TUSK_PFS"/work/* "$TUSK_PFS/out/"'],
    },
}  # fmt: skip
c.pps.create_pipeline_v2(create_pipeline_request_json=json.dumps(stuck))
job = wait_for(lambda: jobs_of("stuck"))[0].job
wait_for(lambda: [d for d in c.pps.list_datum(job=job) if d.state == pps.DatumState.STARTING])
wait_for(lambda: __import__("os").path.exists(f"{marks}/tried"))
started = time.monotonic()
c.pps.restart_datum(job=job, data_filters=["/f"])
finished = c.pps.inspect_job(job=job, wait=True)
out["restarted"] = [pps.JobState(finished.state).name, time.monotonic() - started < 60]
out["restarted output"] = c.pfs.pfs_file(file=pfs.File.from_uri("stuck@master:/f")).read().decode()
out["restart done job"] = code(lambda: c.pps.restart_datum(job=job))[0]
sleepy = {**stuck, "pipeline": {"name": "sleepy"}, "transform": {"cmd": ["sleep", "120"]}}
c.pps.create_pipeline_v2(create_pipeline_request_json=json.dumps(sleepy))
job = wait_for(lambda: jobs_of("sleepy"))[0].job
c.pps.stop_job(job=job)
out["stopped"] = pps.JobState(c.pps.inspect_job(job=job, wait=True).state).name
for name in ("sleepy", "stuck", "joined"):
    c.pps.delete_pipeline(pipeline=pps.Pipeline(name=name))
print(json.dumps(out))
