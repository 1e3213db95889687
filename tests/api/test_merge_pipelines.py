"""``tusk merge --run-pipelines`` (issue 22): the pipelines downstream run on the merge first,
on a temporary branch; the target and every output branch move together, as one commit set,
only if every job succeeded. In-process (the jobs run in the merging process) and through the
REST API of a live server whose scheduler runs them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from apihelpers import start_live, stop_live

from tusk import Client
from tusk.errors import CheckFailed, InvalidArgument, JobFailed

# upper: each file of data upper-cased (a file named "bad" fails its datum);
# count: how many files upper holds (reads the whole repo).
UPPER = {
    "pipeline": {"name": "upper"},
    "input": {"pfs": {"repo": "data", "glob": "/*"}},
    "transform": {"cmd": ["sh", "-c", 'for f in "$TUSK_PFS"/data/*; do n=$(basename "$f"); '
                          '[ "$n" != bad ] || exit 7; tr a-z A-Z < "$f" > "$TUSK_PFS/out/$n"; '
                          "done"]},
}  # fmt: skip
COUNT = {
    "pipeline": {"name": "count"},
    "input": {"pfs": {"repo": "upper", "glob": "/"}},
    "transform": {"cmd": ["sh", "-c", 'ls "$TUSK_PFS/upper" | wc -l > "$TUSK_PFS/out/n"']},
}


@pytest.fixture(params=["in-process", "http"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    if request.param == "in-process":
        with Client(tmp_path / "home") as c:
            yield c
        return
    live = start_live(tmp_path / "home", scheduler=True)
    try:
        with Client(address=live.url) as c:
            yield c
    finally:
        stop_live(live)


def _heads(c: Client) -> dict[str, str | None]:
    return {r: c.inspect_branch(f"{r}@master").head for r in ("data", "upper", "count")}


def test_all_outputs_move_with_the_merge_in_one_commit_set_or_nothing_moves(
    client: Client,
) -> None:
    c = client
    c.apply([{"kind": "repo", "name": "data"}, UPPER, COUNT])
    c.put_file("data@master:/a", b"alpha")
    c.wait_commit("count@master")
    c.create_branch("data@feature", head="master")
    c.put_file("data@feature:/b", b"beta")
    before = _heads(c)

    r = c.merge("data@feature", "master", run_pipelines=True, timeout=120)
    assert r.commit is not None and r.commit.merge_parent is not None
    assert sorted((o.repo, o.branch) for o in r.outputs) == [
        ("count", "master"), ("upper", "master")
    ]  # fmt: skip
    after = _heads(c)
    assert all(after[k] != before[k] for k in after)
    assert c.get_file("upper@master:/b") == b"BETA"
    assert c.get_file("count@master:/n").strip() == b"2"
    in_set = c.inspect_commit_set(r.commit.commit_set)
    assert sorted((x.repo, x.branch, x.id) for x in in_set) == sorted(
        (k, "master", v) for k, v in after.items()
    )
    assert all(not b.startswith("merge-") for r_ in ("data", "upper", "count")
               for b in c.inspect_repo(r_).branches)  # fmt: skip
    assert c.inspect_commit(f"upper@{after['upper']}").parent == before["upper"]

    # A datum fails: target and every output branch unchanged, the failure named.
    c.put_file("data@feature:/bad", b"x")
    with pytest.raises(JobFailed) as e:
        c.merge("data@feature", "master", run_pipelines=True, timeout=120)
    assert "pipeline upper job" in str(e.value) and "sh exited with code 7" in str(e.value)
    assert "nothing moved" in str(e.value)
    assert _heads(c) == after
    assert c.get_file("count@master:/n").strip() == b"2"
    assert all(not b.startswith("merge-") for r_ in ("data", "upper", "count")
               for b in c.inspect_repo(r_).branches)  # fmt: skip
    assert c.fsck().ok

    # A merge check of the target runs on the result before anything moves.
    c.delete_file("data@feature:/bad")
    c.apply([{"kind": "repo", "name": "data"}, UPPER, COUNT,
             {"kind": "check", "name": "no-c", "repo": "data", "on": ["merge"],
              "cmd": ["sh", "-c", 'test ! -e "$TUSK_PFS/data/c"']}])  # fmt: skip
    c.put_file("data@feature:/c", b"gamma")
    with pytest.raises(CheckFailed, match="no-c"):
        c.merge("data@feature", "master", run_pipelines=True, timeout=120)
    assert _heads(c) == after

    with pytest.raises(InvalidArgument, match="no pipeline reads data@feature"):
        c.merge("data@master", "feature", run_pipelines=True)


def test_the_cli_names_the_outputs_that_moved(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Client(home) as c:
        c.apply([{"kind": "repo", "name": "data"}, UPPER])
        c.put_file("data@master:/a", b"a")
        c.wait_commit("upper@master")
        c.create_branch("data@feature", head="master")
        c.put_file("data@feature:/b", b"b")
    cli = [sys.executable, "-m", "tusk.cli.main", "--home", str(home)]
    r = subprocess.run([*cli, "merge", "data@feature", "--into", "master", "--run-pipelines"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "moved with it: upper@master to " in r.stdout
    with Client(home) as c:
        assert c.get_file("upper@master:/b") == b"B"
