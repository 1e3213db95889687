"""Merging branches (issue 18): three-way merges at file level through the SDK in-process and
over HTTP and the CLI; conflicts, strategies and resolutions; criss-cross merges; a merge into
a pipeline's input runs the pipeline once; bad input changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from apihelpers import client_over

from tusk import Client
from tusk.errors import Conflict, InvalidArgument, MergeConflict


@pytest.fixture(params=["in-process", "http"])
def client(request: pytest.FixtureRequest, home: Path) -> Iterator[Client]:
    with client_over(str(request.param), home) as c:
        yield c


def _files(c: Client, ref: str) -> dict[str, bytes]:
    return {
        f.path: c.get_file(f"{ref}:{f.path}")
        for f in c.glob_files(f"{ref}:/**")
        if f.type == "file"
    }


def _state(c: Client, repo: str) -> tuple[list[tuple[str, str | None]], list[str]]:
    branches = sorted((b.name, b.head) for b in c.list_branches(repo))
    return branches, sorted(x.id for x in c.list_commits(repo))


def test_a_merge_of_nested_trees_with_and_without_conflicts(client: Client) -> None:
    c = client
    c.create_repo("d")
    c.put_files("d@master", {"/a/b/x.csv": b"x1", "/a/b/y.csv": b"y1", "/a/z.csv": b"z1",
                             "/keep/k": b"k", "/gone/g": b"g"}.items())  # fmt: skip
    c.create_branch("d@feature", head="master")
    c.put_files("d@feature", {"/a/b/x.csv": b"x2", "/new/deep/n.csv": b"n"}.items())
    c.delete_file("d@feature:/gone")
    ours = c.put_file("d@master:/a/b/y.csv", b"y2").commit.id
    theirs = c.inspect_commit("d@feature").id

    plan = c.merge("d@feature", "master", dry_run=True)
    assert (plan.commit, plan.conflicts, plan.taken) == (None, [], 3)
    assert c.inspect_commit("d@master").id == ours  # a dry run commits nothing

    r = c.merge("d@feature", "master", message="bring in feature")
    assert r.commit is not None and r.taken == 3 and r.source == theirs
    assert (r.commit.parent, r.commit.merge_parent) == (ours, theirs)
    assert r.commit.description == "bring in feature"
    assert _files(c, "d@master") == {
        "/a/b/x.csv": b"x2", "/a/b/y.csv": b"y2", "/a/z.csv": b"z1", "/keep/k": b"k",
        "/new/deep/n.csv": b"n",
    }  # fmt: skip
    log = [x.id for x in c.log("d@master")]
    assert log[0] == r.commit.id and {ours, theirs} <= set(log)
    assert theirs not in [x.id for x in c.list_commits("d@master")]  # first parents only
    assert theirs in c.inspect_commit(f"d@{theirs}").id
    assert r.commit.id in c.inspect_commit(f"d@{theirs}").children
    assert c.merge("d@feature", "master").up_to_date  # nothing new to merge

    # Both sides change one file, one side deletes what the other changed, and a file on one
    # side is a folder on the other: three conflicts, listed with what each side holds.
    c.delete_file("d@feature:/keep/k")
    c.put_files("d@feature", {"/a/z.csv": b"zF", "/keep/k/inner": b"i"}.items())
    c.delete_file("d@feature:/a/b/y.csv")
    c.put_files("d@master", {"/a/z.csv": b"zM", "/a/b/y.csv": b"y3", "/keep/k": b"k2"}.items())
    before = _state(c, "d")
    with pytest.raises(MergeConflict, match="3 conflicting path"):
        c.merge("d@feature", "master")
    assert _state(c, "d") == before  # nothing committed
    plan = c.merge("d@feature", "master", dry_run=True)
    by_path = {x.path: x for x in plan.conflicts}
    assert sorted(by_path) == ["/a/b/y.csv", "/a/z.csv", "/keep/k"]
    z = by_path["/a/z.csv"]
    assert (z.base.type, z.ours.size, z.theirs.size, z.resolution) == ("file", 2, 2, None)
    assert len({z.base.hash, z.ours.hash, z.theirs.hash}) == 3
    assert by_path["/a/b/y.csv"].theirs.type is None  # deleted there
    assert (by_path["/keep/k"].ours.type, by_path["/keep/k"].theirs.type) == ("file", "dir")

    # A resolution for some and a strategy for the rest.
    with pytest.raises(MergeConflict, match="2 conflicting path"):
        c.merge("d@feature", "master", resolve={"/a/z.csv": b"z merged"})
    r = c.merge("d@feature", "master", strategy="theirs",
                resolve={"/a/z.csv": b"z merged", "/a/b/y.csv": "ours"})  # fmt: skip
    assert sorted((x.path, x.resolution) for x in r.conflicts) == [
        ("/a/b/y.csv", "ours"), ("/a/z.csv", "file"), ("/keep/k", "theirs")
    ]  # fmt: skip
    got = _files(c, "d@master")
    assert (got["/a/z.csv"], got["/a/b/y.csv"], got["/keep/k/inner"]) == (b"z merged", b"y3", b"i")
    assert "/keep/k" not in got

    # Bad input: one clear error each, nothing changed.
    before = _state(c, "d")
    c.create_repo("other")
    c.put_file("d@lonely:/q", b"q")  # a branch with a history of its own
    with pytest.raises(InvalidArgument, match="unrelated histories"):
        c.merge("d@lonely", "master")
    with pytest.raises(InvalidArgument, match="into itself"):
        c.merge("d@master", "master")
    with pytest.raises(InvalidArgument, match="unknown merge strategy"):
        c.merge("d@feature", "master", strategy="mine")
    c.put_file("d@feature:/late", b"l")
    with pytest.raises(InvalidArgument, match="not in conflict: /late"):
        c.merge("d@feature", "master", resolve={"/late": "ours"})
    c.start_commit("d@feature")
    with pytest.raises(Conflict, match="open commit"):
        c.merge("d@feature", "master")
    c.finish_commit("d@feature")
    c.start_commit("d@master")
    with pytest.raises(Conflict, match="open commit"):
        c.merge("d@feature", "master")
    c.delete_commit("d@master")
    assert sorted((b, h) for b, h in _state(c, "d")[0] if b != "lonely" and b != "feature") == [
        x for x in before[0] if x[0] == "master"
    ]
    assert c.fsck().ok


def test_a_criss_cross_merge_needs_a_strategy(client: Client) -> None:
    c = client
    c.create_repo("cc")
    c.put_file("cc@master:/f", b"base")
    c.create_branch("cc@side", head="master")
    c.put_file("cc@master:/m", b"m1")
    c.put_file("cc@side:/s", b"s1")
    # Each merges the other's head as it was: two merge bases afterwards.
    m_head, s_head = c.inspect_commit("cc@master").id, c.inspect_commit("cc@side").id
    c.create_branch("cc@m0", head=m_head)
    c.create_branch("cc@s0", head=s_head)
    c.merge("cc@s0", "master")
    c.merge("cc@m0", "side")
    c.put_file("cc@master:/f", b"from master")
    c.put_file("cc@side:/f", b"from side")
    with pytest.raises(MergeConflict, match="criss-cross"):
        c.merge("cc@side", "master")
    plan = c.merge("cc@side", "master", strategy="theirs", dry_run=True)
    assert sorted(plan.bases) == sorted([m_head, s_head])
    r = c.merge("cc@side", "master", strategy="theirs")
    assert r.commit is not None and c.get_file("cc@master:/f") == b"from side"
    assert c.get_file("cc@master:/m") == b"m1" and c.get_file("cc@master:/s") == b"s1"


def test_a_merge_into_a_pipeline_input_runs_it_once_and_lineage_shows_both(
    home: Path,
) -> None:
    with Client(home) as c:
        c.create_repo("raw")
        c.put_files("raw@master", {"/a.txt": b"a\n", "/b.txt": b"b\n"}.items())
        c.create_pipeline({
            "pipeline": {"name": "up"},
            "input": {"pfs": {"repo": "raw", "glob": "/*"}},
            "transform": {"cmd": ["sh", "-c", "for f in /pfs/raw/*; do tr a-z A-Z < $f > "
                                  "/pfs/out/$(basename $f); done"]},
        })  # fmt: skip
        c.wait_commit("up@master", timeout=60)
        c.create_branch("raw@feature", head="master")
        c.put_file("raw@feature:/c.txt", b"c\n")
        c.put_file("raw@feature:/a.txt", b"aa\n")
        jobs_before = len(c.list_jobs("up"))
        r = c.merge("raw@feature", "master")
        assert r.commit is not None
        out = c.wait_commit("up@master", timeout=60)
        assert len(c.list_jobs("up")) == jobs_before + 1  # one job for the merge
        assert f"raw@{r.commit.id}" in out.provenance
        assert c.get_file("up@master:/c.txt") == b"C\n"
        step = c.lineage("up@master:/a.txt")
        (inp,) = step.inputs
        assert inp.commit == r.commit.id
        assert inp.merge_parents == [r.commit.parent, r.commit.merge_parent]
        assert inp.merged_from == r.commit.merge_parent  # a.txt came from feature
        c.create_branch("up@side", head="master")
        with pytest.raises(InvalidArgument, match="a pipeline's output"):
            c.merge("up@side", "master")
        b_in = c.lineage("up@master:/b.txt").inputs[0]  # carried forward, made before
        assert (b_in.commit, b_in.merge_parents) == (r.commit.parent, [])


def test_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}

    def tusk(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [sys.executable, "-m", "tusk.cli.main", "--home", str(home), *args],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert r.returncode == code, (r.stdout, r.stderr)
        return r

    with Client(home) as c:
        c.create_repo("r")
        c.put_files("r@master", {"/x": b"x", "/y": b"y"}.items())
        c.create_branch("r@dev", head="master")
        c.put_files("r@dev", {"/x": b"x-dev", "/z": b"z"}.items())
        c.put_file("r@master:/x", b"x-master")
    err = tusk("merge", "r@dev", "--into", "master", code=4).stderr
    lines = err.strip().splitlines()
    assert lines[0].split() == ["CONFLICT", "BASE", "OURS", "THEIRS", "RESOLUTION"]
    assert lines[1].startswith("/x ") and lines[1].endswith("unresolved")
    assert lines[-1].startswith("error: merging r@dev into master: 1 conflicting path(s): /x;")
    dry = json.loads(tusk("merge", "r@dev", "--into", "master", "--dry-run", "-o", "json").stdout)
    assert (dry["commit"], [x["path"] for x in dry["conflicts"]]) == (None, ["/x"])
    fixed = tmp_path / "x.merged"
    fixed.write_bytes(b"x-both")
    bad = tusk("merge", "r@dev", "--into", "master", "--resolve", "/x=nofile", code=2).stderr
    assert "no such local file" in bad
    out = tusk("merge", "r@dev", "--into", "master", "--resolve", f"/x={fixed}", "-m", "m").stdout
    assert out.splitlines()[1].endswith(" file") and "merged r@dev into master: commit " in out
    assert tusk("get", "file", "r@master:/x").stdout == "x-both"
    assert tusk("get", "file", "r@master:/z").stdout == "z"
    log = tusk("log", "r@master").stdout
    assert log.startswith("commit ") and "\nMerge: " in log and log.count("commit ") == 4
    shown = tusk("inspect", "commit", "r@master").stdout
    assert "Merged:" in shown
