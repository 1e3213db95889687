"""What a process killed in the middle of a gated merge leaves (issue 22), and ``tusk gc``
removing it (tusk.pfs.holds): a check's candidate commit and its copy of the data, the
temporary branches and jobs of ``merge --run-pipelines``. A live process's are kept.

Real ``tusk merge`` processes on an embedded home, killed with SIGKILL while their check or
jobs run (each sleeps, so the moment is certain).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tusk import Client

TUSK = [sys.executable, "-m", "tusk.cli.main"]


def tusk(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TUSK, "--home", str(home), *args], capture_output=True, text=True)


def until(what: Callable[[], bool], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not what():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def kill(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def start(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*TUSK, "--home", str(home), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip


def open_candidates(c: Client, repo: str) -> list[str]:
    return [x.id for x in c.list_commits(repo) if x.branch is None and not x.finished]


@pytest.fixture
def gated(tmp_path: Path) -> tuple[Path, str]:
    """A home whose master a slow check gates on merge, and a feature branch to merge."""
    home = tmp_path / "home"
    with Client(home) as c:
        c.create_repo("d")
        c.put_file("d@master:/a", b"a")
        c.create_branch("d@feature", head="master")
        c.put_file("d@feature:/b", b"b")
        c.apply([{"kind": "check", "name": "slow", "repo": "d", "branch": "master",
                  "on": ["merge"], "cmd": ["sleep", "60"]}])  # fmt: skip
        head = c.inspect_branch("d@master").head
    assert head is not None
    return home, head


def test_a_killed_merge_leaves_a_candidate_that_gc_removes_once_its_process_is_gone(
    gated: tuple[Path, str],
) -> None:
    home, head = gated
    proc = start(home, "merge", "d@feature", "--into", "master")
    try:
        with Client(home) as c:
            until(lambda: bool(open_candidates(c, "d")))
            (candidate,) = open_candidates(c, "d")
            roots = [Path(f"/dev/shm/tusk-checks-{os.getuid()}"), home / "checks"]

            def scratch() -> list[Path]:  # the check's copy, in its process's folder
                return [p for root in roots for p in root.glob(f"*-{proc.pid}")]

            until(lambda: bool(scratch()))
            folders = scratch()
            # The merge still runs: gc keeps what it holds.
            report = c.gc(grace=0)
            assert report.leftovers_removed == 0
            assert open_candidates(c, "d") == [candidate]
            assert all(p.exists() for p in folders)
    finally:
        kill(proc)
    assert re.search(r"Leftovers:\s+1 ", tusk(home, "gc", "--grace", "0", "--dry-run").stdout)
    with Client(home) as c:
        assert open_candidates(c, "d") == [candidate]  # a dry run removes nothing
        report = c.gc(grace=0)
        assert report.leftovers_removed == 1
        assert report.scratch_deleted >= 1
        assert open_candidates(c, "d") == []
        assert not any(p.exists() for p in folders)
        assert c.inspect_branch("d@master").head == head
        assert c.fsck().ok
        assert c.gc(grace=0).leftovers_removed == 0  # nothing twice
        # The branch merges as usual once the check is quick.
        c.apply([{"kind": "check", "name": "slow", "repo": "d", "branch": "master",
                  "on": ["merge"], "cmd": ["true"]}])  # fmt: skip
        merged = c.merge("d@feature", into="master")
        assert merged.commit is not None
        assert c.get_file("d@master:/b") == b"b"


def test_a_killed_merge_with_its_pipelines_leaves_branches_and_a_job_that_gc_removes(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    with Client(home) as c:
        c.create_repo("d")
        c.put_file("d@master:/a", b"a")
        c.apply([{"pipeline": {"name": "slow"}, "input": {"pfs": {"repo": "d", "glob": "/*"}},
                  "transform": {"cmd": ["sh", "-c",
                                        "case $(ls /pfs/d) in b) sleep 60;; esac; "
                                        "cp -r /pfs/d/. /pfs/out/"]}}])  # fmt: skip
        c.wait_commit("slow@master", timeout=60)
        c.create_branch("d@feature", head="master")
        c.put_file("d@feature:/b", b"b")
        heads = {r: c.inspect_branch(f"{r}@master").head for r in ("d", "slow")}
    proc = start(home, "merge", "d@feature", "--into", "master", "--run-pipelines")

    def temporary(c: Client) -> list[str]:
        return [b for r in ("d", "slow") for b in c.inspect_repo(r).branches
                if b.startswith("merge-")]  # fmt: skip

    try:
        with Client(home) as c:
            until(lambda: len(temporary(c)) == 2 and any(
                j.state == "running" for j in c.list_jobs("slow")))  # fmt: skip
    finally:
        kill(proc)
    with Client(home) as c:
        assert c.gc(grace=0).leftovers_removed == 1
        assert temporary(c) == []
        jobs = c.list_jobs("slow")
        assert not [j for j in jobs if j.state not in ("success", "failure", "killed")]
        killed = [j for j in jobs if j.state == "killed"]
        assert len(killed) == 1 and "died" in killed[0].reason
        assert {r: c.inspect_branch(f"{r}@master").head for r in ("d", "slow")} == heads
        assert not [x for r in ("d", "slow") for x in c.list_commits(r) if not x.finished]
        assert c.fsck().ok


def test_tusk_up_removes_old_leftovers_of_dead_processes_by_itself(
    gated: tuple[Path, str],
) -> None:
    """``tusk up`` sweeps, each retention period, what dead processes held for longer than
    gc's default grace (an hour): here the period is a second and the hold is aged."""
    import sqlite3

    from gateway import start_gateway

    home, head = gated
    proc = start(home, "merge", "d@feature", "--into", "master")
    try:
        with Client(home) as c:
            until(lambda: bool(open_candidates(c, "d")))
    finally:
        kill(proc)
    with sqlite3.connect(home / "tusk.db") as db:
        db.execute("UPDATE holds SET created_at = created_at - 7200")
    gw = start_gateway(home, env={"TUSK_RETENTION_INTERVAL": "1"})
    try:
        with Client(home) as c:
            until(lambda: open_candidates(c, "d") == [], timeout=60)
            assert c.inspect_branch("d@master").head == head
    finally:
        gw.stop()
    assert any("leftover" in line for line in gw.log), gw.log[-10:]
