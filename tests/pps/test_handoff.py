"""Datums handed to another container (Tusk's worker on Kubernetes, ``tusk.pps.handoff``).

A pod is played on one machine: ``tusk up --executor workers`` (a coordinator that runs no
datum), ``tusk worker --pipeline p --handoff DIR --pfs-mount PFS --once`` (the worker container)
and the user container: busybox's ``sh`` running ``HANDOFF_LOOP`` under bubblewrap in a busybox
image's rootfs, with PFS bound at ``/pfs`` and DIR at ``/tusk``, as the pod's two emptyDir
volumes are; the image's ``/bin/sh`` runs it, or (as ``tusk deploy kubernetes`` writes the pod)
Debian's busybox-static copied to ``/tusk-bin``. Skips here without skopeo, umoci,
busybox-static or bubblewrap; fails in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from imagekit import user_container

import tusk
from tusk.polling import poll_until
from tusk.pps.executor import bwrap_works
from tusk.pps.handoff import HANDOFF_LOOP

CI = os.environ.get("CI") == "true"
READY = bool(shutil.which("skopeo") and shutil.which("umoci") and os.path.exists("/bin/busybox"))
pytestmark = pytest.mark.skipif(
    not (READY and bwrap_works()) and not CI,
    reason="skopeo, umoci, busybox-static or a working bubblewrap is missing",
)

UPPER = 'for f in /pfs/in/*; do tr a-z A-Z < "$f" > "/pfs/out/$(basename "$f")"; done; echo "$FOO"'


# How the user container runs the loop: with the image's /bin/sh, or as tusk deploy kubernetes
# writes it, with Debian's static busybox that an init container copied into /tusk-bin.
SHELLS = {
    "image-sh": ["/bin/sh", "-c", HANDOFF_LOOP],
    "copied-busybox": ["/tusk-bin/busybox", "sh", "-c", HANDOFF_LOOP, "/tusk-bin/busybox"],
}


def need_tools() -> None:
    if not READY:
        pytest.fail("skopeo, umoci and busybox-static are needed (./dev.sh installs them)")


@pytest.fixture(params=sorted(SHELLS))
def pod(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Path, Path, subprocess.Popen[bytes]]]:
    """The shared volumes and the user container (the loop in a busybox rootfs)."""
    need_tools()
    pfs, handoff, user = user_container(tmp_path, SHELLS[request.param])
    yield pfs, handoff, user
    if user.poll() is None:
        user.kill()
        user.wait()


def running(c: tusk.Client) -> None:
    poll_until(lambda: ([j.state for j in c.list_jobs("p")] == ["running"], None), 30,
               lambda _: "the coordinator did not start the job")  # fmt: skip


def finished(c: tusk.Client) -> tusk.JobInfo:
    return poll_until(lambda: ((j := c.list_jobs("p")[0]).done, j), 30,
                      lambda j: f"job still {j.state}")  # fmt: skip


def worker_cli(home: Path, handoff: Path, pfs: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    return subprocess.run(
        [sys.executable, "-m", "tusk.cli.main", "--home", str(home), "worker",
         "--pipeline", "p", "--handoff", str(handoff), "--pfs-mount", str(pfs), "--once"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def run_job(c: tusk.Client, home: Path, handoff: Path, pfs: Path) -> tusk.JobInfo:
    """Pipeline p's job, run as in a pod: a coordinator (``--executor workers``) in a thread
    here, one ``tusk worker --handoff --once`` process; the finished job."""
    stop = threading.Event()
    coordinator = threading.Thread(
        target=c.run_scheduler, kwargs={"stop": stop, "executor": "workers"}, daemon=True
    )
    coordinator.start()
    try:
        running(c)
        done = worker_cli(home, handoff, pfs)
        assert done.returncode == 0, done.stderr
        return finished(c)
    finally:
        stop.set()
        coordinator.join(30)


def test_a_worker_hands_datums_to_the_user_container(
    tmp_path: Path, pod: tuple[Path, Path, subprocess.Popen[bytes]]
) -> None:
    pfs, handoff, user = pod
    home = tmp_path / "home"
    with tusk.Client(home) as c:
        c.create_repo("in")
        c.put_files("in@master", [("/a.txt", b"alpha"), ("/b.txt", b"beta")])
        c.create_repo("other")
        c.put_file("other@master:/x", b"x")
        c.create_pipeline(
            {
                "pipeline": {"name": "p"},
                "input": {"pfs": {"repo": "in", "glob": "/*"}},
                "transform": {"image": "busybox:1.36", "cmd": ["sh", "-c", UPPER],
                              "env": {"FOO": "it's here"}},
            }
        )  # fmt: skip
        c.create_pipeline(  # another pipeline: this worker leaves it alone
            {
                "pipeline": {"name": "q"},
                "input": {"pfs": {"repo": "other", "glob": "/*"}},
                "transform": {"cmd": ["true"]},
            }
        )
        job = run_job(c, home, handoff, pfs)
        assert job.state == "success", job.reason
        assert c.get_file("p@master:/a.txt") == b"ALPHA"
        assert c.get_file("p@master:/b.txt") == b"BETA"
        assert "it's here" in [x.line for x in c.logs("p", job.id) if x.stream == "stdout"]
        assert c.list_jobs("q")[0].state == "running"  # the coordinator ran no datum of it
        assert user.wait(10) == 0  # the worker told the loop to end: the pod completes


def test_a_failing_or_missing_command_is_reported_as_on_the_host(
    tmp_path: Path, pod: tuple[Path, Path, subprocess.Popen[bytes]]
) -> None:
    pfs, handoff, _user = pod
    home = tmp_path / "home"
    with tusk.Client(home) as c:
        c.create_repo("in")
        c.put_file("in@master:/a", b"a")
        c.create_pipeline(
            {
                "pipeline": {"name": "p"},
                "input": {"pfs": {"repo": "in", "glob": "/*"}},
                "transform": {"image": "busybox:1.36", "cmd": ["python3", "main.py"]},
                "datum_tries": 1,
            }
        )
        job = run_job(c, home, handoff, pfs)
        assert job.state == "failure"
        [datum] = c.list_datums(f"p@{job.id}")
        assert datum.error == "python3: not found in the user container's image"


def test_a_spec_without_cmd_runs_the_images_entrypoint_and_cmd(tmp_path: Path) -> None:
    """No transform.cmd: the loop runs its own arguments, which `tusk deploy kubernetes`
    writes from the image's Entrypoint + Cmd (here sh -c UPPER, as an image would give)."""
    need_tools()
    entrypoint = ["sh", "-c", UPPER]
    pfs, handoff, user = user_container(tmp_path, [*SHELLS["copied-busybox"], *entrypoint])
    home = tmp_path / "home"
    try:
        with tusk.Client(home) as c:
            c.create_repo("in")
            c.put_file("in@master:/a.txt", b"alpha")
            c.create_pipeline(
                {
                    "pipeline": {"name": "p"},
                    "input": {"pfs": {"repo": "in", "glob": "/*"}},
                    "transform": {"image": "busybox:1.36", "env": {"FOO": "from env"}},
                }
            )
            job = run_job(c, home, handoff, pfs)
            assert job.state == "success", job.reason
            assert c.get_file("p@master:/a.txt") == b"ALPHA"
            assert "from env" in [x.line for x in c.logs("p", job.id) if x.stream == "stdout"]
    finally:
        if user.poll() is None:
            user.kill()
            user.wait()
