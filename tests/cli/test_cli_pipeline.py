"""Pipelines through the CLI: create/update/list/inspect/delete/stop/start/run pipeline,
jobs, datums, logs, lineage, ``wait commit-set`` and ``tusk up``.

Jobs run with ``tusk up --once`` in-process. Every test runs with ``TUSK_SANDBOX=none``
except those marked as using the default (auto) mode or bubblewrap.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from clihelpers import Tusk, Write

from tusk import Client

# Upper-cases every file of input "in"; works in both sandbox modes through $TUSK_PFS.
UPPER = (
    'for f in "$TUSK_PFS"/in/*; do echo "upper $(basename "$f")"; '
    'tr a-z A-Z < "$f" > "$TUSK_PFS/out/$(basename "$f")"; done'
)
# The same, prefixing each line with "v2 " and keeping the case.
PREFIX = (
    'for f in "$TUSK_PFS"/in/*; do echo "prefix $(basename "$f")"; '
    'sed "s/^/v2 /" < "$f" > "$TUSK_PFS/out/$(basename "$f")"; done'
)

BIN = Path(sys.executable).parent / "tusk"


@pytest.fixture(autouse=True)
def no_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUSK_SANDBOX", "none")


def spec(
    name: str = "up",
    cmd: str = UPPER,
    repo: str = "data",
    glob: str = "/*",
    input_name: str = "in",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": repo, "glob": glob, "name": input_name}},
        "transform": {"cmd": ["sh", "-c", cmd]},
        **extra,
    }


def spec_file(write: Write, data: dict[str, Any] | str, name: str = "spec.json") -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    return str(write(name, text))


def put(tusk: Tusk, write: Write, path: str, text: str, repo: str = "data") -> None:
    tusk("put", "file", f"{repo}@master:{path}", "-f", str(write(path.lstrip("/"), text)))


def with_data(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "data")
    put(tusk, write, "/a.txt", "hello\n")
    put(tusk, write, "/b.txt", "world\n")


def jobs_of(tusk: Tusk, pipeline: str) -> list[dict[str, Any]]:
    """The pipeline's jobs, oldest first."""
    return sorted(tusk.json("list", "job", "-p", pipeline), key=lambda j: j["created_at"])


def pps_state(tusk: Tusk) -> dict[str, Any]:
    """What a failed command must leave as it was: PFS state, pipelines and jobs."""
    return {
        "pfs": tusk.state(),
        "pipelines": tusk.json("list", "pipeline"),
        "jobs": tusk.json("list", "job"),
    }


def up_once(tusk: Tusk) -> str:
    """Run every waiting job to its end; returns what the scheduler said on stderr."""
    return tusk("up", "--once").stderr


@contextmanager
def scheduler(home: Path) -> Iterator[None]:
    """A scheduler in a thread (its own client), for tests that act while a job runs."""
    stop = threading.Event()
    client = Client(home)
    thread = threading.Thread(
        target=client.run_scheduler, args=(stop,), kwargs={"sandbox": "none"}, daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)
        client.close()
        assert not thread.is_alive(), "the scheduler did not stop"


