"""Workers and schedulers that die: leases bring their datums back, nothing lands twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tusk

SCHEDULER = "import sys, tusk; tusk.Client(sys.argv[1]).run_scheduler(once=sys.argv[2] == 'once')"

# Each datum notes that it started (outside Tusk, for the test to see), works for a while,
# then writes one line per input file.
SLOW = (
    'for f in "$TUSK_PFS"/in/*; do n=$(basename "$f"); touch "$MARKS/$n.$$"; sleep 1.5; '
    'echo "$(cat "$f")-done" >> "$TUSK_PFS/out/$n"; done'
)


def _spec(parallel: int = 2) -> dict:
    return {
        "pipeline": {"name": "slow"},
        "input": {"pfs": {"repo": "in", "glob": "/*", "name": "in"}},
        "transform": {"cmd": ["sh", "-c", SLOW], "env": {}},
        "parallelism_spec": {"constant": parallel},
        "datum_tries": 1,
    }


def _start(home: Path, marks: Path, mode: str = "forever") -> subprocess.Popen[bytes]:
    env = dict(os.environ, TUSK_SANDBOX="none", MARKS=str(marks))
    return subprocess.Popen(
        [sys.executable, "-c", SCHEDULER, str(home), mode],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    home, marks = tmp_path / "home", tmp_path / "marks"
    marks.mkdir()
    data = {f"/f{i}": f"v{i}".encode() for i in range(6)}
    with tusk.Client(home) as c:
        c.create_repo("in")
        c.put_files("in@master", list(data.items()))
        c.create_pipeline(_spec())
    return home, marks, data


def _check_output(home: Path, data: dict[str, bytes]) -> None:
    with tusk.Client(home) as c:
        [job] = c.list_jobs("slow")
        assert job.state == "success", job.reason
        assert (job.processed, job.datums_total) == (6, 6)
        for path, content in data.items():
            # Exactly one line: no datum's output landed twice.
            assert c.get_file(f"slow@master:{path}") == content + b"-done\n"
        assert c.fsck().ok


def test_sigkill_mid_datum_reruns_its_datums(setup: tuple[Path, Path, dict[str, bytes]]) -> None:
    home, marks, data = setup
    proc = _start(home, marks)
    _wait_for(lambda: len(list(marks.iterdir())) >= 2)  # two datums are running
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with tusk.Client(home) as c:
        [job] = c.list_jobs("slow")
        assert job.state == "running"
        assert c.list_commits("slow@master")[0].state == "open"
    started_before = len(list(marks.iterdir()))
    # The datum processes died with their worker (no orphan keeps writing).
    time.sleep(2)
    assert len(list(marks.iterdir())) == started_before
    again = _start(home, marks, "once")
    assert again.wait(timeout=60) == 0, again.stderr.read() if again.stderr else ""
    _check_output(home, data)


def test_sigterm_then_restart(setup: tuple[Path, Path, dict[str, bytes]]) -> None:
    home, marks, data = setup
    proc = subprocess.Popen(
        [sys.executable, "-m", "tusk.cli.main", "--home", str(home), "up"],
        env=dict(os.environ, TUSK_SANDBOX="none", MARKS=str(marks)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait_for(lambda: len(list(marks.iterdir())) >= 2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    again = _start(home, marks, "once")
    assert again.wait(timeout=60) == 0
    _check_output(home, data)


def test_two_schedulers_share_one_job(setup: tuple[Path, Path, dict[str, bytes]]) -> None:
    home, marks, data = setup
    first, second = _start(home, marks, "once"), _start(home, marks, "once")
    assert first.wait(timeout=60) == 0 and second.wait(timeout=60) == 0
    _check_output(home, data)
    # Every datum ran once: one start mark per input file.
    assert len(list(marks.iterdir())) == len(data)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_a_worker_process_shares_the_datums(tmp_path: Path, engine: str) -> None:
    """``role="worker"`` (tusk worker) runs datums of jobs another scheduler manages; on
    PostgreSQL the claims use FOR UPDATE SKIP LOCKED."""
    home = tmp_path / "home"
    who = 'sleep 1; echo "$PPID" > "$TUSK_PFS/out/$(ls "$TUSK_PFS/in")"'
    with tusk.Client(home) as c:
        c.create_repo("in")
        c.put_files("in@master", [(f"/f{i}", b"x") for i in range(6)])
        c.create_pipeline(_spec(parallel=1) | {"transform": {"cmd": ["sh", "-c", who]}})
    worker = subprocess.Popen(
        [sys.executable, "-m", "tusk.cli.main", "--home", str(home), "worker"],
        env=dict(os.environ, TUSK_SANDBOX="none"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with tusk.Client(home) as c:
            c.run_scheduler(once=True, sandbox="none")
            [job] = c.list_jobs("slow")
            assert job.state == "success" and job.processed == 6
            pids = {c.get_file(f"slow@master:/f{i}").strip() for i in range(6)}
            assert len(pids) == 2 and str(worker.pid).encode() in pids
            assert c.fsck().ok
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0  # tusk worker stops cleanly on SIGTERM
