"""create / list / inspect / delete branch."""

from __future__ import annotations

from clihelpers import Tusk, Write


def _repo_with_two_commits(tusk: Tusk, write: Write) -> list[str]:
    tusk("create", "repo", "r")
    tusk("put", "file", "r@master:/a", "-f", str(write("a", "1")))
    tusk("put", "file", "r@master:/b", "-f", str(write("b", "2")))
    return [c["id"] for c in tusk.json("list", "commit", "r@master")]


def test_branch_lifecycle(tusk: Tusk, write: Write) -> None:
    newest, oldest = _repo_with_two_commits(tusk, write)
    created = tusk.json("create", "branch", "r@dev", "--head", "master^")
    assert created["name"] == "dev" and created["head"] == oldest
    tusk("create", "branch", "r@empty")

    branches = tusk.json("list", "branch", "r")
    assert {b["name"]: b["head"] for b in branches} == {
        "master": newest,
        "dev": oldest,
        "empty": None,
    }
    table = tusk("list", "branch", "r").stdout
    assert "BRANCH" in table and newest in table and oldest in table

    info = tusk.json("inspect", "branch", "r@dev")
    assert info["repo"] == "r" and info["head"] == oldest
    assert "Head:" in tusk("inspect", "branch", "r@dev").stdout

    # Move a branch with --head (an existing branch plus --head moves it).
    assert tusk.json("create", "branch", "r@dev", "--head", newest)["head"] == newest

    # Files on the branch follow its head.
    assert tusk("get", "file", "r@dev:/b").stdout == "2"

    tusk("delete", "branch", "r@dev")
    assert sorted(b["name"] for b in tusk.json("list", "branch", "r")) == ["empty", "master"]
    # Commits stay reachable by id.
    assert tusk.json("inspect", "commit", f"r@{oldest}")["id"] == oldest


def test_provenance_and_subvenance(tusk: Tusk) -> None:
    tusk("create", "repo", "raw")
    tusk("create", "repo", "out")
    tusk("create", "branch", "raw@master")
    info = tusk.json("create", "branch", "out@master", "-p", "raw@master")
    assert info["provenance"] == ["raw@master"]
    assert tusk.json("inspect", "branch", "raw@master")["subvenance"] == ["out@master"]

    before = tusk.state()
    assert "provenance" in tusk.fails("delete", "branch", "raw@master", code=4)
    assert tusk.state() == before
    tusk("delete", "branch", "raw@master", "--force")
    assert tusk.json("list", "branch", "raw") == []


def test_branch_errors(tusk: Tusk) -> None:
    tusk("create", "repo", "r")
    tusk("create", "branch", "r@master")
    before = tusk.state()
    assert "not found" in tusk.fails("create", "branch", "nope@master", code=3)
    assert "not found" in tusk.fails("inspect", "branch", "r@nope", code=3)
    assert "not found" in tusk.fails("delete", "branch", "r@nope", code=3)
    assert "not found" in tusk.fails("create", "branch", "r@x", "-p", "nope@master", code=3)
    assert "invalid" in tusk.fails("create", "branch", "r@x", "-p", "r@bad!", code=2)
    assert "invalid" in tusk.fails("create", "branch", "r@bad name", code=2)
    assert "already exists" in tusk.fails("create", "branch", "r@master", code=4)
    assert tusk.state() == before


def test_branch_json_delete(tusk: Tusk) -> None:
    tusk("create", "repo", "r")
    tusk("create", "branch", "r@b")
    assert tusk.json("delete", "branch", "r@b") == {"deleted": "r@b"}
