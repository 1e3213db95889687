"""Pipelines end to end through the SDK: jobs, incremental datums, chaining, faults, lineage."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tusk
from tusk.errors import AlreadyExists, InvalidSpec, PipelineNotFound, RepoNotFound

ENGINES = ("sqlite", "postgresql")

UPPER = 'for f in "$TUSK_PFS"/in/*; do tr a-z A-Z < "$f" > "$TUSK_PFS/out/$(basename "$f")"; done'


def spec(
    name: str = "up",
    cmd: str = UPPER,
    repo: str = "in",
    glob: str = "/*",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": repo, "glob": glob, "name": "in"}},
        "transform": {"cmd": ["sh", "-c", cmd]},
        **extra,
    }


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str) -> tusk.Client:
    monkeypatch.setenv("TUSK_SANDBOX", "none")
    c = tusk.Client(tmp_path / "home")
    c.create_repo("in")
    yield c
    c.close()


def run(c: tusk.Client) -> None:
    c.run_scheduler(once=True)


def files(c: tusk.Client, address: str) -> dict[str, bytes]:
    return {f.path: c.get_file(f"{address}:{f.path}") for f in c.glob_files(f"{address}:/**")
            if f.type == "file"}  # fmt: skip


def test_job_runs_and_output_lands(client: tusk.Client) -> None:
    client.put_files("in@master", [("/a.txt", b"alpha\n"), ("/b.txt", b"beta\n")])
    info = client.create_pipeline(spec())
    assert info.name == "up" and info.version == 1 and info.input == "in:/*"
    assert client.inspect_repo("up").name == "up"
    run(client)
    [job] = client.list_jobs("up")
    assert job.state == "success" and job.datums_total == 2 and job.processed == 2
    assert files(client, "up@master") == {"/a.txt": b"ALPHA\n", "/b.txt": b"BETA\n"}
    out = client.inspect_commit("up@master")
    assert out.commit_set == job.id
    assert out.provenance == [f"in@{client.inspect_commit('in@master').id}"]
    assert client.inspect_commit("in@master").subvenance == [f"up@{out.id}"]
    assert client.fsck().ok


def test_only_changed_datums_rerun_and_removed_outputs_go(client: tusk.Client) -> None:
    client.put_files("in@master", [(f"/f{i}.txt", f"v{i}\n".encode()) for i in range(5)])
    client.create_pipeline(spec())
    run(client)
    client.put_file("in@master:/f1.txt", b"changed\n")
    run(client)
    job = client.list_jobs("up")[0]
    assert (job.processed, job.skipped, job.datums_total) == (1, 4, 5)
    client.delete_file("in@master:/f2.txt")
    client.put_file("in@master:/f9.txt", b"new\n")
    run(client)
    # Each change makes its own commit set and job: delete (0 run), then add (1 run).
    jobs = client.list_jobs("up")
    assert [(j.processed, j.skipped) for j in jobs[:2]] == [(1, 4), (0, 4)]
    assert files(client, "up@master") == {
        "/f0.txt": b"V0\n",
        "/f1.txt": b"CHANGED\n",
        "/f3.txt": b"V3\n",
        "/f4.txt": b"V4\n",
        "/f9.txt": b"NEW\n",
    }
    datums = client.list_datums(f"up@{jobs[0].id}")
    assert sorted(d.state for d in datums) == ["skipped"] * 4 + ["success"]
    assert client.fsck().ok


def test_update_keeps_or_reprocesses(client: tusk.Client) -> None:
    client.put_files("in@master", [("/a", b"a"), ("/b", b"b")])
    client.create_pipeline(spec())
    run(client)
    suffix = UPPER.replace('/$(basename "$f")"', '/$(basename "$f").v2"')
    client.update_pipeline(spec(cmd=suffix))
    run(client)
    job = client.list_jobs("up")[0]
    assert job.version == 2 and (job.processed, job.skipped) == (0, 2)
    assert sorted(files(client, "up@master")) == ["/a", "/b"]  # old output kept
    client.update_pipeline(spec(cmd=suffix), reprocess=True)
    run(client)
    job = client.list_jobs("up")[0]
    assert job.version == 3 and (job.processed, job.skipped) == (2, 0)
    assert sorted(files(client, "up@master")) == ["/a.v2", "/b.v2"]
    history = client.inspect_pipeline("up", history=True).versions
    assert [v.version for v in history] == [1, 2, 3]
    assert history[0].spec_hash != history[1].spec_hash


def test_chained_pipelines_share_a_commit_set(client: tusk.Client) -> None:
    client.create_pipeline(spec())
    count = {
        "pipeline": {"name": "count"},
        "input": {"pfs": {"repo": "up", "glob": "/", "name": "up"}},
        "transform": {"cmd": ["sh", "-c", 'cat "$TUSK_PFS"/up/* | wc -l > "$TUSK_PFS/out/n"']},
    }
    client.create_pipeline(count)
    put = client.put_files("in@master", [("/a", b"x\n"), ("/b", b"y\nz\n")])
    commit_set = put.commit.commit_set
    members = {c.repo: c for c in client.inspect_commit_set(commit_set)}
    assert set(members) == {"in", "up", "count"} and not members["count"].finished
    run(client)
    jobs = client.wait_commit_set(commit_set, timeout=5)
    assert sorted((j.pipeline, j.state) for j in jobs) == [("count", "success"), ("up", "success")]
    assert client.get_file("count@master:/n").strip() == b"3"
    lineage = client.lineage("count@master:/n")
    assert lineage.pipeline == "count" and lineage.job == commit_set
    assert {s.repo for s in lineage.inputs} == {"up"}
    assert {s.repo for step in lineage.inputs for s in step.inputs} == {"in"}


def test_failed_datum_fails_job_and_branch_stays(client: tusk.Client) -> None:
    client.put_files("in@master", [("/good", b"1"), ("/bad", b"2")])
    cmd = (
        'if [ -e "$TUSK_PFS/in/bad" ]; then echo boom >&2; exit 3; fi; '
        'cp "$TUSK_PFS"/in/* "$TUSK_PFS/out/"'
    )
    client.create_pipeline(spec(cmd=cmd, datum_tries=2))
    run(client)
    [job] = client.list_jobs("up")
    assert job.state == "failure" and "exited with code 3" in job.reason and "boom" in job.reason
    failed = [d for d in client.list_datums(f"up@{job.id}") if d.state == "failed"]
    assert len(failed) == 1 and failed[0].exit_code == 3 and failed[0].attempts == 2
    assert "boom" in failed[0].stderr_tail
    assert client.list_commits("up@master") == []  # the output branch did not move
    logs = [line.line for line in client.logs("up", job.id)]
    assert "boom" in logs and any("attempt 1 of 2" in line for line in logs)


def test_err_cmd_recovers_and_accepted_codes(client: tusk.Client) -> None:
    client.put_file("in@master:/x", b"1")
    client.create_pipeline(
        spec() | {"transform": {"cmd": ["sh", "-c", "exit 7"], "err_cmd": ["true"]}}
    )
    run(client)
    [job] = client.list_jobs("up")
    assert job.state == "success" and job.recovered == 1
    accept = {"cmd": ["sh", "-c", 'echo ok > "$TUSK_PFS/out/o"; exit 5'], "accept_return_code": [5]}
    client.update_pipeline(spec() | {"transform": accept}, reprocess=True)
    run(client)
    assert client.list_jobs("up")[0].state == "success"
    assert client.get_file("up@master:/o") == b"ok\n"


def test_datum_timeout(client: tusk.Client) -> None:
    client.put_file("in@master:/x", b"1")
    client.create_pipeline(spec(cmd="sleep 30", datum_timeout="1s", datum_tries=1))
    run(client)
    [job] = client.list_jobs("up")
    assert job.state == "failure" and "timed out after 1s" in job.reason


def test_two_datums_writing_one_path_fail_the_job(client: tusk.Client) -> None:
    client.put_files("in@master", [("/a", b"1"), ("/b", b"2")])
    client.create_pipeline(spec(cmd='echo x > "$TUSK_PFS/out/same"'))
    run(client)
    [job] = client.list_jobs("up")
    datums = [d.id[:12] for d in client.list_datums(f"up@{job.id}")]
    assert job.state == "failure" and "/same" in job.reason
    assert all(d in job.reason for d in datums)
    assert client.list_commits("up@master") == []


def test_parallel_datums_overlap(client: tusk.Client) -> None:
    client.put_files("in@master", [(f"/{i}", b"x") for i in range(4)])
    cmd = (
        'n=$(ls "$TUSK_PFS/in"); date +%s.%N > "$TUSK_PFS/out/$n.start"; sleep 1; '
        'date +%s.%N > "$TUSK_PFS/out/$n.end"'
    )
    client.create_pipeline(spec(cmd=cmd, parallelism_spec={"constant": 2}))
    run(client)
    out = files(client, "up@master")
    spans = [(float(out[f"/{i}.start"]), float(out[f"/{i}.end"])) for i in range(4)]
    overlapping = sum(1 for a in spans for b in spans if a is not b and a[0] < b[1] and b[0] < a[1])
    assert overlapping >= 2  # at least one pair ran at the same time


def test_env_names_job_datum_and_inputs(client: tusk.Client) -> None:
    client.put_file("in@master:/data.csv", b"1")
    keep = "^(PACH_|TUSK_JOB|TUSK_DATUM|in=|in_COMMIT=|PPS_)"
    cmd = f'env | grep -E "{keep}" | sort > "$TUSK_PFS/out/env"'
    client.create_pipeline(spec() | {"transform": {"cmd": ["sh", "-c", cmd], "env": {"MODE": "x"}}})
    run(client)
    job = client.list_jobs("up")[0]
    env = dict(
        line.split("=", 1) for line in client.get_file("up@master:/env").decode().splitlines()
    )
    [datum] = client.list_datums(f"up@{job.id}")
    assert env["PACH_JOB_ID"] == env["TUSK_JOB_ID"] == job.id
    assert env["PACH_DATUM_ID"] == datum.id
    assert env["PACH_OUTPUT_COMMIT_ID"] == job.output_commit
    assert env["PPS_PIPELINE_NAME"] == "up" and "MODE" not in env  # grep keeps only ours
    assert env["in"].endswith("/in/data.csv")
    assert env["in_COMMIT"] == client.inspect_commit("in@master").id


def test_stop_and_start_pipeline_and_run(client: tusk.Client) -> None:
    client.create_pipeline(spec())
    client.stop_pipeline("up")
    client.put_file("in@master:/a", b"a")
    run(client)
    assert [j.state for j in client.list_jobs("up")] == ["created"]
    client.start_pipeline("up")
    run(client)
    assert [j.state for j in client.list_jobs("up")] == ["success"]
    again = client.run_pipeline("up")
    run(client)
    jobs = client.list_jobs("up")
    assert jobs[0].id == again.commit_set and (jobs[0].processed, jobs[0].skipped) == (0, 1)


def test_bad_specs_create_nothing(client: tusk.Client) -> None:
    before = ([r.name for r in client.list_repos()], client.list_pipelines())
    with pytest.raises(InvalidSpec, match="transfrom"):
        client.create_pipeline(spec() | {"transfrom": {}})
    with pytest.raises(RepoNotFound, match="nope"):
        client.create_pipeline(spec(repo="nope"))
    with pytest.raises(InvalidSpec, match="glob"):
        client.create_pipeline(spec(glob="[unclosed"))
    assert ([r.name for r in client.list_repos()], client.list_pipelines()) == before
    client.create_pipeline(spec())
    with pytest.raises(AlreadyExists):
        client.create_pipeline(spec())
    with pytest.raises(InvalidSpec, match="cycle"):
        client.create_pipeline(spec(name="down", repo="up"))
        client.update_pipeline(spec(name="up", repo="down"))
    with pytest.raises(PipelineNotFound):
        client.inspect_pipeline("ghost")


def test_delete_pipeline(client: tusk.Client) -> None:
    client.create_pipeline(spec())
    client.delete_pipeline("up")
    assert client.list_pipelines() == [] and "up" not in [r.name for r in client.list_repos()]


def test_dry_run_lists_datums(client: tusk.Client) -> None:
    client.put_files("in@master", [("/d1/a", b"1"), ("/d1/b", b"2"), ("/d2/c", b"3")])
    datums = client.dry_run(spec())
    assert [[f["path"] for f in d["files"]] for d in datums] == [["/d1/a", "/d1/b"], ["/d2/c"]]
    assert client.list_pipelines() == []


def test_egress_to_a_folder(client: tusk.Client, tmp_path: Path) -> None:
    client.put_file("in@master:/a", b"a")
    client.create_pipeline(spec(egress={"URL": f"file://{tmp_path / 'egress'}"}))
    run(client)
    assert (tmp_path / "egress" / "a").read_bytes() == b"A"


NO_BWRAP = shutil.which("bwrap") is None and os.environ.get("CI") != "true"


@pytest.mark.skipif(NO_BWRAP, reason="bubblewrap missing (CI installs it; there this test runs)")
def test_sandbox_maps_pfs_and_refuses_writes_elsewhere(
    client: tusk.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUSK_SANDBOX", "bwrap")
    client.put_file("in@master:/a.txt", b"hello\n")
    outside = tmp_path / "outside.txt"
    # Unchanged Pachyderm code: literal /pfs paths.
    cmd = (
        "tr a-z A-Z < /pfs/in/a.txt > /pfs/out/a.txt; "
        f"if echo x > {outside} 2>/dev/null; then echo wrote-outside > /pfs/out/leak; fi; "
        "if echo x > /pfs/in/a.txt 2>/dev/null; then echo wrote-input > /pfs/out/leak2; fi; "
        "echo tmp > /tmp/scratch && cat /tmp/scratch > /pfs/out/tmp.txt"
    )
    client.create_pipeline(spec(cmd=cmd))
    run(client)
    assert client.list_jobs("up")[0].state == "success"
    assert files(client, "up@master") == {"/a.txt": b"HELLO\n", "/tmp.txt": b"tmp\n"}
    assert not outside.exists()
    assert client.get_file("in@master:/a.txt") == b"hello\n"


def test_job_info_json(client: tusk.Client) -> None:
    client.put_file("in@master:/a", b"a")
    client.create_pipeline(spec())
    run(client)
    job = client.list_jobs("up")[0]
    data = json.loads(json.dumps(job.to_dict()))
    assert data["state"] == "success" and data["input_commits"]


def test_cron_input_ticks_start_jobs(client: tusk.Client) -> None:
    cron = {
        "pipeline": {"name": "tick"},
        "input": {"cron": {"name": "clock", "spec": "@every 1s", "overwrite": True}},
        "transform": {"cmd": ["sh", "-c", 'ls "$TUSK_PFS/clock" > "$TUSK_PFS/out/seen"']},
    }
    client.create_pipeline(cron)
    assert "tick_clock" in [r.name for r in client.list_repos()]
    stop = threading.Event()
    runner = threading.Thread(target=client.run_scheduler, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while sum(j.state == "success" for j in client.list_jobs("tick")) < 2:
            assert time.monotonic() < deadline, "cron did not tick twice"
            time.sleep(0.1)
    finally:
        stop.set()
        runner.join()
    ticks = client.list_files("tick_clock@master:/")
    assert len(ticks) == 1  # overwrite: only the latest tick is kept
    assert len(client.list_commits("tick_clock@master")) >= 2
    seen = client.get_file("tick@master:/seen").decode().split()
    assert len(seen) == 1 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", seen[0])


def test_job_timeout_fails_the_job(client: tusk.Client) -> None:
    client.put_files("in@master", [("/a", b"1"), ("/b", b"2")])
    client.create_pipeline(spec(cmd="sleep 30", job_timeout="1s"))
    started = time.monotonic()
    run(client)
    [job] = client.list_jobs("up")
    assert job.state == "failure" and "job_timeout" in job.reason
    assert time.monotonic() - started < 25  # the sleeping datums were killed, not awaited
    assert client.list_commits("up@master") == []


def test_empty_files_and_the_host_executor_records_the_image(client: tusk.Client) -> None:
    client.put_file("in@master:/big", b"x" * 5000)
    cmd = 'wc -c < "$TUSK_PFS/in/big" > "$TUSK_PFS/out/size"'
    client.create_pipeline(
        {
            "pipeline": {"name": "up"},
            "input": {"pfs": {"repo": "in", "glob": "/*", "empty_files": True}},
            "transform": {"cmd": ["sh", "-c", cmd], "image": "example/tool:1.2"},
        }
    )
    client.run_scheduler(once=True, executor="host")  # the image is not run: no pull here
    assert client.get_file("up@master:/size").strip() == b"0"  # names only, no content
    job = client.list_jobs("up")[0]
    assert job.state == "success"
    notes = [line.line for line in client.logs("up", job.id) if line.stream == "system"]
    assert any("example/tool:1.2" in n and "--executor host" in n for n in notes)


def test_an_image_that_cannot_be_found_fails_the_job_naming_it(
    client: tusk.Client, tmp_path: Path
) -> None:
    client.put_file("in@master:/a", b"a")
    missing = f"oci:{tmp_path}/no-such-layout:v1"
    client.create_pipeline(spec(transform={"cmd": ["true"], "image": missing}))
    run(client)
    [job] = client.list_jobs("up")
    assert job.state == "failure" and missing in job.reason and "not found" in job.reason
    assert client.list_commits("up@master") == []


JOIN_CMD = 'cat "$TUSK_PFS"/in/* "$TUSK_PFS"/labels/* > "$TUSK_PFS/out/$(ls "$TUSK_PFS/in")"'
# One output per group, named by the datum: the names of the files the group holds.
GROUP_CMD = (
    'ls "$TUSK_PFS"/in "$TUSK_PFS"/labels 2>/dev/null | grep . | grep -v : | tr -d "\\n" '
    '> "$TUSK_PFS/out/$PACH_DATUM_ID"'
)


def test_join_and_group_inputs_end_to_end(client: tusk.Client) -> None:
    client.create_repo("labels")
    client.put_files("in@master", [("/a.txt", b"A"), ("/b.txt", b"B"), ("/c.txt", b"C")])
    client.put_files("labels@master", [("/a.csv", b"1"), ("/b.csv", b"2"), ("/z.csv", b"9")])
    join = {
        "pipeline": {"name": "joined"},
        "input": {
            "join": [
                {"pfs": {"repo": "in", "glob": "/(*).txt", "join_on": "$1"}},
                {"pfs": {"repo": "labels", "glob": "/(*).csv", "join_on": "$1"}},
            ]
        },
        "transform": {"cmd": ["sh", "-c", JOIN_CMD]},
    }
    client.create_pipeline(join)
    group = {
        "pipeline": {"name": "grouped"},
        "input": {
            "group": [
                {"pfs": {"repo": "in", "glob": "/(*).txt", "group_by": "$1"}},
                {"pfs": {"repo": "labels", "glob": "/(*).csv", "group_by": "$1"}},
            ]
        },
        "transform": {"cmd": ["sh", "-c", GROUP_CMD]},
    }
    client.create_pipeline(group)
    run(client)
    assert files(client, "joined@master") == {"/a.txt": b"A1", "/b.txt": b"B2"}
    grouped = sorted(files(client, "grouped@master").values())
    assert sorted(grouped) == sorted([b"a.txta.csv", b"b.txtb.csv", b"c.txt", b"z.csv"])


def test_wait_commit_blocks_until_the_job_is_done(client: tusk.Client) -> None:
    client.create_pipeline(spec(cmd='sleep 1; cp "$TUSK_PFS"/in/* "$TUSK_PFS/out/"'))
    client.put_file("in@master:/a", b"a")
    assert client.inspect_commit("up@master").state == "open"
    stop = threading.Event()
    runner = threading.Thread(target=client.run_scheduler, args=(stop,))
    runner.start()
    try:
        done = client.wait_commit("up@master", timeout=30)
    finally:
        stop.set()
        runner.join()
    assert done.finished and client.get_file("up@master:/a") == b"a"
    assert client.list_jobs("up")[0].state == "success"


def test_input_pinned_to_a_commit(client: tusk.Client) -> None:
    first = client.put_file("in@master:/a.txt", b"first\n").commit.id
    client.put_file("in@master:/a.txt", b"second\n")
    pinned = spec() | {"input": {"pfs": {"repo": "in", "glob": "/*", "commit": first}}}
    client.create_pipeline(pinned)
    run(client)
    assert client.get_file("up@master:/a.txt") == b"FIRST\n"
    with pytest.raises(InvalidSpec, match=r"input\.pfs\.commit"):
        client.create_pipeline(
            spec(name="bad") | {"input": {"pfs": {"repo": "in", "glob": "/*", "commit": "f" * 32}}}
        )


def test_reprocess_with_an_explicit_salt_and_a_bad_egress_refused(client: tusk.Client) -> None:
    client.put_files("in@master", [("/a", b"a"), ("/b", b"b")])
    client.create_pipeline(spec(salt="s1"))
    run(client)
    client.update_pipeline(spec(salt="s1"), reprocess=True)
    run(client)
    assert client.list_jobs("up")[0].processed == 2
    client.update_pipeline(spec(salt="s1"))  # same salt, no --reprocess: all skipped
    run(client)
    assert (client.list_jobs("up")[0].processed, client.list_jobs("up")[0].skipped) == (0, 2)
    sql = {"url": "postgresql://u@h/db", "file_format": {"type": "CSV"}}  # no password secret
    with pytest.raises(InvalidSpec, match="egress"):
        client.create_pipeline(spec(name="out", egress={"sql_database": sql}))
    assert "out" not in [r.name for r in client.list_repos()]
