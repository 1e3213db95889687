"""Projects through the CLI: ``create|list|inspect|delete project``, ``--project`` and
``TUSK_PROJECT`` on every command, ``project`` in pipeline specs, cross-project inputs.

A repo of another project than default is named ``project/repo``. Jobs run in-process on the
embedded home (``tusk wait commit``), without a sandbox.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from clihelpers import Tusk, Write

ENGINES = ("sqlite", "postgresql")

# Copies every file of input "in" to the output, prefixed with the pipeline's project marker.
COPY = 'for f in "$TUSK_PFS"/in/*; do cp "$f" "$TUSK_PFS/out/$(basename "$f")"; done'


@pytest.fixture(autouse=True)
def no_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUSK_SANDBOX", "none")
    monkeypatch.delenv("TUSK_PROJECT", raising=False)


def spec(name: str, repo: str = "data", **pipeline: Any) -> dict[str, Any]:
    return {
        "pipeline": {"name": name, **pipeline},
        "input": {"pfs": {"repo": repo, "glob": "/*", "name": "in"}},
        "transform": {"cmd": ["sh", "-c", COPY]},
    }


def spec_file(write: Write, data: dict[str, Any], name: str) -> str:
    return str(write(name, json.dumps(data)))


def put(tusk: Tusk, write: Write, address: str, text: str, *pre: str) -> None:
    local = write(f"in-{abs(hash((address, text)))}.txt", text)
    tusk(*pre, "put", "file", address, "-f", str(local))


def names(rows: list[dict[str, Any]]) -> list[str]:
    return [r["name"] for r in rows]


def test_create_list_inspect_delete_project(tusk: Tusk) -> None:
    assert names(tusk.json("list", "project")) == ["default"]
    made = tusk.json("create", "project", "research", "-d", "image work")
    assert made["name"] == "research" and made["description"] == "image work"
    assert made["repos"] == []
    assert names(tusk.json("list", "projects")) == ["default", "research"]
    table = tusk("list", "project").stdout
    assert "research" in table and "image work" in table
    assert "*" in next(line for line in table.splitlines() if "default" in line)

    tusk("create", "project", "research", "-d", "images", "--update")
    assert tusk.json("inspect", "project", "research")["description"] == "images"
    assert "already exists" in tusk.fails("create", "project", "research", code=4)

    tusk("create", "repo", "research/images")
    shown = tusk("inspect", "project", "research").stdout
    assert "research/images" in shown and "images" in shown
    assert tusk.json("inspect", "project", "research")["repos"] == ["research/images"]

    tusk("delete", "repo", "research/images")
    assert tusk.json("delete", "project", "research") == {"deleted": "research"}
    assert names(tusk.json("list", "project")) == ["default"]
    assert "not found" in tusk.fails("inspect", "project", "research", code=3)


def test_list_repo_shows_the_current_project_unless_all_projects(tusk: Tusk) -> None:
    tusk("create", "project", "a")
    tusk("create", "repo", "images")
    tusk("create", "repo", "a/images")
    assert names(tusk.json("list", "repo")) == ["images"]
    assert names(tusk.json("--project", "a", "list", "repo")) == ["a/images"]
    assert sorted(names(tusk.json("list", "repo", "--all-projects"))) == ["a/images", "images"]
    table = tusk("list", "repo", "-A").stdout.splitlines()
    assert table[0].split()[:2] == ["PROJECT", "NAME"]
    assert any(line.split()[:2] == ["a", "a/images"] for line in table[1:])
    assert any(line.split()[:2] == ["default", "images"] for line in table[1:])


def test_project_option_and_env_qualify_bare_names(tusk: Tusk, write: Write) -> None:
    tusk("create", "project", "research")
    tusk("--project", "research", "create", "repo", "images")
    assert tusk.json("inspect", "repo", "research/images")["name"] == "research/images"
    assert "not found" in tusk.fails("inspect", "repo", "images", code=3)  # default's: none

    put(tusk, write, "images@master:/a.txt", "from option\n", "--project", "research")
    env = {"TUSK_PROJECT": "research"}
    r = tusk("get", "file", "images@master:/a.txt", env=env)
    assert r.stdout == "from option\n"
    assert tusk("get", "file", "research/images@master:/a.txt").stdout == "from option\n"
    branches = tusk("--project", "research", "list", "branch", "images", "-o", "json").json()
    assert [b["name"] for b in branches] == ["master"]
    commits = tusk("list", "commit", "images@master", "-o", "json", env=env).json()
    assert len(commits) == 1 and commits[0]["repo"] == "research/images"

    # A name with '/' names its project itself; default/x is the default project's x.
    tusk("create", "repo", "images")
    put(tusk, write, "default/images@master:/b.txt", "in default\n", "--project", "research")
    assert tusk("get", "file", "images@master:/b.txt").stdout == "in default\n"
    r = tusk("--project", "research", "glob", "file", "default/images@master:/*", "-o", "json")
    assert [f["path"] for f in r.json()] == ["/b.txt"]
    # --project wins over TUSK_PROJECT; --project default is the default project.
    r = tusk("--project", "default", "get", "file", "images@master:/b.txt", env=env)
    assert r.stdout == "in default\n"

    tusk("--project", "research", "delete", "repo", "images")
    assert names(tusk.json("list", "repo", "--all-projects")) == ["images"]


def test_same_pipeline_name_in_two_projects(tusk: Tusk, write: Write) -> None:
    for project in ("a", "b"):
        tusk("create", "project", project)
        tusk("--project", project, "create", "repo", "data")
        put(tusk, write, "data@master:/f.txt", f"data of {project}\n", "--project", project)
    # One spec, given to each project: by --project, and by pipeline.project in the spec.
    tusk("--project", "a", "create", "pipeline", "-f", spec_file(write, spec("copy"), "a.json"))
    in_b = spec_file(write, spec("copy", project={"name": "b"}), "b.json")
    tusk("create", "pipeline", "-f", in_b)

    pipelines = names(tusk.json("list", "pipeline"))
    assert sorted(pipelines) == ["a/copy", "b/copy"]
    for project in ("a", "b"):
        tusk("wait", "commit", f"{project}/copy@master")
        out = tusk("--project", project, "get", "file", "copy@master:/f.txt").stdout
        assert out == f"data of {project}\n"
        info = tusk.json("--project", project, "inspect", "pipeline", "copy")
        assert info["name"] == f"{project}/copy"
        assert info["spec"]["input"]["pfs"]["repo"] == f"{project}/data"
        jobs = tusk("--project", project, "list", "job", "-p", "copy", "-o", "json").json()
        assert [j["state"] for j in jobs] == ["success"]
        job = jobs[0]["id"]
        shown = tusk.json("--project", project, "inspect", "job", f"copy@{job}")
        assert shown["pipeline"] == f"{project}/copy"
    assert tusk("get", "file", "a/copy@master:/f.txt").stdout == "data of a\n"
    assert tusk("get", "file", "b/copy@master:/f.txt").stdout == "data of b\n"

    # Deleting one leaves the other.
    tusk("--project", "a", "delete", "pipeline", "copy")
    assert names(tusk.json("list", "pipeline")) == ["b/copy"]
    assert tusk("get", "file", "b/copy@master:/f.txt").stdout == "data of b\n"


def test_cross_project_input(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "data")
    put(tusk, write, "data@master:/f.txt", "shared\n")
    tusk("create", "project", "a")
    cross = spec("reader", project={"name": "a"})
    cross["input"]["pfs"]["project"] = {"name": "default"}
    tusk("create", "pipeline", "-f", spec_file(write, cross, "cross.json"))
    assert "a/reader" in names(tusk.json("list", "repo", "--all-projects"))
    tusk("--project", "a", "wait", "commit", "reader@master")
    assert tusk("--project", "a", "get", "file", "reader@master:/f.txt").stdout == "shared\n"
    branch = tusk.json("inspect", "branch", "a/reader@master")
    assert "data@master" in json.dumps(branch["provenance"])

    # A new commit to default's data runs the pipeline of project a.
    put(tusk, write, "data@master:/g.txt", "more\n")
    tusk("wait", "commit", "a/reader@master")
    files = tusk("glob", "file", "a/reader@master:/*", "-o", "json").json()
    assert sorted(f["path"] for f in files) == ["/f.txt", "/g.txt"]
    # Without input.pfs.project, the input is the pipeline's project's repo: none there.
    missing = spec("lost", project={"name": "a"})
    error = tusk.fails("create", "pipeline", "-f", spec_file(write, missing, "lost.json"), code=3)
    assert "a/data" in error


def test_bad_input_changes_nothing(tusk: Tusk, write: Write) -> None:
    tusk("create", "project", "full")
    tusk("create", "repo", "full/images")
    put(tusk, write, "full/images@master:/a.txt", "keep\n")
    before = tusk.state()

    for bad in ("bad name", "a/b", "", "a.b", "x" * 64, "é"):
        assert "invalid project name" in tusk.fails("create", "project", bad, code=2)
    assert "invalid project name" in tusk.fails("inspect", "project", "no/pe", code=2)
    assert "invalid project name" in tusk.fails("--project", "b@d", "list", "repo", code=2)
    r = tusk("list", "repo", code=2, env={"TUSK_PROJECT": "has space"})
    assert r.stderr.startswith("error: invalid project name 'has space'")
    error = tusk.fails("delete", "project", "full", code=4)
    assert "full/images" in error and "delete them first" in error
    assert "default" in tusk.fails("delete", "project", "default", code=2)
    assert "not found" in tusk.fails("delete", "project", "nope", code=3)
    error = tusk.fails("create", "repo", "nope/images", code=3)
    assert "project nope not found" in error and "tusk create project nope" in error
    error = tusk.fails("--project", "nope", "create", "repo", "images", code=3)
    assert "project nope not found" in error
    bad_spec = spec_file(write, spec("p", project={"name": "bad name"}), "bad.json")
    assert "project" in tusk.fails("create", "pipeline", "-f", bad_spec, code=2)
    nowhere = spec_file(write, spec("p", repo="images", project={"name": "nope"}), "no.json")
    tusk.fails("create", "pipeline", "-f", nowhere, code=3)

    assert tusk.state() == before


def test_spec_files_go_to_the_current_project(tusk: Tusk, write: Write) -> None:
    tusk("create", "project", "a")
    tusk("--project", "a", "create", "repo", "data")
    two = "\n---\n".join(json.dumps(spec(n)) for n in ("one", "two"))
    path = str(write("two.yaml", two))
    tusk("--project", "a", "create", "pipeline", "-f", path)
    assert sorted(names(tusk.json("list", "pipeline"))) == ["a/one", "a/two"]
    # The names are checked against the existing pipelines in the same project.
    tusk("--project", "a", "update", "pipeline", "-f", path)
    error = tusk.fails("--project", "a", "create", "pipeline", "-f", path, code=4)
    assert "a/one already exists" in error
    plans = tusk("--project", "a", "create", "pipeline", "--dry-run", "-f", path, "-o", "json")
    assert [p["pipeline"] for p in plans.json()] == ["a/one", "a/two"]
    # A spec naming its project keeps it.
    own = spec_file(write, spec("three", repo="a/data", project={"name": "default"}), "3.json")
    tusk("--project", "a", "create", "pipeline", "-f", own)
    assert "three" in names(tusk.json("list", "pipeline"))
