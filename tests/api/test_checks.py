"""Checks that gate commits and merges (issue 22): ``kind: check`` documents applied with
``tusk apply``, run on the candidate before a branch moves, through the SDK in-process, the
REST API of a real ``tusk up`` (remote SDK), the CLI and the S3 gateway; results per commit.

A failing check leaves the branch where it was and shows the end of its log; fixing the data
and trying again passes; a hanging check is killed at its timeout; a protected branch can
require checks by name; bad documents and rules change nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from gateway import Gateway, s3_client, start_gateway
from tusk import Client
from tusk.errors import CheckFailed, InvalidArgument, InvalidSpec, NotFound

# The candidate is where a datum finds its input: /pfs/<repo> in the sandbox, else below
# $TUSK_PFS (the server here runs with --sandbox none).
D = 'd="$TUSK_PFS/$TUSK_CHECK_REPO"; '

NOT_EMPTY = {
    "kind": "check", "name": "rows-not-empty", "repo": "REPO", "branch": "master",
    "on": ["merge"], "timeout": "30s",
    "cmd": ["sh", "-c", D + 'echo "checking $TUSK_CHECK_TRIGGER"; ls "$d"; '
            'test -s "$d/rows.csv" || { echo "rows.csv is empty" >&2; exit 3; }'],
}  # fmt: skip
SMALL = {
    "kind": "check", "name": "files-small", "repo": "REPO", "branch": "dev-*", "on": ["commit"],
    "cmd": ["sh", "-c", D + 'for f in "$d"/*; do [ "$(wc -c < "$f")" -lt 100 ] || '
            '{ echo "$f is too big" >&2; exit 1; }; done'],
}  # fmt: skip


def docs(repo: str, *templates: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**t, "repo": repo, "name": f"{repo}-{t['name']}"} for t in templates]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = start_gateway(tmp_path_factory.mktemp("checks") / "home")
    yield g
    g.stop()


def _unique(c: Client, base: str) -> str:
    names = {r.name for r in c.list_repos()}
    return next(f"{base}{i}" for i in range(1000) if f"{base}{i}" not in names)


def test_a_failing_merge_check_leaves_the_target_and_shows_its_log(client: Client) -> None:
    c = client
    repo = _unique(c, "m")
    c.create_repo(repo)
    c.put_file(f"{repo}@master:/rows.csv", b"id\n1\n")
    c.create_branch(f"{repo}@feature", head="master")
    c.put_file(f"{repo}@feature:/rows.csv", b"")
    applied = c.apply(docs(repo, NOT_EMPTY))
    assert [(ch.kind, ch.action) for ch in applied.changes] == [("check", "create")]
    assert [x.name for x in c.list_checks(repo)] == [f"{repo}-rows-not-empty"]
    head = c.inspect_branch(f"{repo}@master").head

    with pytest.raises(CheckFailed) as e:
        c.merge(f"{repo}@feature", "master")
    message = str(e.value)
    assert f"check {repo}-rows-not-empty (failed, exit code 3) failed on the merge" in message
    assert f"{repo}@master did not move" in message
    assert message.splitlines()[-2:] == ["    rows.csv is empty", "    (sh exited with code 3)"]
    assert c.inspect_branch(f"{repo}@master").head == head
    assert c.get_file(f"{repo}@master:/rows.csv") == b"id\n1\n"
    candidate = message.split("(", 3)[2].split(")")[0]  # "... on the merge into R@master (ID)"
    [run] = c.check_runs(f"{repo}@{candidate}")
    assert (run.name, run.state, run.exit_code, run.trigger) == (
        f"{repo}-rows-not-empty",
        "failed",
        3,
        "merge",
    )
    assert run.log.splitlines()[:3] == ["checking merge", "rows.csv", "rows.csv is empty"]
    assert c.fsck().ok

    c.put_file(f"{repo}@feature:/rows.csv", b"id\n2\n")  # fixed: merging again passes
    r = c.merge(f"{repo}@feature", "master")
    assert r.commit is not None and [(x.name, x.state) for x in r.checks] == [
        (f"{repo}-rows-not-empty", "passed")
    ]
    assert c.inspect_branch(f"{repo}@master").head == r.commit.id
    assert c.inspect_commit(f"{repo}@master").merge_parent is not None
    shown = c.inspect_check_run(f"{repo}@master", f"{repo}-rows-not-empty")
    assert shown.state == "passed" and "checking merge" in shown.log
    with pytest.raises(NotFound, match="has not run"):
        c.inspect_check_run(f"{repo}@master^1", f"{repo}-rows-not-empty")
    c.delete_check(f"{repo}-rows-not-empty")
    assert c.list_checks(repo) == []


def test_commit_checks_gate_puts_and_finishing_commits(client: Client) -> None:
    c = client
    repo = _unique(c, "c")
    c.create_repo(repo)
    c.apply(docs(repo, SMALL))
    c.put_file(f"{repo}@dev-1:/a", b"small")  # a new branch, checked, created
    head = c.inspect_branch(f"{repo}@dev-1").head
    with pytest.raises(CheckFailed, match=r"failed on a commit to .*did not move"):
        c.put_file(f"{repo}@dev-1:/b", b"x" * 500)
    assert c.inspect_branch(f"{repo}@dev-1").head == head
    assert [f.path for f in c.list_files(f"{repo}@dev-1:/")] == ["/a"]
    c.put_file(f"{repo}@other:/big", b"x" * 500)  # not covered by the glob

    opened = c.start_commit(f"{repo}@dev-1")
    c.put_file(f"{repo}@dev-1:/c", b"y" * 500)
    with pytest.raises(CheckFailed, match="the commit stays open: fix it and finish it again"):
        c.finish_commit(f"{repo}@dev-1")
    assert not c.inspect_commit(f"{repo}@{opened.id}").finished
    c.delete_file(f"{repo}@dev-1:/c")
    done = c.finish_commit(f"{repo}@dev-1")
    assert done.finished and done.id == opened.id
    assert [r.state for r in c.check_runs(f"{repo}@{done.id}")] == ["passed"]
    assert c.fsck().ok


def test_a_check_that_hangs_is_killed_at_its_timeout(tmp_path: Path) -> None:
    with Client(tmp_path / "home") as c:
        c.create_repo("h")
        c.apply([{"kind": "check", "name": "hangs", "repo": "h", "on": "commit",
                  "cmd": ["sleep", "60"], "timeout": "1s"}])  # fmt: skip
        t = time.monotonic()
        with pytest.raises(CheckFailed, match=r"hangs \(timed out"):
            c.put_file("h@master:/x", b"x")
        assert time.monotonic() - t < 15
        assert c.list_branches("h") == []
        [run] = c.check_runs(f"h@{_candidate_of(c, 'h')}")
        assert run.state == "timed out" and "timed out after 1s" in run.log


def _candidate_of(c: Client, repo: str) -> str:
    """The id of the last candidate that failed (it never landed: found through its runs)."""
    home = Path(c.home)  # type: ignore[attr-defined]
    import sqlite3

    with sqlite3.connect(home / "tusk.db") as db:
        row = db.execute(
            "SELECT commit_id FROM check_runs WHERE repo = ? ORDER BY started_at DESC", (repo,)
        ).fetchone()
    return str(row[0])


def test_in_the_sandbox_a_check_reads_the_candidate_at_pfs_and_nothing_else(
    tmp_path: Path,
) -> None:
    from tusk.pps.executor import bwrap_works

    if not bwrap_works():
        if os.environ.get("CI") == "true":
            pytest.fail("bubblewrap is needed (./dev.sh installs it)")
        pytest.skip("bubblewrap does not work here")
    with Client(tmp_path / "home") as c:
        c.create_repo("s")
        c.create_repo("secret")
        c.put_file("secret@master:/key", b"k")
        look = "ls /pfs; cat /pfs/s/a.txt; test ! -e /pfs/secret"
        c.apply([{"kind": "check", "name": "sees", "repo": "s", "on": "commit",
                  "cmd": ["sh", "-c", look]}])  # fmt: skip
        c.put_file("s@master:/a.txt", b"hello")
        [run] = c.check_runs("s@master")
        assert run.state == "passed" and run.log.splitlines() == ["out", "s", "hello"]


def test_a_check_reads_a_big_candidate_whole(tmp_path: Path) -> None:
    """Past a few hundred files the candidate is written out by writer processes
    (tusk.pfs.copyout): every file arrives with its bytes, a many-chunk file, empty files and
    nested folders included, and nothing else."""
    import hashlib

    from tusk.pfs.copyout import CHILD_MIN_FILES

    src = tmp_path / "src"
    expected: dict[str, bytes] = {}
    for i in range(CHILD_MIN_FILES + 50):
        expected[f"d{i % 7}/sub{i % 3}/f{i}.txt"] = b"row %d\n" % i * (i % 5)  # some empty
    expected["big.bin"] = hashlib.shake_256(b"big").digest(3 * 1024 * 1024)  # several chunks
    for rel, data in expected.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    listing = "".join(
        f"{hashlib.sha256(data).hexdigest()}  ./{rel}\n" for rel, data in sorted(expected.items())
    )
    want = hashlib.sha256(listing.encode()).hexdigest()
    look = (D + 'got=$(cd "$d" && find . -type f | sort | xargs sha256sum); '
            'echo "$got" | sha256sum | grep -q "^$WANT " || { echo "$got"; exit 1; }')  # fmt: skip
    with Client(tmp_path / "home") as c:
        c.create_repo("big")
        c.put_file("big@master:/seed", b"")
        c.create_branch("big@feature", head="master")
        c.put_dir("big@feature:/", src)
        c.delete_file("big@feature:/seed")
        c.apply([{"kind": "check", "name": "whole", "repo": "big", "on": ["merge"],
                  "cmd": ["sh", "-c", look], "env": {"WANT": want}}])  # fmt: skip
        merged = c.merge("big@feature", into="master")
        assert merged.commit is not None
        [run] = c.check_runs("big@master")
        assert run.state == "passed", run.log


def test_a_protected_branch_requires_its_checks_on_every_merge(client: Client) -> None:
    c = client
    repo = _unique(c, "p")
    c.create_repo(repo)
    c.put_file(f"{repo}@master:/rows.csv", b"1\n")
    c.create_branch(f"{repo}@feature", head="master")
    c.put_file(f"{repo}@feature:/rows.csv", b"")
    c.apply(docs(repo, {**NOT_EMPTY, "on": ["commit"], "branch": "*"}))
    name = f"{repo}-rows-not-empty"
    # Bad input: each one clear error, nothing changed.
    with pytest.raises(NotFound, match="check nope is not defined"):
        c.protect_branch(f"{repo}@master", require_checks=["nope"])
    c.create_repo(f"{repo}x")
    c.put_file(f"{repo}x@master:/a", b"a")
    with pytest.raises(InvalidArgument, match=f"check {name} covers {repo}@\\*, not {repo}x"):
        c.protect_branch(f"{repo}x@master", require_checks=[name])
    assert c.list_protections(repo) == [] and c.list_protections(f"{repo}x") == []

    p = c.protect_branch(f"{repo}@master", require_checks=[name])
    assert p.require_checks == [name]
    assert c.list_protections(repo)[0].require_checks == [name]
    head = c.inspect_branch(f"{repo}@master").head
    with pytest.raises(CheckFailed, match="failed on the merge"):  # on: commit, required here
        c.merge(f"{repo}@feature", "master")
    assert c.inspect_branch(f"{repo}@master").head == head
    c.delete_check(name)  # a required check that is gone: merges are refused, not let through
    c.put_file(f"{repo}@feature:/rows.csv", b"2\n")
    with pytest.raises(CheckFailed, match=f"{name} is not defined"):
        c.merge(f"{repo}@feature", "master")
    assert c.inspect_branch(f"{repo}@master").head == head
    c.unprotect_branch(f"{repo}@master")
    assert c.merge(f"{repo}@feature", "master").commit is not None


def test_bad_check_documents_are_refused_and_nothing_is_applied(
    client: Client, tmp_path: Path
) -> None:
    c = client
    repo = _unique(c, "b")
    c.create_repo(repo)
    base = {"kind": "check", "name": "x", "repo": repo, "cmd": ["true"]}
    cases = {
        "cmd: a check needs a command": {k: v for k, v in base.items() if k != "cmd"},
        "'push' is not a trigger": {**base, "on": ["push"]},
        "is neither stored nor declared": {**base, "repo": f"{repo}-missing"},
        "invalid check name": {**base, "name": "no spaces"},
        "is not a duration": {**base, "timeout": "-1s"},
        "runs pipeline edges, which neither exists": {**base, "cmd": [], "pipeline": "edges"},
        "Extra inputs are not permitted": {**base, "bogus": 1},
    }
    for expected, doc in cases.items():
        with pytest.raises(InvalidSpec, match=expected):
            c.apply([doc, {**base, "name": "fine"}])
        assert c.list_checks(repo) == [], expected
    # A check no document declares is left alone, and deleted by --prune (on a home of its
    # own: pruning on the shared server would delete the other tests' pipelines).
    with Client(tmp_path / "prune") as own:
        own.apply([{"kind": "repo", "name": "p"}, {**base, "repo": "p", "name": "kept"}])
        plan = own.apply([{"kind": "repo", "name": "p"}], dry_run=True)
        assert [(x.kind, x.action) for x in plan.changes if x.name == "kept"] == [
            ("check", "unmanaged")
        ]
        own.apply([{"kind": "repo", "name": "p"}], prune=True)
        assert own.list_checks() == []


def test_the_cli_shows_a_failed_checks_log_and_the_runs(gw: Gateway, tmp_path: Path) -> None:
    spec = tmp_path / "checks.yaml"
    # YAML 1.1 reads a bare `on:` as true: the document still means its triggers
    spec.write_text(
        "kind: check\nname: cli-not-empty\nrepo: cli\non: [merge]\n"
        "cmd: [sh, -c, 'test -s $TUSK_PFS/cli/rows.csv || { echo empty rows >&2; exit 4; }']\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    cli = [sys.executable, "-m", "tusk.cli.main", "--address", gw.api]

    def tusk(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, env=env, timeout=60)

    with Client(address=gw.api) as c:
        c.create_repo("cli")
        c.put_file("cli@master:/rows.csv", b"1\n")
        c.create_branch("cli@feature", head="master")
        c.put_file("cli@feature:/rows.csv", b"")
    assert tusk("apply", "-f", str(spec)).returncode == 0
    r = tusk("merge", "cli@feature", "--into", "master")
    assert r.returncode == 10, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0].startswith("error: check cli-not-empty (failed, exit code 4) failed on the")
    assert lines[1:] == ["    empty rows", "    (sh exited with code 4)"]
    candidate = lines[0].split("tusk inspect check cli@")[1].split()[0]
    shown = tusk("inspect", "check", f"cli@{candidate}", "cli-not-empty")
    assert shown.returncode == 0 and "State: failed" in shown.stdout
    assert "  empty rows" in shown.stdout.splitlines()
    listed = tusk("list", "check", "cli")
    assert listed.stdout.split()[6:10] == ["cli-not-empty", "cli", "master", "merge"]
    with Client(address=gw.api) as c:
        c.put_file("cli@feature:/rows.csv", b"2\n")
    ok = tusk("merge", "cli@feature", "--into", "master")
    assert ok.returncode == 0 and "check cli-not-empty: passed" in ok.stdout
    runs = tusk("list", "check", "cli@master")
    assert runs.stdout.splitlines()[1].split()[:4] == ["cli-not-empty", "passed", "0", "merge"]
    assert tusk("delete", "check", "cli-not-empty").returncode == 0
    gone = tusk("delete", "check", "cli-not-empty")
    assert gone.returncode == 3 and "not defined" in gone.stderr


def test_the_s3_gateway_is_gated_too(gw: Gateway) -> None:
    with Client(address=gw.api) as c:
        c.create_repo("s3gated")
        c.apply([{**SMALL, "repo": "s3gated", "name": "s3-small", "branch": "master"}])
        c.put_file("s3gated@master:/a", b"a")
        head = c.inspect_branch("s3gated@master").head
    s3 = s3_client(gw, "anonymous", "anonymous")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="master.s3gated", Key="big", Body=b"z" * 500)
    err = e.value.response["Error"]
    assert err["Code"] == "PreconditionFailed" and "s3-small" in err["Message"], err
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    s3.put_object(Bucket="master.s3gated", Key="b", Body=b"small")
    with Client(address=gw.api) as c:
        assert c.inspect_branch("s3gated@master").head != head
        assert sorted(f.path for f in c.list_files("s3gated@master:/")) == ["/a", "/b"]
        assert c.fsck().ok


def test_a_check_can_require_a_pipelines_job_on_the_candidate(client: Client) -> None:
    c = client
    repo = _unique(c, "v")
    validate = {
        "pipeline": {"name": f"{repo}-validate"},
        "input": {"pfs": {"repo": repo, "glob": "/*"}},
        "transform": {"cmd": ["sh", "-c", f'for f in "$TUSK_PFS/{repo}"/*; do '
                              'echo "validating $(basename "$f")"; '
                              '[ "$(basename "$f")" != bad ] || { echo "bad file" >&2; exit 2; }; '
                              'cp "$f" "$TUSK_PFS/out/"; done']},
    }  # fmt: skip
    check = {"kind": "check", "name": f"{repo}-validated", "repo": repo, "on": ["merge"],
             "pipeline": f"{repo}-validate", "timeout": "2m"}  # fmt: skip
    c.apply([{"kind": "repo", "name": repo}, validate, check])
    c.put_file(f"{repo}@master:/a", b"a")
    c.wait_commit(f"{repo}-validate@master")
    c.create_branch(f"{repo}@feature", head="master")
    c.put_file(f"{repo}@feature:/bad", b"x")
    head = c.inspect_branch(f"{repo}@master").head
    with pytest.raises(CheckFailed) as e:
        c.merge(f"{repo}@feature", "master")
    assert f"check {repo}-validated (failed, exit code 1)" in str(e.value)
    assert "bad file" in str(e.value)  # the job's log, as the check's
    assert c.inspect_branch(f"{repo}@master").head == head
    for name in (repo, f"{repo}-validate"):  # the check's branches are gone
        assert not [b for b in c.inspect_repo(name).branches if b.startswith("check-")]

    c.delete_file(f"{repo}@feature:/bad")
    c.put_file(f"{repo}@feature:/b", b"b")
    r = c.merge(f"{repo}@feature", "master")
    assert [(x.name, x.state) for x in r.checks] == [(f"{repo}-validated", "passed")]
    assert "validating b" in r.checks[0].log
    c.wait_commit(f"{repo}-validate@master")  # the merge then runs as any commit does
    assert c.get_file(f"{repo}-validate@master:/b") == b"b"

    # Bad input: each refused with nothing applied.
    for doc, expected in (
        ({**check, "name": "x1", "pipeline": "nope"}, "runs pipeline nope, which neither"),
        ({**check, "name": "x2", "cmd": ["true"]}, "either a pipeline or a command"),
        ({**check, "name": "x3", "repo": f"{repo}-validate"}, "is a pipeline's output"),
    ):
        with pytest.raises(InvalidSpec, match=expected):
            c.apply([{"kind": "repo", "name": repo}, validate, check, doc])
    assert [x.name for x in c.list_checks(repo)] == [f"{repo}-validated"]
