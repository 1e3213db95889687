"""Workers that reach Tusk through its REST API only (``tusk worker --address``, issue 14).

One real ``tusk up --executor workers`` for the module (a coordinator: it starts and finishes
jobs, runs no datum), leases of 2 s. Each worker is a ``tusk worker`` process with no store
setting, another ``TUSK_HOME`` and another working directory: all it knows is the address.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from imagekit import user_container

import tusk
from gateway import Gateway, start_gateway
from tusk.polling import poll_until
from tusk.pps.executor import bwrap_works
from tusk.pps.handoff import HANDOFF_LOOP

API = "/api/v1"
IMAGE_TOOLS = bool(
    shutil.which("skopeo") and shutil.which("umoci") and os.path.exists("/bin/busybox")
)
UPPER = 'for f in "$TUSK_PFS"/in/*; do tr a-z A-Z < "$f" > "$TUSK_PFS/out/$(basename "$f")"; done'
# The first attempt notes its pid and hangs (its worker is killed); the next one copies.
SLOW = (
    'if [ ! -e "$MARK" ]; then echo $$ > "$MARK.part"; mv "$MARK.part" "$MARK"; sleep 60; fi; '
    'cp "$TUSK_PFS"/in/* "$TUSK_PFS/out/"'
)


def spec(name: str, repo: str, script: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": repo, "glob": "/*", "name": "in"}},
        "transform": {"cmd": ["sh", "-c", script], "env": env or {}},
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("remote-worker") / "home"
    gw = start_gateway(home, "--executor", "workers", "--grpc-port", "0",
                       env={"TUSK_LEASE_SECONDS": "2"})  # fmt: skip
    yield gw
    gw.stop()


def worker(
    gw: Gateway, tmp: Path, pipeline: str, token: str | None = None, wait: bool = True
) -> Any:
    """``tusk worker --address URL --pipeline P --once`` knowing nothing but the address."""
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env.update(TUSK_HOME=str(elsewhere / "home"), TUSK_CONFIG=str(elsewhere / "none.yaml"),
               TUSK_SANDBOX="none", TUSK_SCRATCH=str(elsewhere / "scratch"))  # fmt: skip
    if token:
        env["TUSK_TOKEN"] = token
    argv = [sys.executable, "-m", "tusk.cli.main", "--address", gw.api, "worker",
            "--pipeline", pipeline, "--once"]  # fmt: skip
    if not wait:
        return subprocess.Popen(argv, cwd=elsewhere, env=env, stderr=subprocess.PIPE, text=True)
    done = subprocess.run(argv, cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert not (elsewhere / "home").exists()  # it opened no store
    return done


def job_of(c: tusk.Client, pipeline: str, state: str | None = None) -> tusk.JobInfo:
    def look() -> tuple[bool, Any]:
        jobs = c.list_jobs(pipeline)
        ok = bool(jobs) and (jobs[0].done if state is None else jobs[0].state == state)
        return ok, jobs[0] if jobs else None

    return poll_until(look, 60, lambda j: f"job of {pipeline}: {j}")


def local_run(tmp: Path) -> tuple[dict[str, bytes], tusk.LineageStep]:
    """The same pipeline on the same data with the local executor, for comparison."""
    with tusk.Client(tmp / "local") as c:
        c.create_repo("words")
        c.put_files("words@master", [("/a.txt", b"alpha"), ("/b.txt", b"beta")])
        c.create_pipeline(spec("up", "words", UPPER))
        c.run_scheduler(once=True, sandbox="none")
        assert c.list_jobs("up")[0].state == "success"
        files = {f.path: c.get_file(f"up@master:{f.path}") for f in c.list_files("up@master:/")}
        return files, c.lineage("up@master:/a.txt")


def shape(step: tusk.LineageStep) -> Any:
    """Lineage without the ids that differ between two homes (commits, jobs)."""
    return (step.repo, step.path, step.pipeline, step.datum, step.spec_hash,
            [shape(s) for s in step.inputs])  # fmt: skip


def test_a_remote_worker_runs_a_job_as_the_local_executor_does(
    server: Gateway, tmp_path: Path
) -> None:
    expected_files, expected_lineage = local_run(tmp_path)
    with tusk.Client(address=server.api) as c:
        c.create_repo("words")
        c.put_files("words@master", [("/a.txt", b"alpha"), ("/b.txt", b"beta")])
        c.create_pipeline(spec("up", "words", UPPER))
        job_of(c, "up", "running")
        done = worker(server, tmp_path, "up")
        assert done.returncode == 0, done.stderr
        assert "; sandbox: none" in done.stderr  # the one it chose here (TUSK_SANDBOX=none)
        job = job_of(c, "up")
        assert job.state == "success", job.reason
        files = {f.path: c.get_file(f"up@master:{f.path}") for f in c.list_files("up@master:/")}
        assert files == expected_files == {"/a.txt": b"ALPHA", "/b.txt": b"BETA"}
        assert shape(c.lineage("up@master:/a.txt")) == shape(expected_lineage)
        datums = c.list_datums(f"up@{job.id}")
        assert sorted((d.state, d.attempts) for d in datums) == [("success", 1)] * 2


@pytest.mark.skipif(
    not (IMAGE_TOOLS and bwrap_works()) and os.environ.get("CI") != "true",
    reason="skopeo, umoci, busybox-static or a working bubblewrap is missing",
)
def test_a_kubernetes_worker_pod_played_whole(server: Gateway, tmp_path: Path) -> None:
    """The pod `tusk deploy kubernetes` writes, on this machine: the worker container knows
    only the address (`--address`, `--handoff`, `--pfs-mount`), the user container runs the
    handoff loop with the copied busybox in an image's rootfs, and the spec gives no cmd, so
    the image's Entrypoint + Cmd (the loop's arguments) run."""
    entrypoint = ["sh", "-c", 'for f in /pfs/in/*; do rev < "$f" > "/pfs/out/${f##*/}"; done']
    argv = ["/tusk-bin/busybox", "sh", "-c", HANDOFF_LOOP, "/tusk-bin/busybox", *entrypoint]
    pfs, handoff, user = user_container(tmp_path / "pod", argv)
    try:
        with tusk.Client(address=server.api) as c:
            c.create_repo("lines")
            c.put_files("lines@master", [("/a.txt", b"abc\n"), ("/b.txt", b"xyz\n")])
            c.create_pipeline({
                "pipeline": {"name": "rev"},
                "input": {"pfs": {"repo": "lines", "glob": "/*", "name": "in"}},
                "transform": {"image": "registry.example/rev:1"},  # the pod's; not pulled here
            })  # fmt: skip
            job_of(c, "rev", "running")
            elsewhere = tmp_path / "elsewhere"
            elsewhere.mkdir()
            env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
            env.update(TUSK_ADDRESS=server.api, TUSK_HOME=str(elsewhere / "home"),
                       TUSK_CONFIG=str(elsewhere / "none.yaml"))  # fmt: skip
            done = subprocess.run(
                [sys.executable, "-m", "tusk.cli.main", "worker", "--pipeline", "rev",
                 "--handoff", str(handoff), "--pfs-mount", str(pfs), "--once"],
                cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert not (elsewhere / "home").exists()  # it opened no store
            job = job_of(c, "rev")
            assert job.state == "success", job.reason
            assert c.get_file("rev@master:/a.txt") == b"cba\n"
            assert c.get_file("rev@master:/b.txt") == b"zyx\n"
            assert user.wait(10) == 0  # the worker told the loop to end: the pod completes
    finally:
        if user.poll() is None:
            user.kill()
            user.wait()


def test_bad_calls_are_refused_and_change_nothing(server: Gateway) -> None:
    with tusk.Client(address=server.api) as c, httpx.Client(base_url=server.api + API) as http:
        job = c.list_jobs("up")[0]
        datum = c.list_datums(f"up@{job.id}")[0]
        before = [(d.id, d.state, d.attempts) for d in c.list_datums(f"up@{job.id}")]
        claim = http.post("/pipelines/nosuch/datums/claim", json={"worker": "w"})
        assert claim.status_code == 404, claim.text
        assert "nosuch" in claim.json()["error"]["message"]
        bad = http.post("/pipelines/up/datums/claim", json={"worker": "a b"})
        assert bad.status_code == 400, bad.text
        body = {"lease": "remote:w:1", "datums": [datum.id]}
        renew = http.post(f"/pipelines/up/jobs/{job.id}/renew", json=body)
        assert renew.status_code == 409, renew.text  # the job is done
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = json.dumps({"ok": True}).encode()
            info = tarfile.TarInfo("outcome.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        url = f"/pipelines/up/jobs/{job.id}/datums/{datum.id}/finish"
        finish = http.post(url, params={"lease": "remote:w:1"}, content=buf.getvalue())
        assert finish.status_code == 409, finish.text
        assert len(finish.json()["error"]["message"].splitlines()) == 1
        assert [(d.id, d.state, d.attempts) for d in c.list_datums(f"up@{job.id}")] == before


def test_a_killed_workers_datum_is_redone_by_another(server: Gateway, tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    with tusk.Client(address=server.api) as c:
        c.create_repo("slowin")
        c.put_file("slowin@master:/x.txt", b"x")
        c.create_pipeline(spec("slow", "slowin", SLOW, {"MARK": str(mark)}))
        job_of(c, "slow", "running")
        first = worker(server, tmp_path / "one", "slow", wait=False)
        try:
            poll_until(lambda: (mark.exists(), None), 60, lambda _: "the datum never started")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        hung = int(mark.read_text())
        os.killpg(hung, signal.SIGKILL)  # what a dead worker's datum left running
        done = worker(server, tmp_path / "two", "slow")
        assert done.returncode == 0, done.stderr
        job = job_of(c, "slow")
        assert job.state == "success", job.reason
        assert c.get_file("slow@master:/x.txt") == b"x"
        assert [(d.state, d.attempts) for d in c.list_datums(f"slow@{job.id}")] == [("success", 2)]


def test_with_auth_on_only_a_worker_role_may_run_datums(server: Gateway, tmp_path: Path) -> None:
    http = httpx.Client(base_url=server.api + API, timeout=30)
    root = http.post("/auth/activate").json()["token"]
    with tusk.Client(address=server.api, token=root) as c:
        c.create_repo("secret")
        c.put_file("secret@master:/s.txt", b"s")
        c.create_pipeline(spec("guarded", "secret", UPPER))
        job = job_of(c, "guarded", "running")

        def token(principal: str) -> str:
            made = http.post("/auth/tokens", json={"principal": principal},
                             headers={"Authorization": f"Bearer {root}"})  # fmt: skip
            assert made.status_code == 201, made.text
            return str(made.json()["token"])

        nobody = token("user:nobody")
        robot = token("robot:worker")
        roles = {"principal": "robot:worker", "roles": ["pipelineWorker"]}
        admin = {"Authorization": f"Bearer {root}"}
        put = http.put("/auth/cluster/roles", json=roles, headers=admin)
        assert put.status_code == 200, put.text
        before = [(d.state, d.attempts) for d in c.list_datums(f"guarded@{job.id}")]
        # 401 (exit 8) without a token, 403 (exit 9) for one without the role
        refusals = (
            (None, 8, "needs a token"),
            (nobody, 9, "user:nobody may not"),
            (nobody, 9, "(pipelineWorker or clusterAdmin)"),  # the roles that would do
        )
        for who, code, said in refusals:
            refused = worker(server, tmp_path, "guarded", token=who)
            assert refused.returncode == code, refused.stderr
            assert said in refused.stderr, refused.stderr
            assert [(d.state, d.attempts) for d in c.list_datums(f"guarded@{job.id}")] == before
        done = worker(server, tmp_path, "guarded", token=robot)
        assert done.returncode == 0, done.stderr
        job = job_of(c, "guarded")
        assert job.state == "success", job.reason
        assert c.get_file("guarded@master:/s.txt") == b"S"
    http.close()
