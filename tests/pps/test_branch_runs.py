"""Pipelines on another branch: ``run_pipeline(name, branch="pr-1")``, the branch-per-PR pattern.

The graph ``in`` -> ``up`` (upper-cases each file) -> ``count`` (counts lines) runs on
master first; then a pull request's branch gets the same graph, only its changed datum is
computed, master is left as it was, and the report compares the two sides.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tusk
from tusk.errors import InvalidArgument
from tusk.sdk.report import build_report, render_markdown

ENGINES = ("sqlite", "postgresql")

UPPER = 'for f in "$TUSK_PFS"/in/*; do tr a-z A-Z < "$f" > "$TUSK_PFS/out/$(basename "$f")"; done'
COUNT = 'cat "$TUSK_PFS"/up/* | wc -l | tr -d " " > "$TUSK_PFS/out/lines"'


def spec(name: str, repo: str, cmd: str, input_name: str, **extra: object) -> dict[str, object]:
    glob = "/*" if name == "up" else "/"  # count reads all of up at once
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": repo, "glob": glob, "name": input_name}},
        "transform": {"cmd": ["sh", "-c", cmd]},
        **extra,
    }


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str) -> Iterator[tusk.Client]:
    monkeypatch.setenv("TUSK_SANDBOX", "none")
    c = tusk.Client(tmp_path / "home")
    c.create_repo("in")
    c.put_files("in@master", [("/a.txt", b"alpha\n"), ("/b.txt", b"beta\n"), ("/c.txt", b"c\n")])
    c.create_pipeline(spec("up", "in", UPPER, "in"))
    c.create_pipeline(spec("count", "up", COUNT, "up"))
    c.run_scheduler(once=True)
    yield c
    c.close()


def test_a_branch_runs_only_what_it_changed(client: tusk.Client) -> None:
    master_up = client.inspect_branch("up@master").head
    master_count = client.get_file("count@master:/lines")
    assert master_count == b"3\n"

    client.create_branch("in@pr-1", head="master")
    started = client.run_pipeline("up", branch="pr-1")
    assert started.branch == "pr-1"
    client.run_scheduler(once=True)
    first = client.inspect_job(f"up@{started.commit_set}")
    assert first.state == "success"
    assert first.processed == 0 and first.skipped == 3  # the same data as master
    assert client.get_file("up@pr-1:/a.txt") == b"ALPHA\n"

    # The pull request changes one file: only that datum runs, on pr-1; count follows.
    client.put_file("in@pr-1:/b.txt", b"beta\nsecond line\n")
    client.run_scheduler(once=True)
    jobs = {
        j.pipeline: j
        for j in client.list_jobs()
        if client.inspect_commit(f"{j.pipeline}@{j.output_commit}").branch == "pr-1"
        and j.id != started.commit_set
    }
    assert jobs["up"].state == "success"
    assert jobs["up"].processed == 1 and jobs["up"].skipped == 2
    assert jobs["count"].state == "success"
    assert client.get_file("up@pr-1:/b.txt") == b"BETA\nSECOND LINE\n"
    assert client.get_file("count@pr-1:/lines") == b"4\n"

    # Master is untouched.
    assert client.inspect_branch("up@master").head == master_up
    assert client.get_file("count@master:/lines") == master_count
    assert client.get_file("up@master:/b.txt") == b"BETA\n"

    report = build_report(client, "master", "pr-1")
    text = render_markdown(report)
    assert "/b.txt" in text and "lines" in text
    changed = {(r.repo, f.path) for r in report.repos for f in r.files if f.change == "changed"}
    assert {("in", "/b.txt"), ("up", "/b.txt"), ("count", "/lines")} <= changed


def test_branch_runs_reach_downstream_and_keep_egress_off(
    client: tusk.Client, tmp_path: Path
) -> None:
    egress = tmp_path / "egress"
    client.update_pipeline(spec("count", "up", COUNT, "up", egress={"URL": f"file://{egress}"}))
    client.run_scheduler(once=True)
    assert (egress / "lines").read_bytes() == b"3\n"
    (egress / "lines").unlink()

    client.create_branch("in@pr-2", head="master")
    client.run_pipeline("count", branch="pr-2")  # upstream "up" gets pr-2 as well
    assert "pr-2" in client.inspect_repo("up").branches
    client.put_file("in@pr-2:/d.txt", b"d\n")
    client.run_scheduler(once=True)
    assert client.get_file("count@pr-2:/lines") == b"4\n"
    assert not (egress / "lines").exists()  # a branch run never egresses


def test_bad_branch_names_are_refused(client: tusk.Client) -> None:
    before = client.inspect_repo("up").branches
    with pytest.raises(InvalidArgument):
        client.run_pipeline("up", branch="bad branch")
    assert client.inspect_repo("up").branches == before
