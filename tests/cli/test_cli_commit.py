"""start / finish / list / inspect / wait / squash / delete commit, inspect commit-set."""

from __future__ import annotations

import re

from clihelpers import Tusk, Write

Write = Write


def test_start_put_put_finish(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "r")
    out = tusk("start", "commit", "r@master", "-d", "two files").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", out), out
    commit_id = out

    tusk("put", "file", "r@master:/a.txt", "-f", str(write("a.txt", "alpha")))
    tusk("put", "file", f"r@{commit_id}:/b.txt", "-f", str(write("b.txt", "beta")))
    info = tusk.json("inspect", "commit", f"r@{commit_id}")
    assert info["state"] == "open"
    assert tusk("inspect", "commit", "r@master").stdout.count("open") == 1

    finished = tusk.json("finish", "commit", "r@master")
    assert finished["id"] == commit_id and finished["state"] == "finished"
    assert finished["description"] == "two files"
    assert finished["files"] == 2 and finished["size"] == len("alpha") + len("beta")

    commits = tusk.json("list", "commit", "r@master")
    assert [c["id"] for c in commits] == [commit_id]
    assert tusk("get", "file", "r@master:/a.txt").stdout == "alpha"
    assert tusk("get", "file", f"r@{commit_id}:/b.txt").stdout == "beta"


def test_finish_by_id_with_description(tusk: Tusk) -> None:
    tusk("create", "repo", "r")
    cid = tusk.json("start", "commit", "r@master")["id"]
    assert tusk.json("finish", "commit", f"r@{cid}", "-d", "done")["description"] == "done"
    before = tusk.state()
    assert "already finished" in tusk.fails("finish", "commit", f"r@{cid}", code=4)
    assert tusk.state() == before


def test_start_commit_twice_conflicts(tusk: Tusk) -> None:
    tusk("create", "repo", "r")
    tusk("start", "commit", "r@master")
    before = tusk.state()
    assert "open commit" in tusk.fails("start", "commit", "r@master", code=4)
    assert tusk.state() == before


def test_start_commit_with_parent(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "r")
    tusk("put", "file", "r@master:/a", "-f", str(write("a", "1")))
    first = tusk.json("inspect", "commit", "r@master")["id"]
    tusk("put", "file", "r@master:/b", "-f", str(write("b", "2")))
    info = tusk.json("start", "commit", "r@other", "--parent", first)
    assert info["parent"] == first and info["branch"] == "other"
    tusk("finish", "commit", "r@other")
    assert [f["path"] for f in tusk.json("list", "file", "r@other")] == ["/a"]


def test_list_commit_and_ancestry(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "r")
    for i in range(4):
        tusk("put", "file", "r@master:/f", "-f", str(write("f", str(i))), "-d", f"v{i}")
    commits = tusk.json("list", "commit", "r@master")
    assert [c["description"] for c in commits] == ["v3", "v2", "v1", "v0"]
    ids = [c["id"] for c in commits]
    assert [c["id"] for c in tusk.json("list", "commit", "r@master", "-n", "2")] == ids[:2]
    assert [c["id"] for c in tusk.json("list", "commit", "r")] == ids
    table = tusk("list", "commit", "r").lines
    assert table[0].split()[:3] == ["REPO", "BRANCH", "COMMIT"]
    assert len(table) == 5 and ids[0] in table[1]

    assert tusk.json("inspect", "commit", "r@master^")["id"] == ids[1]
    assert tusk.json("inspect", "commit", "r@master~2")["id"] == ids[2]
    assert tusk.json("inspect", "commit", "r@master^^^")["id"] == ids[3]
    assert tusk("get", "file", "r@master~3:/f").stdout == "0"
    assert tusk.json("inspect", "commit", f"r@{ids[0]}^")["id"] == ids[1]
    text = tusk("inspect", "commit", "r@master").stdout
    assert f"r@{ids[0]}" in text and "finished" in text and ids[1] in text


def test_commit_errors(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "r")
    tusk("put", "file", "r@master:/f", "-f", str(write("f", "x")))
    before = tusk.state()
    missing = "0" * 32
    assert "not found" in tusk.fails("inspect", "commit", f"r@{missing}", code=3)
    assert "not found" in tusk.fails("inspect", "commit", "r@nobranch", code=3)
    assert "not found" in tusk.fails("inspect", "commit", "nope@master", code=3)
    assert tusk.fails("inspect", "commit", "r@master~5", code=3)
    assert "invalid reference" in tusk.fails("inspect", "commit", "r@mas ter", code=2)
    assert "not found" in tusk.fails("list", "commit", "r@nobranch", code=3)
    assert "not found" in tusk.fails("inspect", "commit-set", missing, code=3)
    assert "not found" in tusk.fails("wait", "commit", f"r@{missing}", code=3)
    assert tusk.state() == before


