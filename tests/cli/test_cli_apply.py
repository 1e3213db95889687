"""``tusk apply``: declarative repos and pipelines from files in a git work tree.

Every test builds a real git repository with ``git`` and applies its ``specs/`` folder with
the CLI (in-process, on the test's home); jobs run with ``tusk up --once``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from clihelpers import Tusk, assert_one_error

from tusk.cli.main import cli

UP = 'for f in "$TUSK_PFS"/data/*; do tr a-z A-Z < "$f" > "$TUSK_PFS/out/$(basename "$f")"; done'
COUNT = 'cat "$TUSK_PFS"/up/* | wc -l > "$TUSK_PFS/out/lines"'
REMOTE = "https://ci-bot:s3cret-token@git.example.com/team/proj.git"


@pytest.fixture(autouse=True)
def no_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUSK_SANDBOX", "none")


def pipeline(name: str, repo: str, cmd: str, **extra: Any) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": repo, "glob": "/*"}},
        "transform": {"cmd": ["sh", "-c", cmd]},
        **extra,
    }


class Project:
    """A git work tree with specs/ (repos.yaml and pipelines.yaml) and a fake remote."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.specs = root / "specs"
        self.specs.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "ci@example.com")
        self.git("config", "user.name", "CI")
        self.git("remote", "add", "origin", REMOTE)

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.root), *args], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def write(self, name: str, *docs: dict[str, Any]) -> None:
        (self.specs / name).write_text(yaml.safe_dump_all(docs, sort_keys=False))

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project(tmp_path / "proj")
    p.write("repos.yaml", {"kind": "repo", "name": "data", "description": "raw text"})
    # Consumer first in the file: apply must still create "up" before "count".
    p.write(
        "pipelines.yaml",
        pipeline("count", "up", COUNT),
        pipeline("up", "data", UP, description="upper-case every file"),
    )
    p.commit("specs")
    return p


def changes(result: dict[str, Any]) -> dict[str, str]:
    return {f"{c['kind']}/{c['name']}": c["action"] for c in result["changes"]}


