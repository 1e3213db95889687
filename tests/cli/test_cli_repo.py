"""create / list / inspect / delete repo."""

from __future__ import annotations

import pytest
from clihelpers import Tusk, Write


def test_create_list_inspect_delete(tusk: Tusk) -> None:
    assert tusk("create", "repo", "images", "-d", "raw images").stdout == ""
    tusk("create", "repo", "labels")

    table = tusk("list", "repo").lines
    assert table[0].split() == ["NAME", "CREATED", "SIZE", "(MASTER)", "DESCRIPTION"]
    assert [line.split()[0] for line in table[1:]] == ["images", "labels"]
    assert "raw images" in table[1]

    repos = tusk.json("list", "repo")
    assert [r["name"] for r in repos] == ["images", "labels"]
    assert repos[0]["description"] == "raw images"
    assert repos[0]["size"] == 0

    info = tusk.json("inspect", "repo", "images")
    assert info["name"] == "images"
    assert info["description"] == "raw images"
    assert set(info) >= {"name", "description", "created_at", "size", "branches"}
    text = tusk("inspect", "repo", "images").stdout
    assert "Name:" in text and "images" in text and "raw images" in text

    assert tusk("delete", "repo", "labels").stdout == ""
    assert [r["name"] for r in tusk.json("list", "repo")] == ["images"]


def test_create_repo_json_and_update(tusk: Tusk) -> None:
    created = tusk.json("create", "repo", "r", "-d", "one")
    assert created["name"] == "r" and created["description"] == "one"
    updated = tusk.json("create", "repo", "r", "-d", "two", "--update")
    assert updated["description"] == "two"
    assert tusk.json("inspect", "repo", "r")["description"] == "two"


def test_output_option_on_root_and_subcommand(tusk: Tusk) -> None:
    tusk("create", "repo", "r")
    on_root = tusk("-o", "json", "list", "repo").json()
    on_sub = tusk("list", "repo", "--output", "json").json()
    assert on_root == on_sub
    assert on_root[0]["name"] == "r"
    # The subcommand's choice wins over the root's.
    assert tusk("-o", "json", "list", "repo", "-o", "table").lines[0].startswith("NAME")


def test_plural_alias(tusk: Tusk) -> None:
    tusk("create", "repo", "r")
    assert tusk.json("list", "repos")[0]["name"] == "r"


def test_empty_list(tusk: Tusk) -> None:
    assert tusk.json("list", "repo") == []
    assert tusk("list", "repo").lines[0].startswith("NAME")


@pytest.mark.parametrize("name", ["bad name", "a/b/c", "/b", "x@y", "", "-" * 64])
def test_invalid_name(tusk: Tusk, name: str) -> None:
    tusk("create", "repo", "ok")
    before = tusk.state()
    message = tusk.fails("create", "repo", "--", name, code=2)
    assert "invalid repo name" in message
    assert tusk.state() == before


def test_create_existing_repo(tusk: Tusk) -> None:
    tusk("create", "repo", "r", "-d", "first")
    before = tusk.state()
    message = tusk.fails("create", "repo", "r", "-d", "second", code=4)
    assert "already exists" in message
    assert tusk.state() == before


def test_unknown_repo(tusk: Tusk) -> None:
    assert "not found" in tusk.fails("inspect", "repo", "nope", code=3)
    assert "not found" in tusk.fails("delete", "repo", "nope", code=3)
    assert "not found" in tusk.fails("list", "branch", "nope", code=3)
    assert "not found" in tusk.fails("list", "commit", "nope", code=3)


def test_delete_repo_in_use(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "raw")
    tusk("create", "repo", "clean")
    tusk("put", "file", "raw@master:/a.txt", "-f", str(write("a.txt", "a")))
    tusk("create", "branch", "clean@master", "--provenance", "raw@master")
    before = tusk.state()
    message = tusk.fails("delete", "repo", "raw", code=4)
    assert "raw" in message
    assert tusk.state() == before
    # --force removes it anyway.
    tusk("delete", "repo", "raw", "--force")
    assert [r["name"] for r in tusk.json("list", "repo")] == ["clean"]


def test_delete_repo_json(tusk: Tusk) -> None:
    tusk("create", "repo", "r")
    assert tusk.json("delete", "repo", "r") == {"deleted": "r"}
    assert tusk.json("list", "repo") == []
