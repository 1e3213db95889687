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


def test_branch_triggers(tusk: Tusk, write: Write) -> None:
    """``create branch --trigger`` (issue 21): the branch follows master; inspect shows it."""
    newest, _oldest = _repo_with_two_commits(tusk, write)
    info = tusk.json(
        "create", "branch", "r@staging", "--head", "master", "--trigger", "master",
        "--trigger-size", "100MB", "--trigger-commits", "2", "--trigger-cron", "@every 1h",
        "--trigger-all",
    )  # fmt: skip
    assert info["head"] == newest
    trigger = info["trigger"]
    assert {k: trigger[k] for k in ("branch", "size", "commits", "cron_spec", "all")} == {
        "branch": "master", "size": "100MB", "commits": 2, "cron_spec": "@every 1h", "all": True,
    }  # fmt: skip
    shown = tusk("inspect", "branch", "r@staging").stdout
    assert "Trigger:" in shown
    assert "master on size(100MB) and commits(2) and cron(@every 1h)" in shown
    assert tusk.json("inspect", "branch", "r@staging")["trigger"]["size"] == "100MB"
    # Without conditions it follows every commit.
    tusk("create", "branch", "r@mirror", "-t", "master")
    assert "master on every commit" in tusk("inspect", "branch", "r@mirror").stdout
    tusk("put", "file", "r@master:/c", "-f", str(write("c", "3")))
    head = tusk.json("inspect", "branch", "r@master")["head"]
    assert tusk.json("inspect", "branch", "r@mirror")["head"] == head
    assert tusk.json("inspect", "branch", "r@staging")["head"] == newest  # all: not yet
    assert tusk.json("inspect", "branch", "r@master")["trigger"] is None


def test_branch_trigger_errors(tusk: Tusk) -> None:
    tusk("create", "repo", "r")
    tusk("create", "repo", "other")
    tusk("create", "branch", "r@staging", "--trigger", "master")
    tusk("create", "branch", "r@prod", "--trigger", "staging")
    before = tusk.state()
    for target, args, message in [
        ("r@x", ("-t", "master", "--trigger-size", "100 furlongs"), "'100 furlongs' is not a size"),
        ("r@x", ("-t", "master", "--trigger-cron", "every hour"), "is not a cron expression"),
        ("r@x", ("-t", "x"), "a branch cannot trigger on itself"),
        ("r@staging", ("-t", "prod"), "would form a cycle (staging -> prod -> staging)"),
        ("r@x", ("-t", "other@master"), "other@master is a branch of another repo"),
        ("r@x", ("--trigger-commits", "3"), "need the branch to follow"),
    ]:
        assert message in tusk.fails("create", "branch", target, *args, code=2)
    assert "Invalid value" in tusk("create", "branch", "r@x", "--trigger", "master",
                                   "--trigger-commits", "0", code=2).stderr  # fmt: skip
    assert tusk.state() == before
