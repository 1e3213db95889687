"""Waiting on an embedded store with no scheduler runs the pending jobs (issue 24).

Whether a scheduler runs is known from a lock that ends with its process, so the cases of
two waiters, or of a waiter and ``tusk up``, run the CLI as real processes; the rest run it
in-process. Every test runs on both metadata engines: the lock is a file lock beside the
SQLite database, and a session advisory lock on PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import yaml
from clihelpers import Tusk

import tusk
from tusk.errors import JobFailed, JobNotFound, NotFound, Timeout

ENGINES = ("sqlite", "postgresql")
BIN = Path(sys.executable).parent / "tusk"
COPY = 'for f in "$TUSK_PFS"/in/*; do echo "ran $(basename "$f")"; cp "$f" "$TUSK_PFS/out/"; done'


def spec(cmd: str = COPY, **extra: Any) -> dict[str, Any]:
    return {
        "pipeline": {"name": "p"},
        "input": {"pfs": {"repo": "r", "glob": "/*", "name": "in"}},
        "transform": {"cmd": ["sh", "-c", cmd]},
        **extra,
    }


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str) -> Path:
    """A home with repo r holding files a and b."""
    monkeypatch.setenv("TUSK_SANDBOX", "none")
    home = tmp_path / "home"
    with tusk.Client(home) as c:
        c.create_repo("r")
        c.put_files("r@master", [("/a", b"a\n"), ("/b", b"b\n")])
    return home


@pytest.fixture
def spec_file(tmp_path: Path) -> Callable[..., str]:
    def write(cmd: str = COPY, **extra: Any) -> str:
        path = tmp_path / "p.yaml"
        path.write_text(yaml.safe_dump(spec(cmd, **extra)))
        return str(path)

    return write


def start(home: Path, *args: str) -> subprocess.Popen[str]:
    """The ``tusk`` script as a process of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("TUSK_DEBUG", "TUSK_ADDRESS")}
    return subprocess.Popen(
        [str(BIN), "--home", str(home), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_until(stream: IO[str] | None, needle: str) -> list[str]:
    """Lines of ``stream`` up to the first that holds ``needle`` (the stream must end)."""
    assert stream is not None
    lines: list[str] = []
    for line in stream:
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen in {lines}")


def poll(check: Callable[[], Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_the_newcomer_path_runs_the_job_in_wait(home: Path, spec_file: Callable[..., str]) -> None:
    t = Tusk(home)
    created = t("create", "pipeline", "-f", spec_file())
    assert created.stderr.startswith("note: no scheduler") and created.stderr.count("\n") == 1
    assert "'tusk up'" in created.stderr and "'tusk wait'" in created.stderr
    assert t.json("list", "job") == []

    waited = t("-o", "json", "wait", "commit", "p@master")
    assert json.loads(waited.stdout)["finished_at"] is not None  # stdout is the answer only
    assert "running its jobs in this process" in waited.stderr
    assert "started: 2 datums, 0 unchanged" in waited.stderr  # tusk up --once's lines
    assert "succeeded: 2 processed, 0 skipped" in waited.stderr
    assert t("get", "file", "p@master:/b").stdout == "b\n"

    # A put into an input repo says where its jobs run; -o json keeps stdout JSON.
    put = t("-o", "json", "put", "file", "r@master:/c", "-f", "-", input=b"c\n")
    assert put.stderr.startswith("note: no scheduler") and put.stderr.count("\n") == 1
    commit_set = put.json()["commit"]["commit_set"]  # the id of the job to come
    waited = t("wait", "job", f"p@{commit_set}")
    assert "1 processed, 2 skipped" in waited.stderr and "success" in waited.stdout
    assert t("get", "file", "p@master:/c").stdout == "c\n"
    # A put into a repo that feeds no pipeline says nothing.
    t("create", "repo", "lonely")
    assert t("put", "file", "lonely@master:/c", "-f", "-", input=b"c").stderr == ""


def test_apply_and_update_say_where_jobs_run(home: Path, spec_file: Callable[..., str]) -> None:
    t = Tusk(home)
    applied = t("apply", "-f", spec_file())
    assert applied.stderr.startswith("note: no scheduler") and applied.stderr.count("\n") == 1
    assert "note:" not in t("apply", "-f", spec_file()).stderr  # nothing changed
    updated = t("update", "pipeline", "-f", spec_file(COPY + "; true"))
    assert updated.stderr.startswith("note: no scheduler")
    commit_set = t.json("inspect", "commit", "p@master")["commit_set"]
    jobs = t.json("wait", "commit-set", commit_set)
    assert [j["state"] for j in jobs] == ["success"] and jobs[0]["version"] == 2


def test_a_failing_datum_ends_the_wait_with_the_jobs_error(
    home: Path, spec_file: Callable[..., str]
) -> None:
    t = Tusk(home)
    t("create", "pipeline", "-f", spec_file("echo broken input >&2; exit 3"))
    waited = t("wait", "commit", "p@master", "--timeout", "60", code=1)
    errors = [ln for ln in waited.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and waited.stderr.rstrip("\n").endswith(errors[0])
    assert "will not finish: job p@" in errors[0] and "failed: datum" in errors[0]
    assert "code 3" in errors[0] and "broken input" in errors[0]
    job = t.json("list", "job", "-p", "p")[0]
    assert job["state"] == "failure"
    assert "failed" in t("wait", "job", f"p@{job['id']}", code=1).stderr  # at once, as before
    # Waiting on the branch after the failure: the job's error, not "no commits yet".
    again = t.fails("wait", "commit", "p@master", code=1)
    assert "has no finished commit: job p@" in again and "broken input" in again


def test_waiting_on_what_does_not_exist_fails_at_once(
    home: Path, spec_file: Callable[..., str]
) -> None:
    t = Tusk(home)
    t("create", "pipeline", "-f", spec_file())
    for args in (
        ("wait", "commit", "nope@master"),
        ("wait", "commit", "r@0123456789abcdef0123456789abcdef"),
        ("wait", "job", "p@0123456789abcdef"),
        ("wait", "job", "nope@0123456789abcdef"),
        ("wait", "commit-set", "0123456789abcdef0123456789abcdef"),
    ):
        t.fails(*args, code=3)
    assert t.json("list", "job") == []  # nothing ran


def test_two_waiters_run_each_datum_once(home: Path, spec_file: Callable[..., str]) -> None:
    t = Tusk(home)
    t("create", "pipeline", "-f", spec_file("sleep 0.5; " + COPY, parallelism_spec={"constant": 1}))
    first = start(home, "wait", "commit", "p@master")
    read_until(first.stderr, "running its jobs in this process")
    second = start(home, "wait", "commit", "p@master")
    out2, err2 = second.communicate(timeout=120)
    out1, err1 = first.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    assert err2 == ""  # it saw the first one's lock and only waited
    assert "Finished:" in out1 and "Finished:" in out2
    logs = t("logs", "-p", "p").stdout
    assert logs.count("ran a") == 1 and logs.count("ran b") == 1
    job = t.json("list", "job", "-p", "p")[0]
    assert [d["attempts"] for d in t.json("list", "datum", f"p@{job['id']}")] == [1, 1]


@pytest.fixture
def scheduler(home: Path) -> Iterator[subprocess.Popen[str]]:
    """``tusk up --no-http`` on the home, once it holds the scheduler lock."""
    up = start(home, "up", "--no-http")
    with tusk.Client(home) as c:
        poll(c.scheduler_running)
    yield up
    up.terminate()
    up.communicate(timeout=30)


def test_with_tusk_up_running_wait_runs_nothing(
    home: Path, spec_file: Callable[..., str], scheduler: subprocess.Popen[str]
) -> None:
    t = Tusk(home)
    assert t("create", "pipeline", "-f", spec_file()).stderr == ""  # no note: jobs run
    waited = t("wait", "commit", "p@master", "--timeout", "60")
    assert waited.stderr == "" and "Finished:" in waited.stdout
    assert t("get", "file", "p@master:/a").stdout == "a\n"


def test_no_run_says_so_once_and_keeps_waiting(home: Path, spec_file: Callable[..., str]) -> None:
    t = Tusk(home)
    t("create", "pipeline", "-f", spec_file())
    waiter = start(home, "wait", "commit", "p@master", "--no-run")
    hint = read_until(waiter.stderr, "no scheduler is running")
    assert len(hint) == 1 and "'tusk up'" in hint[0]
    assert waiter.poll() is None and t.json("list", "job") == []  # waiting, nothing run
    # A waiter that runs jobs finishes the commit; the passive one then answers.
    t("wait", "commit", "p@master")
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0 and "Finished:" in out
    assert err == ""  # the hint was said once


# The SDK


@pytest.fixture
def sdk(home: Path) -> Iterator[tusk.Client]:
    with tusk.Client(home) as c:
        yield c


def test_sdk_waits_run_pending_jobs(sdk: tusk.Client) -> None:
    lines: list[str] = []
    assert sdk.scheduler_running() is False
    sdk.create_pipeline(spec())
    done = sdk.wait_commit("p@master", timeout=60, log=lines.append)
    assert done.finished and sdk.get_file("p@master:/a") == b"a\n"
    assert any("succeeded: 2 processed" in ln for ln in lines)
    put = sdk.put_file("r@master:/c", b"c\n")
    jobs = sdk.wait_commit_set(put.commit.commit_set, timeout=60)
    assert [j.state for j in jobs] == ["success"] and jobs[0].processed == 1
    put = sdk.put_file("r@master:/d", b"d\n")
    assert sdk.wait_job(f"p@{put.commit.commit_set}", timeout=60).state == "success"
    assert sdk.scheduler_running() is False  # every wait let go of the lock


def test_sdk_run_false_warns_once_and_waits(
    sdk: tusk.Client, caplog: pytest.LogCaptureFixture
) -> None:
    sdk.create_pipeline(spec())
    with caplog.at_level(logging.WARNING, logger="tusk.scheduler"), pytest.raises(Timeout):
        sdk.wait_commit("p@master", timeout=1, run=False)
    warned = [r.getMessage() for r in caplog.records if "no scheduler" in r.getMessage()]
    assert len(warned) == 1 and "'tusk up'" in warned[0]
    assert sdk.list_jobs() == []


def test_sdk_waits_passively_while_another_runs_jobs(sdk: tusk.Client) -> None:
    other = tusk.Client(sdk.home)
    presence = other._pfs.storage.meta.scheduler_presence()
    assert presence.try_run()  # as a waiter that runs jobs holds it
    try:
        assert sdk.scheduler_running() is True
        sdk.create_pipeline(spec("exit 3"))
        with pytest.raises(Timeout):  # the lock is taken: this waiter only waits
            sdk.wait_commit("p@master", timeout=0.5)
        assert sdk.list_jobs() == []
    finally:
        presence.release()
        other.close()
    with pytest.raises(JobFailed, match=r"will not finish: job p@\w+ failed: datum"):
        sdk.wait_commit("p@master", timeout=60)
    with pytest.raises(NotFound):
        sdk.wait_commit("nope@master")
    with pytest.raises(JobNotFound):
        sdk.wait_job("p@0123456789abcdef")