def apply(tusk: Tusk, project: Project, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = tusk.json("apply", "-f", str(project.specs), *args)
    return result


def test_apply_creates_in_graph_order_and_records_the_git_commit(
    tusk: Tusk, project: Project
) -> None:
    sha = project.git("rev-parse", "HEAD")
    result = apply(tusk, project)
    assert result["dry_run"] is False
    assert changes(result) == {
        "repo/data": "create",
        "pipeline/up": "create",
        "pipeline/count": "create",
    }
    names = [c["name"] for c in result["changes"] if c["kind"] == "pipeline"]
    assert names == ["up", "count"]
    assert tusk.json("inspect", "repo", "data")["description"] == "raw text"
    info = tusk.json("inspect", "pipeline", "up", "--history")
    git = info["versions"][0]["origin"]["git"]
    assert git["sha"] == sha
    assert git["branch"] == "main"
    assert git["dirty"] is False
    assert git["remote"] == "https://git.example.com/team/proj.git"  # no credentials kept
    assert git["path"] == "specs/pipelines.yaml"

    # Data in, jobs run, and lineage leads from an output file to the code commit.
    (project.root / "in.txt").write_text("hello\nworld\n")
    tusk("put", "file", "data@master:/a.txt", "-f", str(project.root / "in.txt"))
    tusk("up", "--once")
    assert tusk("get", "file", "count@master:/lines").stdout.strip() == "2"
    step = tusk.json("lineage", "count@master:/lines")
    assert step["pipeline"] == "count" and step["code"]["sha"] == sha
    assert step["inputs"][0]["pipeline"] == "up"
    assert step["inputs"][0]["code"]["sha"] == sha
    assert sha[:12] in tusk("lineage", "count@master:/lines").stdout


def test_apply_twice_changes_nothing(tusk: Tusk, project: Project) -> None:
    apply(tusk, project)
    (project.root / "in.txt").write_text("x\n")
    tusk("put", "file", "data@master:/a.txt", "-f", str(project.root / "in.txt"))
    tusk("up", "--once")
    jobs = tusk.json("list", "job")
    before = tusk.state()

    again = apply(tusk, project)
    assert set(changes(again).values()) == {"unchanged"}
    assert again["jobs"] == [] and again["commit_sets"] == []
    assert tusk.json("list", "job") == jobs
    assert tusk.state() == before
    assert tusk.json("inspect", "pipeline", "up")["version"] == 1
    assert "applied 0 change(s)" in tusk("apply", "-f", str(project.specs)).stdout


def test_dry_run_shows_a_spec_diff_and_changes_nothing(tusk: Tusk, project: Project) -> None:
    apply(tusk, project)
    project.write(
        "pipelines.yaml",
        pipeline("count", "up", COUNT),
        pipeline("up", "data", UP.replace("a-z A-Z", "a-y A-Y"), description="v2"),
    )
    new_sha = project.commit("change up")
    before = tusk.state()

    out = tusk("apply", "-f", str(project.specs), "--dry-run").stdout
    assert "update" in out and "unchanged" in out
    assert "-description: upper-case every file" in out and "+description: v2" in out
    assert "a-y A-Y" in out
    assert "dry run: 1 change(s) planned, nothing applied" in out
    plan = apply(tusk, project, "--dry-run")
    assert plan["dry_run"] is True and changes(plan)["pipeline/up"] == "update"
    assert tusk.state() == before
    assert tusk.json("inspect", "pipeline", "up")["version"] == 1

    result = apply(tusk, project)
    assert changes(result)["pipeline/up"] == "update"
    assert changes(result)["pipeline/count"] == "unchanged"
    info = tusk.json("inspect", "pipeline", "up", "--history")
    assert info["version"] == 2
    assert info["versions"][-1]["origin"]["git"]["sha"] == new_sha
    assert tusk.json("inspect", "pipeline", "count")["version"] == 1


def test_prune_deletes_only_when_asked(tusk: Tusk, project: Project) -> None:
    apply(tusk, project)
    project.write("pipelines.yaml", pipeline("up", "data", UP, description="upper-case every file"))
    project.commit("drop count")

    kept = apply(tusk, project)
    assert changes(kept)["pipeline/count"] == "unmanaged"
    assert {p["name"] for p in tusk.json("list", "pipeline")} == {"up", "count"}

    pruned = apply(tusk, project, "--prune")
    assert changes(pruned)["pipeline/count"] == "delete"
    assert changes(pruned)["pipeline/up"] == "unchanged"
    assert [p["name"] for p in tusk.json("list", "pipeline")] == ["up"]


def test_every_problem_is_named_and_nothing_is_applied(tusk: Tusk, project: Project) -> None:
    project.write(
        "broken.yaml",
        {"kind": "repo", "name": "bad name!"},
        {"kind": "dataset", "name": "x"},
        {"pipeline": {"name": "p1"}, "input": {"pfs": {"repo": "data", "glob": "/*"}}},
        pipeline("p2", "nowhere", "true"),
    )
    before = tusk.state()
    error = tusk.fails("apply", "-f", str(project.specs), code=2)
    assert "nothing was applied" in error
    assert "broken.yaml (document 1 of 4)" in error and "bad name!" in error
    assert "unknown kind 'dataset'" in error
    assert "transform" in error  # p1 has no transform
    assert tusk.state() == before
    assert tusk.json("list", "pipeline") == []

    # The shape is fine, but p2 reads a repo that neither exists nor is declared.
    project.write("broken.yaml", pipeline("p2", "nowhere", "true"))
    error = tusk.fails("apply", "-f", str(project.specs), code=2)
    assert "reads repo nowhere, which neither exists nor is declared" in error
    assert tusk.state() == before


def test_a_cycle_is_refused(tusk: Tusk, project: Project) -> None:
    project.write("pipelines.yaml", pipeline("a", "b", "true"), pipeline("b", "a", "true"))
    error = tusk.fails("apply", "-f", str(project.specs), code=2)
    assert "cycle" in error
    assert "a -> b -> a" in error or "b -> a -> b" in error
    assert tusk.json("list", "repo") == []


def test_a_failure_while_applying_rolls_everything_back(tusk: Tusk, project: Project) -> None:
    # Valid documents, but "late" pins a commit that does not exist: found only while
    # creating it, after the repo and "up" were written in the same transaction.
    project.write(
        "late.yaml",
        {
            "pipeline": {"name": "late"},
            "input": {"pfs": {"repo": "up", "glob": "/*", "commit": "0" * 32}},
            "transform": {"cmd": ["true"]},
        },
    )
    error = tusk.fails("apply", "-f", str(project.specs), code=2)
    assert "nothing was applied" in error and "late" in error
    assert tusk.json("list", "repo") == []
    assert tusk.json("list", "pipeline") == []
    assert tusk("fsck").exit_code == 0


def test_a_dirty_tree_is_recorded_and_warned(tusk: Tusk, project: Project) -> None:
    (project.specs / "repos.yaml").write_text(
        yaml.safe_dump({"kind": "repo", "name": "data", "description": "edited"})
    )
    r = tusk("apply", "-f", str(project.specs), "-o", "json")
    assert "warning:" in r.stderr and "uncommitted changes" in r.stderr
    result = json.loads(r.stdout)
    assert result["warnings"]
    git = tusk.json("inspect", "pipeline", "up", "--history")["versions"][0]["origin"]["git"]
    assert git["dirty"] is True
    assert tusk.json("inspect", "repo", "data")["description"] == "edited"


def test_bad_paths_and_an_unreachable_server(tusk: Tusk, tmp_path: Path) -> None:
    error = tusk.fails("apply", "-f", str(tmp_path / "missing"), code=6)
    assert "no such spec file or folder" in error
    (tmp_path / "empty").mkdir()
    assert "holds no .yaml" in tusk.fails("apply", "-f", str(tmp_path / "empty"), code=6)
    spec = tmp_path / "one.yaml"
    spec.write_text(yaml.safe_dump({"kind": "repo", "name": "data"}))
    r = tusk.runner.invoke(cli, ["--address", "http://127.0.0.1:9", "apply", "-f", str(spec)])
    assert r.exit_code == 7, r.output
    assert_one_error(r.stderr)
    assert "unreachable" in r.stderr or "cannot reach" in r.stderr


def test_create_pipeline_from_a_git_work_tree_records_the_commit_too(
    tusk: Tusk, project: Project
) -> None:
    tusk("create", "repo", "data")
    project.write("one.json", pipeline("solo", "data", UP))
    sha = project.commit("one pipeline")
    tusk("create", "pipeline", "-f", str(project.specs / "one.json"))
    git = tusk.json("inspect", "pipeline", "solo", "--history")["versions"][0]["origin"]["git"]
    assert git["sha"] == sha and git["path"] == "specs/one.json" and git["dirty"] is False