def test_wait_commit(tusk: Tusk) -> None:
    tusk("create", "repo", "r")
    cid = tusk.json("start", "commit", "r@master")["id"]
    message = tusk.fails("wait", "commit", "r@master", "--timeout", "0.2", code=5)
    assert "still open" in message and cid in message
    tusk("finish", "commit", "r@master")
    info = tusk.json("wait", "commit", f"r@{cid}", "--timeout", "0.2")
    assert info["id"] == cid and info["state"] == "finished"
    assert "finished" in tusk("wait", "commit", "r@master").stdout


def test_wait_commit_bad_timeout(tusk: Tusk) -> None:
    tusk("create", "repo", "r")
    r = tusk("wait", "commit", "r@master", "--timeout", "soon", code=2)
    assert "duration" in r.stderr


def test_squash_commit(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "r")
    tusk("put", "file", "r@master:/a", "-f", str(write("a", "1")), "-d", "first")
    tusk("put", "file", "r@master:/b", "-f", str(write("b", "2")), "-d", "second")
    first, second = reversed([c["id"] for c in tusk.json("list", "commit", "r@master")])
    # The parent is the head of no branch and has no other child: it takes the content.
    merged = tusk.json("squash", "commit", f"r@{second}")
    assert merged["id"] == first
    assert merged["files"] == 2
    assert "first" in merged["description"] and "second" in merged["description"]
    assert [c["id"] for c in tusk.json("list", "commit", "r@master")] == [first]
    assert sorted(f["path"] for f in tusk.json("list", "file", "r@master")) == ["/a", "/b"]
    before = tusk.state()
    assert "no parent" in tusk.fails("squash", "commit", "r@master", code=4)
    assert tusk.state() == before


def test_squash_open_commit_refused(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "r")
    tusk("put", "file", "r@master:/a", "-f", str(write("a", "1")))
    tusk("start", "commit", "r@master")
    before = tusk.state()
    assert "open" in tusk.fails("squash", "commit", "r@master", code=4)
    assert tusk.state() == before


def test_delete_commit(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "r")
    tusk("put", "file", "r@master:/a", "-f", str(write("a", "1")))
    tusk("put", "file", "r@master:/b", "-f", str(write("b", "2")))
    head, parent = (c["id"] for c in tusk.json("list", "commit", "r@master"))
    # Only a branch head can be deleted.
    before = tusk.state()
    assert "child" in tusk.fails("delete", "commit", f"r@{parent}", code=4)
    assert tusk.state() == before

    assert tusk("delete", "commit", "r@master").stdout == ""
    assert tusk.json("inspect", "branch", "r@master")["head"] == parent
    assert [f["path"] for f in tusk.json("list", "file", "r@master")] == ["/a"]
    assert "not found" in tusk.fails("inspect", "commit", f"r@{head}", code=3)
    assert tusk.json("delete", "commit", "r@master") == {"deleted": "r@master"}
    assert tusk.json("inspect", "branch", "r@master")["head"] is None


def test_delete_open_commit(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "r")
    tusk("put", "file", "r@master:/a", "-f", str(write("a", "1")))
    done = tusk.json("inspect", "commit", "r@master")["id"]
    tusk("start", "commit", "r@master")
    tusk("put", "file", "r@master:/b", "-f", str(write("b", "2")))
    tusk("delete", "commit", "r@master")
    assert tusk.json("inspect", "commit", "r@master")["id"] == done


def test_inspect_commit_set(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "r")
    tusk("put", "file", "r@master:/a", "-f", str(write("a", "1")))
    info = tusk.json("inspect", "commit", "r@master")
    commits = tusk.json("inspect", "commit-set", info["commit_set"])
    assert info["id"] in [c["id"] for c in commits]
    assert info["id"] in tusk("inspect", "commit-set", info["commit_set"]).stdout


def test_commit_id_prefix(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "r")
    tusk("put", "file", "r@master:/a", "-f", str(write("a", "1")))
    cid = tusk.json("inspect", "commit", "r@master")["id"]
    assert tusk.json("inspect", "commit", f"r@{cid[:8]}")["id"] == cid
    assert tusk("get", "file", f"r@{cid[:8]}:/a").stdout == "1"


def test_list_commit_from_ancestor(tusk: Tusk, write: Write) -> None:
    tusk("create", "repo", "r")
    for i in range(3):
        tusk("put", "file", "r@master:/f", "-f", str(write("f", str(i))))
    ids = [c["id"] for c in tusk.json("list", "commit", "r@master")]
    assert [c["id"] for c in tusk.json("list", "commit", "r@master^")] == ids[1:]