def wait_for(check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def running_job(tusk: Tusk, pipeline: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        jobs = [j for j in jobs_of(tusk, pipeline) if j["state"] == "running"]
        return jobs[0] if jobs else None

    job: dict[str, Any] = wait_for(check)
    return job


def bwrap_works() -> bool:
    exe = shutil.which("bwrap")
    if exe is None:
        return False
    probe = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"]
    return subprocess.run(probe, capture_output=True, timeout=20).returncode == 0


# The whole path: create, run, read the output, jobs, datums, logs, lineage


def test_pipeline_end_to_end(tusk: Tusk, write: Write) -> None:
    with_data(tusk, write)
    created = tusk.json("create", "pipeline", "-f", spec_file(write, spec()))
    assert [p["name"] for p in created] == ["up"] and created[0]["version"] == 1

    [info] = tusk.json("list", "pipeline")
    assert info["name"] == "up" and info["version"] == 1 and info["state"] == "running"
    assert info["input"] == "in:/*" and info["output_branch"] == "master"
    table = tusk("list", "pipeline").lines
    assert table[0].split() == [
        "NAME",
        "VERSION",
        "STATE",
        "INPUT",
        "LAST",
        "JOB",
        "CREATED",
        "DESCRIPTION",
    ]
    assert table[1].split()[:4] == ["up", "1", "running", "in:/*"]
    assert "up" in [r["name"] for r in tusk.json("list", "repo")]  # the output repo

    said = up_once(tusk)
    assert "sandbox: none" in said.splitlines()[0]
    assert tusk("get", "file", "up@master:/a.txt").stdout == "HELLO\n"
    assert tusk("get", "file", "up@master:/b.txt").stdout == "WORLD\n"

    [job] = tusk.json("list", "job")
    assert job["pipeline"] == "up" and job["state"] == "success" and job["version"] == 1
    assert (job["datums_total"], job["processed"], job["skipped"], job["failed"]) == (2, 2, 0, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", job["id"])
    out_commit = tusk.json("inspect", "commit", "up@master")
    assert job["output_commit"] == out_commit["id"]
    data_head = tusk.json("inspect", "commit", "data@master")["id"]
    assert job["input_commits"] == [f"data@{data_head}"]
    assert tusk.json("list", "job", "--commit-set", job["id"]) == [job]
    assert tusk.json("list", "job", "--commit-set", "f" * 32) == []
    jobs_table = tusk("list", "job").lines
    assert jobs_table[0].split()[:4] == ["PIPELINE", "JOB", "VERSION", "STATE"]
    assert jobs_table[1].split()[:4] == ["up", job["id"], "1", "success"]

    address = f"up@{job['id']}"
    assert tusk.json("inspect", "job", address)["state"] == "success"
    assert tusk.json("inspect", "job", f"up@{job['id'][:8]}")["id"] == job["id"]
    fields = tusk("inspect", "job", address).stdout
    assert "Job:" in fields and address in fields and f"data@{data_head}" in fields

    datums = tusk.json("list", "datum", address)
    assert len(datums) == 2 and {d["state"] for d in datums} == {"success"}
    by_file = {d["files"][0]["path"]: d for d in datums}
    assert set(by_file) == {"/a.txt", "/b.txt"}
    a = by_file["/a.txt"]
    assert a["attempts"] == 1 and a["exit_code"] == 0 and a["output_files"] == 1
    rows = tusk("list", "datum", address).lines
    assert rows[0].split() == ["DATUM", "STATE", "ATTEMPTS", "FILES", "ERROR"]
    assert any(r.split()[:4] == [a["id"][:12], "success", "1", "data:/a.txt"] for r in rows)
    assert tusk.json("inspect", "datum", address, a["id"][:10]) == a
    assert "data:/a.txt" in tusk("inspect", "datum", address, a["id"]).stdout

    logs = tusk("logs", "--pipeline", "up").lines
    assert f"[{a['id'][:12]}] upper a.txt" in logs
    assert f"[{by_file['/b.txt']['id'][:12]}] upper b.txt" in logs
    assert tusk("logs", "-p", "up", "--job", job["id"]).lines == logs
    assert tusk("logs", "--job", address).lines == logs  # PIPELINE@JOB names the pipeline
    assert tusk("logs", "-p", "up", "--datum", a["id"][:12]).lines == [
        f"[{a['id'][:12]}] upper a.txt"
    ]
    as_json = tusk.json("logs", "-p", "up")
    assert {(x["datum"], x["line"]) for x in as_json} >= {(a["id"], "upper a.txt")}
    # --follow on a finished job prints everything and returns.
    assert tusk("logs", "-p", "up", "-j", job["id"], "-f").lines == logs

    step = tusk.json("lineage", "up@master:/a.txt")
    assert (step["repo"], step["path"], step["pipeline"]) == ("up", "/a.txt", "up")
    assert step["commit"] == out_commit["id"]
    assert step["job"] == job["id"] and step["datum"] == a["id"]
    assert step["pipeline_version"] == 1
    [source] = step["inputs"]
    assert (source["repo"], source["commit"], source["path"]) == ("data", data_head, "/a.txt")
    assert source["pipeline"] is None and source["inputs"] == []
    tree = tusk("lineage", "up@master:/a.txt").stdout
    assert f"job up@{job['id']}" in tree and f"datum {a['id'][:12]}" in tree
    assert f"data@{data_head}:/a.txt (original data)" in tree
    assert "pipeline up v1" in tree and "spec.json" in tree


def test_pipeline_from_stdin_and_yaml(tusk: Tusk, write: Write) -> None:
    with_data(tusk, write)
    yaml_spec = (
        "pipeline:\n  name: up\ninput:\n  pfs:\n    repo: data\n    glob: /*\n    name: in\n"
        f"transform:\n  cmd: [sh, -c, {json.dumps(UPPER)}]\n"
    )
    created = tusk.json("create", "pipeline", "-f", "-", input=yaml_spec)
    assert created[0]["name"] == "up"
    up_once(tusk)
    assert tusk("get", "file", "up@master:/b.txt").stdout == "WORLD\n"


def test_dry_run_prints_datums_and_creates_nothing(tusk: Tusk, write: Write) -> None:
    with_data(tusk, write)
    path = spec_file(write, spec())
    before = pps_state(tusk)
    [plan] = tusk.json("create", "pipeline", "-f", path, "--dry-run")
    assert plan["pipeline"] == "up"
    files = sorted(d["files"][0]["path"] for d in plan["datums"])
    assert files == ["/a.txt", "/b.txt"]
    lines = tusk("create", "pipeline", "-f", path, "--dry-run").lines
    assert lines[0].split() == ["PIPELINE", "DATUM", "FILES"]
    rows = {tuple(line.split()) for line in lines[1:]}
    assert rows == {("up", d["id"][:12], "data:" + d["files"][0]["path"]) for d in plan["datums"]}
    assert pps_state(tusk) == before
    assert tusk.json("list", "pipeline") == []
    tusk.fails("inspect", "repo", "up", code=3)

    # One datum with every file for the glob "/".
    [whole] = tusk.json("create", "pipeline", "-f", spec_file(write, spec(glob="/")), "--dry-run")
    [datum] = whole["datums"]
    assert sorted(f["path"] for f in datum["files"]) == ["/a.txt", "/b.txt"]
    assert (
        "data:/a.txt, data:/b.txt"
        in tusk("create", "pipeline", "-f", spec_file(write, spec(glob="/")), "--dry-run").stdout
    )
    assert pps_state(tusk) == before


def test_update_skips_unchanged_datums_unless_reprocess(tusk: Tusk, write: Write) -> None:
    with_data(tusk, write)
    tusk("create", "pipeline", "-f", spec_file(write, spec()))
    up_once(tusk)

    # New input data: only the new datum runs.
    put(tusk, write, "/c.txt", "again\n")
    up_once(tusk)
    second = jobs_of(tusk, "up")[-1]
    assert (second["processed"], second["skipped"], second["state"]) == (1, 2, "success")
    assert tusk("get", "file", "up@master:/c.txt").stdout == "AGAIN\n"

    # A new version without --reprocess: every datum is unchanged and skipped.
    updated = tusk.json("update", "pipeline", "-f", spec_file(write, spec(cmd=PREFIX)))
    assert updated[0]["version"] == 2
    up_once(tusk)
    third = jobs_of(tusk, "up")[-1]
    assert third["version"] == 2
    assert (third["processed"], third["skipped"], third["state"]) == (0, 3, "success")
    assert tusk("get", "file", "up@master:/a.txt").stdout == "HELLO\n"

    # --reprocess: every datum runs again under the new code.
    tusk("update", "pipeline", "-f", spec_file(write, spec(cmd=PREFIX)), "--reprocess")
    up_once(tusk)
    fourth = jobs_of(tusk, "up")[-1]
    assert fourth["version"] == 3
    assert (fourth["processed"], fourth["skipped"], fourth["state"]) == (3, 0, "success")
    assert tusk("get", "file", "up@master:/a.txt").stdout == "v2 hello\n"
    assert tusk("get", "file", "up@master:/c.txt").stdout == "v2 again\n"

    info = tusk.json("inspect", "pipeline", "up", "--history")
    assert info["version"] == 3 and [v["version"] for v in info["versions"]] == [1, 2, 3]
    salts = [v["salt"] for v in info["versions"]]
    assert salts[0] == salts[1] != salts[2]
    assert tusk.json("inspect", "pipeline", "up")["versions"] == []
    history = tusk("inspect", "pipeline", "up", "--history").lines
    header = next(i for i, line in enumerate(history) if line.startswith("VERSION"))
    assert [line.split()[0] for line in history[header + 1 :]] == ["1", "2", "3"]
    reprocess = [line.split()[-3] for line in history[header + 1 :]]  # ... REPROCESS spec PATH
    assert reprocess[1:] == ["no", "yes"]
    assert all(line.endswith("spec.json") for line in history[header + 1 :])


def test_stop_and_start_pipeline(tusk: Tusk, write: Write) -> None:
    with_data(tusk, write)
    tusk("create", "pipeline", "-f", spec_file(write, spec()))
    up_once(tusk)
    assert tusk.json("stop", "pipeline", "up")["state"] == "paused"
    assert tusk("stop", "pipeline", "up").stdout == ""
    assert tusk.json("inspect", "pipeline", "up")["state"] == "paused"

    put(tusk, write, "/c.txt", "later\n")
    up_once(tusk)  # returns: a paused pipeline's job waits
    assert jobs_of(tusk, "up")[0]["state"] == "success"
    assert all(j["state"] != "success" for j in jobs_of(tusk, "up")[1:])
    tusk.fails("get", "file", "up@master:/c.txt", code=3)

    assert tusk.json("start", "pipeline", "up")["state"] == "running"
    up_once(tusk)
    assert [j["state"] for j in jobs_of(tusk, "up")] == ["success", "success"]
    assert tusk("get", "file", "up@master:/c.txt").stdout == "LATER\n"


def test_run_pipeline_and_wait(tusk: Tusk, write: Write) -> None:
    with_data(tusk, write)
    tusk("create", "pipeline", "-f", spec_file(write, spec()))
    up_once(tusk)
    printed = tusk("run", "pipeline", "up").stdout.strip()
    m = re.fullmatch(r"up@([0-9a-f]{32})", printed)
    assert m, printed
    commit_set = m.group(1)
    up_once(tusk)
    done = tusk.json("wait", "job", printed, "--timeout", "30s")
    assert done["id"] == commit_set and done["state"] == "success"
    assert (done["processed"], done["skipped"]) == (0, 2)  # same data, same code
    assert "success" in tusk("wait", "job", printed).stdout

    jobs = tusk.json("wait", "commit-set", commit_set, "--timeout", "30")
    assert [(j["pipeline"], j["id"], j["state"]) for j in jobs] == [("up", commit_set, "success")]
    table = tusk("wait", "commit-set", commit_set).lines
    assert table[1].split()[:4] == ["up", commit_set, "1", "success"]

    commit = tusk.json("run", "pipeline", "up")
    assert commit["repo"] == "up" and commit["state"] == "open"
    up_once(tusk)
    assert tusk.json("wait", "commit-set", commit["commit_set"])[0]["state"] == "success"


def test_delete_pipeline(tusk: Tusk, write: Write) -> None:
    with_data(tusk, write)
    tusk("create", "pipeline", "-f", spec_file(write, spec()))
    tusk("create", "pipeline", "-f", spec_file(write, spec(name="kept"), "kept.json"))
    reader = spec(name="reader", repo="up", input_name="in")
    tusk("create", "pipeline", "-f", spec_file(write, reader, "reader.json"))
    up_once(tusk)
    assert tusk("get", "file", "reader@master:/a.txt").stdout == "HELLO\n"

    # up's output is reader's input: refused without --force.
    before = pps_state(tusk)
    assert "reader" in tusk.fails("delete", "pipeline", "up", code=4)
    assert pps_state(tusk) == before

    assert tusk.json("delete", "pipeline", "reader") == {"deleted": "reader"}
    tusk.fails("inspect", "repo", "reader", code=3)
    tusk.fails("inspect", "pipeline", "reader", code=3)
    assert tusk("delete", "pipeline", "up").stdout == ""
    assert sorted(p["name"] for p in tusk.json("list", "pipeline")) == ["kept"]
    tusk.fails("inspect", "repo", "up", code=3)

    tusk("delete", "pipeline", "kept", "--keep-repo")
    assert tusk.json("list", "pipeline") == []
    assert tusk("get", "file", "kept@master:/a.txt").stdout == "HELLO\n"
    assert tusk("get", "file", "data@master:/a.txt").stdout == "hello\n"


def test_delete_pipeline_force(tusk: Tusk, write: Write) -> None:
    with_data(tusk, write)
    tusk("create", "pipeline", "-f", spec_file(write, spec()))
    reader = spec(name="reader", repo="up")
    tusk("create", "pipeline", "-f", spec_file(write, reader, "reader.json"))
    tusk("delete", "pipeline", "up", "--force")
    assert [p["name"] for p in tusk.json("list", "pipeline")] == ["reader"]


def test_failed_job(tusk: Tusk, write: Write) -> None:
    with_data(tusk, write)
    failing = spec(name="bad", cmd='echo "boom on $(ls "$TUSK_PFS"/in)" >&2; exit 3')
    tusk("create", "pipeline", "-f", spec_file(write, failing))
    up_once(tusk)
    [job] = tusk.json("list", "job", "-p", "bad")
    assert job["state"] == "failure" and job["failed"] >= 1, job
    address = f"bad@{job['id']}"

    r = tusk("wait", "job", address, code=1)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: job {address} failed: "), r.stderr
    assert "failure" in r.stdout  # the job is still shown

    datums = tusk.json("list", "datum", address)
    failed = [d for d in datums if d["state"] == "failed"]
    assert failed and all(d["exit_code"] == 3 for d in failed)
    assert all("3" in d["error"] for d in failed)
    assert "boom on" in failed[0]["stderr_tail"]
    assert failed[0]["id"][:12] in tusk("list", "datum", address).stdout
    assert "boom on" in tusk("inspect", "datum", address, failed[0]["id"]).stdout
    assert any("boom on" in line for line in tusk("logs", "-p", "bad").lines)
    tusk.fails("get", "file", "bad@master:/a.txt", code=3)
    # The failed job's output commit is dropped; its commit set still names the job.
    msg = tusk.fails("wait", "commit-set", job["id"], "--timeout", "30", code=1)
    assert msg.startswith(f"job {address} failed")


def test_chain_of_pipelines_and_lineage(tusk: Tusk, write: Write) -> None:
    """Two specs in one YAML file, the second reading the first's output."""
    with_data(tusk, write)
    count = 'cat "$TUSK_PFS"/up/* | wc -l | tr -d " " > "$TUSK_PFS/out/count"'
    both = (
        json.dumps(spec())
        + "\n---\n"
        + json.dumps(spec(name="count", repo="up", glob="/", input_name="up", cmd=count))
    )
    created = tusk.json("create", "pipeline", "-f", spec_file(write, both, "both.yaml"))
    assert [p["name"] for p in created] == ["up", "count"]
    up_once(tusk)
    assert tusk("get", "file", "count@master:/count").stdout == "2\n"

    # count was created while up's first output commit was open: it waits for that commit
    # set instead of starting one of its own, so it has exactly the one job.
    [up_job] = tusk.json("list", "job", "-p", "up")
    count_jobs = {j["id"]: j for j in tusk.json("list", "job", "-p", "count")}
    assert list(count_jobs) == [up_job["id"]]  # the same commit set: the same job id
    assert all(j["state"] == "success" for j in count_jobs.values())
    by_set = tusk.json("wait", "commit-set", up_job["id"])
    assert sorted(j["pipeline"] for j in by_set) == ["count", "up"]

    step = tusk.json("lineage", "count@master:/count")
    assert step["pipeline"] == "count" and step["job"] in count_jobs
    [count_datum] = tusk.json("list", "datum", f"count@{step['job']}")
    assert step["datum"] == count_datum["id"]
    assert sorted(i["path"] for i in step["inputs"]) == ["/a.txt", "/b.txt"]
    for made in step["inputs"]:
        assert made["repo"] == "up" and made["pipeline"] == "up" and made["job"] == up_job["id"]
        [original] = made["inputs"]
        assert (original["repo"], original["path"], original["pipeline"]) == (
            "data",
            made["path"],
            None,
        )
    tree = tusk("lineage", "count@master:/count").stdout
    assert f"job count@{step['job']}" in tree and f"job up@{up_job['id']}" in tree
    assert tree.count("(original data)") == 2 and ":/a.txt" in tree

    assert tusk.json("lineage", "count@master:/count", "--depth", "0")["inputs"] == []
    shallow = tusk.json("lineage", "count@master:/count", "--depth", "1")
    assert all(i["pipeline"] == "up" and i["inputs"] == [] for i in shallow["inputs"])
    tusk.fails("lineage", "count@master:/nope", code=3)
    tusk.fails("lineage", "count@master", code=2)


# Commands acting while a job runs


def test_logs_follow_and_wait_timeout(tusk: Tusk, write: Write, home: Path) -> None:
    tusk("create", "repo", "data")
    put(tusk, write, "/a.txt", "x")
    slow = spec(name="slow", cmd="echo first; sleep 2; echo second")
    tusk("create", "pipeline", "-f", spec_file(write, slow))
    with scheduler(home):
        job = running_job(tusk, "slow")
        address = f"slow@{job['id']}"
        assert "still running" in tusk.fails("wait", "job", address, "--timeout", "0.1", code=5)
        tusk.fails("wait", "commit-set", job["id"], "--timeout", "0.1", code=5)
        lines = tusk("logs", "-p", "slow", "-j", job["id"], "--follow").lines
        assert [line.split("] ", 1)[1] for line in lines] == ["first", "second"]
        assert tusk.json("inspect", "job", address)["state"] == "success"
        follow_json = tusk("logs", "-j", address, "-f", "-o", "json").lines
        assert [json.loads(line)["line"] for line in follow_json] == ["first", "second"]


def test_stop_job(tusk: Tusk, write: Write, home: Path) -> None:
    tusk("create", "repo", "data")
    put(tusk, write, "/a.txt", "x")
    tusk("create", "pipeline", "-f", spec_file(write, spec(name="sleepy", cmd="sleep 60")))
    started = time.monotonic()
    with scheduler(home):
        job = running_job(tusk, "sleepy")
        address = f"sleepy@{job['id']}"
        stopped = tusk.json("stop", "job", address)
        assert stopped["state"] == "killed"
        assert "killed" in tusk.fails("wait", "job", address, code=1)
        assert "already killed" in tusk.fails("stop", "job", address, code=4)
    assert time.monotonic() - started < 50, "the stopped datum kept running"
    tusk.fails("inspect", "commit", "sleepy@master", code=3)  # its output commit was dropped


def test_restart_datum(tusk: Tusk, write: Write, home: Path, tmp_path: Path) -> None:
    """A datum stuck on its first try is stopped and run again; its try is not counted."""
    tusk("create", "repo", "data")
    put(tusk, write, "/a.txt", "x")
    mark = tmp_path / "tried"
    cmd = f'[ -e {mark} ] || {{ touch {mark}; sleep 60; }}; cp "$TUSK_PFS"/in/* "$TUSK_PFS/out/"'
    tusk("create", "pipeline", "-f", spec_file(write, spec(name="stuck", cmd=cmd)))
    started = time.monotonic()
    with scheduler(home):
        job = running_job(tusk, "stuck")
        address = f"stuck@{job['id']}"
        while not mark.exists():
            time.sleep(0.05)
        assert tusk.json("restart", "datum", address, "/nope")["restarted"] == []
        restarted = tusk.json("restart", "datum", address, "/a.txt")["restarted"]
        assert len(restarted) == 1
        assert tusk.json("wait", "job", address)["state"] == "success"
        assert "success" in tusk.fails("restart", "datum", address, code=4)
    assert time.monotonic() - started < 50, "the restarted datum was not stopped"
    datum = tusk.json("list", "datum", address)[0]
    assert datum["id"] == restarted[0] and datum["attempts"] == 1
    assert tusk("get", "file", "stuck@master:/a.txt").stdout == "x"
    tusk.fails("restart", "datum", "stuck", code=2)


# Bad input: one error line, the right exit code, nothing changed


def test_errors_change_nothing(tusk: Tusk, write: Write) -> None:
    with_data(tusk, write)
    tusk("create", "pipeline", "-f", spec_file(write, spec()))
    up_once(tusk)
    job_id = tusk.json("list", "job")[0]["id"]
    before = pps_state(tusk)

    unknown_field = spec(name="other")
    unknown_field["transform"]["colour"] = "blue"
    msg = tusk.fails("create", "pipeline", "-f", spec_file(write, unknown_field, "u.json"), code=2)
    assert "transform.colour" in msg and "u.json" in msg
    top_level = {**spec(name="other"), "speed": "fast"}
    assert "speed" in tusk.fails(
        "create", "pipeline", "-f", spec_file(write, top_level, "t.json"), code=2
    )
    assert "speed" in tusk.fails(
        "create", "pipeline", "-f", spec_file(write, top_level, "t.json"), "--dry-run", code=2
    )
    assert "nope" in tusk.fails(
        "create", "pipeline", "-f", spec_file(write, spec(name="other", repo="nope")), code=3
    )
    assert "already exists" in tusk.fails(
        "create", "pipeline", "-f", spec_file(write, spec()), code=4
    )
    assert "no such" in tusk.fails("create", "pipeline", "-f", "/no/such/spec.json", code=6)
    tusk.fails("update", "pipeline", "-f", "/no/such/spec.json", code=6)
    tusk.fails("update", "pipeline", "-f", spec_file(write, spec(name="ghost")), code=3)
    tusk.fails("create", "pipeline", "-f", spec_file(write, "{not json", "broken.json"), code=2)

    # Several specs: a bad one anywhere means none is created.
    second_bad = json.dumps(spec(name="first")) + "\n" + json.dumps(unknown_field)
    msg = tusk.fails("create", "pipeline", "-f", spec_file(write, second_bad, "two.json"), code=2)
    assert "spec 2 of 2" in msg and "colour" in msg
    second_exists = json.dumps(spec(name="first")) + "\n" + json.dumps(spec())
    tusk.fails("create", "pipeline", "-f", spec_file(write, second_exists, "dup.json"), code=4)
    twice = json.dumps(spec(name="first")) + "\n" + json.dumps(spec(name="first"))
    assert "twice" in tusk.fails(
        "create", "pipeline", "-f", spec_file(write, twice, "twice.json"), code=2
    )

    for args in (
        ("inspect", "pipeline", "ghost"),
        ("delete", "pipeline", "ghost"),
        ("stop", "pipeline", "ghost"),
        ("start", "pipeline", "ghost"),
        ("run", "pipeline", "ghost"),
        ("list", "job", "-p", "ghost"),
        ("logs", "-p", "ghost"),
        ("inspect", "job", f"ghost@{job_id}"),
        ("inspect", "job", "up@ffffffff"),
        ("stop", "job", "up@ffffffff"),
        ("wait", "job", "up@ffffffff"),
        ("list", "datum", "up@ffffffff"),
        ("inspect", "datum", "up@ffffffff", "abc"),
        ("inspect", "datum", f"up@{job_id}", "ffffffffffff"),
        ("logs", "-p", "up", "-j", "ffffffff"),
        ("wait", "commit-set", "f" * 32),
        ("lineage", "up@master:/nope.txt"),
    ):
        tusk.fails(*args, code=3)

    for args in (
        ("inspect", "job", "up@"),
        ("list", "datum", job_id),  # needs PIPELINE@JOB
        ("logs",),
        ("logs", "-p", "up", "-j", "data@" + job_id),
        ("lineage", "up@master"),
    ):
        tusk.fails(*args, code=2)
    assert "already success" in tusk.fails("stop", "job", f"up@{job_id}", code=4)
    assert pps_state(tusk) == before


def test_run_pipeline_without_data(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "data")
    tusk("create", "pipeline", "-f", spec_file(write, spec()))
    before = pps_state(tusk)
    assert "no input data" in tusk.fails("run", "pipeline", "up", code=2)
    assert pps_state(tusk) == before


# tusk up: sandbox modes and signals


def test_up_default_sandbox(tusk: Tusk, write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default mode (auto): bubblewrap where it works, else none; $TUSK_PFS works in both."""
    monkeypatch.delenv("TUSK_SANDBOX")
    with_data(tusk, write)
    tusk("create", "pipeline", "-f", spec_file(write, spec()))
    said = up_once(tusk)
    mode = "bwrap" if bwrap_works() else "none"
    assert f"sandbox: {mode}" in said.splitlines()[0]
    assert tusk("get", "file", "up@master:/a.txt").stdout == "HELLO\n"
    assert tusk.json("list", "job")[0]["state"] == "success"


@pytest.mark.skipif(
    not bwrap_works() and os.environ.get("CI") != "true",
    reason="bubblewrap does not work here (CI installs it, and there this test must run)",
)
def test_up_bwrap_maps_pfs(tusk: Tusk, write: Write) -> None:
    """Under bubblewrap, unchanged Pachyderm code reads /pfs/<input> and writes /pfs/out."""
    with_data(tusk, write)
    pachyderm_style = (
        "for f in /pfs/in/*; do tr a-z A-Z < $f > /pfs/out/$(basename $f); done; "
        "echo pfs is $TUSK_PFS; touch /pfs/in/x 2>/dev/null && echo writable || echo read-only"
    )
    tusk("create", "pipeline", "-f", spec_file(write, spec(cmd=pachyderm_style)))
    said = tusk("up", "--once", "--sandbox", "bwrap").stderr
    assert "sandbox: bwrap" in said.splitlines()[0]
    assert tusk("get", "file", "up@master:/b.txt").stdout == "WORLD\n"
    lines = {line.split("] ", 1)[1] for line in tusk("logs", "-p", "up").lines}
    assert lines == {"pfs is /pfs", "read-only"}


def test_up_json_output(tusk: Tusk, write: Write) -> None:
    with_data(tusk, write)
    tusk("create", "pipeline", "-f", spec_file(write, spec()))
    events = [json.loads(line) for line in tusk("up", "--once", "-o", "json").lines]
    assert "sandbox: none" in events[0]["message"]
    assert any("succeeded" in e["message"] for e in events)
    assert all(isinstance(e["ts"], float) for e in events)


def test_up_bad_sandbox(tusk: Tusk) -> None:
    r = tusk("up", "--once", "--sandbox", "docker", code=2)
    assert "docker" in r.stderr


@pytest.mark.skipif(
    not BIN.exists() and os.environ.get("CI") != "true", reason="the tusk script is not installed"
)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_up_stops_cleanly_on_signal(home: Path, signum: int) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TUSK_DEBUG", "TUSK_HOME")}
    env["TUSK_SANDBOX"] = "none"
    proc = subprocess.Popen(
        [str(BIN), "--home", str(home), "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline().decode()
        assert "scheduler running" in first and "sandbox: none" in first, first
        time.sleep(0.3)
        proc.send_signal(signum)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    text = err.decode()
    assert f"{signal.Signals(signum).name}: stopping" in text
    assert text.rstrip().endswith("scheduler stopped")
    assert "Traceback" not in text


def test_create_pipeline_from_a_url_and_stdin(
    tusk: Tusk, write: Write, http_dir: tuple[Path, str]
) -> None:
    with_data(tusk, write)
    root, base = http_dir
    (root / "up.yaml").write_text(json.dumps(spec()))
    [created] = tusk.json("create", "pipeline", "-f", f"{base}/up.yaml")
    assert created["name"] == "up"
    tusk("create", "pipeline", "-f", "-", input=json.dumps(spec(name="up2")))
    assert sorted(p["name"] for p in tusk.json("list", "pipeline")) == ["up", "up2"]
    before = pps_state(tusk)
    assert "nope.yaml" in tusk.fails("create", "pipeline", "-f", f"{base}/nope.yaml", code=6)
    assert pps_state(tusk) == before
