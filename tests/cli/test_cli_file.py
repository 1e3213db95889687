"""put / get / list / glob / inspect / diff / copy / delete file."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from clihelpers import Tusk, Write


@pytest.fixture
def repo(tusk: Tusk) -> str:
    tusk("create", "repo", "r")
    return "r"


def paths(tusk: Tusk, address: str) -> list[str]:
    return sorted(
        f["path"] for f in tusk.json("glob", "file", f"{address}:/**") if f["type"] == "file"
    )


# put file: targets


def test_put_single_file_to_path(tusk: Tusk, repo: str, write: Write) -> None:
    src = write("data.csv", "a,b\n1,2\n")
    result = tusk.json("put", "file", "r@master:/tables/t.csv", "-f", str(src))
    assert result["files"] == 1 and result["bytes"] == 8
    assert result["commit"]["state"] == "finished" and result["commit"]["repo"] == "r"
    assert tusk("get", "file", "r@master:/tables/t.csv").stdout == "a,b\n1,2\n"
    assert paths(tusk, "r@master") == ["/tables/t.csv"]


def test_put_keeps_base_name(tusk: Tusk, repo: str, write: Write) -> None:
    src = write("data.csv", "x")
    assert tusk("put", "file", "r@master", "-f", str(src)).stdout == ""
    tusk("put", "file", "r@master:/dir/", "-f", str(src))
    tusk("put", "file", "r@master:/", "-f", str(write("other.txt", "y")))
    assert paths(tusk, "r@master") == ["/data.csv", "/dir/data.csv", "/other.txt"]
    # Without a trailing slash the path is the file's own name.
    tusk("put", "file", "r@master:/dir", "-f", str(src), code=4)


def test_put_default_branch_is_master(tusk: Tusk, repo: str, write: Write) -> None:
    tusk("put", "file", "r:/x", "-f", str(write("x", "1")))
    assert tusk("get", "file", "r:/x").stdout == "1"
    assert tusk("get", "file", "r@master:/x").stdout == "1"


def test_put_from_stdin(tusk: Tusk, repo: str) -> None:
    data = bytes(range(256)) * 1000
    result = tusk.json("put", "file", "r@master:/bin/blob", "-f", "-", input=data)
    assert result["bytes"] == len(data)
    assert tusk("get", "file", "r@master:/bin/blob").stdout_bytes == data


def test_put_from_stdin_needs_path(tusk: Tusk, repo: str) -> None:
    before = tusk.state()
    assert "path" in tusk.fails("put", "file", "r@master", "-f", "-", input=b"x", code=2)
    assert "path" in tusk.fails("put", "file", "r@master:/d/", "-f", "-", input=b"x", code=2)
    assert tusk.state() == before


def test_put_from_url(tusk: Tusk, repo: str, http_dir: tuple[Path, str]) -> None:
    root, base = http_dir
    (root / "remote.csv").write_bytes(b"id\n1\n2\n")
    (root / "sub").mkdir()
    (root / "sub" / "more.txt").write_bytes(b"more")
    tusk("put", "file", "r@master", "-f", f"{base}/remote.csv")
    tusk("put", "file", "r@master:/named.csv", "-f", f"{base}/remote.csv")
    tusk("put", "file", "r@master:/many", "-f", f"{base}/remote.csv", "-f", f"{base}/sub/more.txt")
    assert tusk("get", "file", "r@master:/remote.csv").stdout == "id\n1\n2\n"
    assert tusk("get", "file", "r@master:/named.csv").stdout == "id\n1\n2\n"
    assert tusk("get", "file", "r@master:/many/more.txt").stdout == "more"


def test_put_from_missing_url(tusk: Tusk, repo: str, http_dir: tuple[Path, str]) -> None:
    _root, base = http_dir
    before = tusk.state()
    message = tusk.fails("put", "file", "r@master:/x", "-f", f"{base}/missing.csv", code=6)
    assert "404" in message
    assert tusk.state() == before


def test_put_several_files_one_commit(tusk: Tusk, repo: str, write: Write) -> None:
    a, b = write("a.txt", "A"), write("sub/b.txt", "B")
    result = tusk.json("put", "file", "r@master:/in", "-f", str(a), "-f", str(b))
    assert result["files"] == 2
    assert paths(tusk, "r@master") == ["/in/a.txt", "/in/b.txt"]
    assert len(tusk.json("list", "commit", "r@master")) == 1


def test_put_input_list(tusk: Tusk, repo: str, write: Write, tmp_path: Path) -> None:
    a, b = write("a.txt", "A"), write("b.txt", "B")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# sources\n{a}\n\n{b}\n")
    result = tusk.json("put", "file", "r@master:/listed", "-i", str(listing))
    assert result["files"] == 2
    assert paths(tusk, "r@master") == ["/listed/a.txt", "/listed/b.txt"]
    # The list can come from stdin, and a one-line list still means "a directory".
    tusk("put", "file", "r@master", "-i", "-", input=f"{a}\n")
    assert "/a.txt" in paths(tusk, "r@master")


def test_put_input_list_errors(tusk: Tusk, repo: str, write: Write, tmp_path: Path) -> None:
    before = tusk.state()
    assert "list file" in tusk.fails("put", "file", "r@master", "-i", str(tmp_path / "no"), code=6)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{write('a.txt', 'A')}\n{tmp_path / 'missing.txt'}\n")
    assert "missing.txt" in tusk.fails("put", "file", "r@master", "-i", str(listing), code=6)
    dup = tmp_path / "dup.txt"
    dup.write_text(f"{write('x/a.txt', '1')}\n{write('y/a.txt', '2')}\n")
    assert "a.txt" in tusk.fails("put", "file", "r@master", "-i", str(dup), code=2)
    assert tusk.state() == before


def test_put_append(tusk: Tusk, repo: str, write: Write) -> None:
    tusk("put", "file", "r@master:/log", "-f", str(write("1", "one\n")))
    tusk("put", "file", "r@master:/log", "-f", str(write("2", "two\n")), "--append")
    assert tusk("get", "file", "r@master:/log").stdout == "one\ntwo\n"
    tusk("put", "file", "r@master:/log", "-f", "-", "-a", input=b"three\n")
    assert tusk("get", "file", "r@master:/log").stdout == "one\ntwo\nthree\n"
    tusk("put", "file", "r@master:/log", "-f", str(write("3", "new\n")))
    assert tusk("get", "file", "r@master:/log").stdout == "new\n"


def test_put_directory(tusk: Tusk, repo: str, write: Write, tmp_path: Path) -> None:
    write("tree/a.txt", "a")
    write("tree/deep/er/b.bin", bytes(5000))
    src = tmp_path / "src" / "tree"
    result = tusk.json("put", "file", "r@master", "-r", "-f", str(src))
    assert result["files"] == 2 and result["bytes"] == 5001
    tusk("put", "file", "r@master:/copy", "-r", "-f", str(src))
    assert paths(tusk, "r@master") == [
        "/copy/a.txt",
        "/copy/deep/er/b.bin",
        "/tree/a.txt",
        "/tree/deep/er/b.bin",
    ]
    # A path is where the directory's contents go, the root included.
    tusk("create", "repo", "flat")
    tusk("put", "file", "flat@master:/", "-r", "-f", str(src))
    assert paths(tusk, "flat@master") == ["/a.txt", "/deep/er/b.bin"]


def test_put_errors_change_nothing(tusk: Tusk, repo: str, write: Write, tmp_path: Path) -> None:
    src = write("a.txt", "a")
    tusk("put", "file", "r@master:/a.txt", "-f", str(src))
    finished = tusk.json("inspect", "commit", "r@master")["id"]
    before = tusk.state()
    assert "finished" in tusk.fails("put", "file", f"r@{finished}:/x", "-f", str(src), code=4)
    assert "no such local file" in tusk.fails(
        "put", "file", "r@master:/x", "-f", str(tmp_path / "nope"), code=6
    )
    assert "-r" in tusk.fails("put", "file", "r@master:/x", "-f", str(tmp_path / "src"), code=6)
    assert "directory" in tusk.fails("put", "file", "r@master", "-r", "-f", str(src), code=6)
    assert ".." in tusk.fails("put", "file", "r@master:/a/../b", "-f", str(src), code=2)
    assert "not found" in tusk.fails("put", "file", "nope@master:/x", "-f", str(src), code=3)
    assert "invalid" in tusk.fails("put", "file", "r@bad branch:/x", "-f", str(src), code=2)
    assert "write to a branch" in tusk.fails("put", "file", "r@master^:/x", "-f", str(src), code=2)
    assert "source" in tusk.fails("put", "file", "r@master:/x", code=2)
    assert "one directory" in tusk.fails(
        "put", "file", "r@master", "-r", "-f", str(src), "-f", str(src), code=2
    )
    # A directory where a file is needed.
    tusk("put", "file", "r@master:/d/inner", "-f", str(src))
    before = tusk.state()
    assert tusk.fails("put", "file", "r@master:/d/inner/x", "-f", str(src), code=4)
    assert tusk.state() == before


def test_put_directory_refuses_bad_local_names(tusk: Tusk, repo: str, write: Write) -> None:
    good = write("bad/ok.txt", "ok")
    (good.parent / "line\nbreak.txt").write_text("x")
    before = tusk.state()
    message = tusk.fails("put", "file", "r@master:/", "-r", "-f", str(good.parent), code=2)
    assert "line\\nbreak.txt" in message and "newlines" in message
    assert tusk.state() == before


# get file


@pytest.fixture
def filled(tusk: Tusk, repo: str, write: Write) -> dict[str, bytes]:
    files = {
        "/top.txt": b"top",
        "/data/a.csv": b"1,2\n",
        "/data/b.csv": b"3,4\n",
        "/data/raw/c.bin": bytes(range(256)) * 400,
    }
    for path, data in files.items():
        tusk("put", "file", f"r@master:{path}", "-f", str(write(path.lstrip("/"), data)))
    return files


def test_get_file_stdout_and_output(tusk: Tusk, filled: dict[str, bytes], tmp_path: Path) -> None:
    assert tusk("get", "file", "r@master:/data/raw/c.bin").stdout_bytes == filled["/data/raw/c.bin"]
    out = tmp_path / "out.bin"
    assert tusk("get", "file", "r@master:/data/raw/c.bin", "-o", str(out)).stdout == ""
    assert out.read_bytes() == filled["/data/raw/c.bin"]
    # -o into an existing directory keeps the file's name.
    (tmp_path / "dl").mkdir()
    tusk("get", "file", "r@master:/top.txt", "-o", str(tmp_path / "dl"))
    assert (tmp_path / "dl" / "top.txt").read_bytes() == b"top"
    summary = tusk("-o", "json", "get", "file", "r@master:/top.txt", "-o", str(out)).json()
    assert summary["bytes"] == 3 and summary["path"] == str(out)


def test_get_file_errors(tusk: Tusk, filled: dict[str, bytes], tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    assert "no such file" in tusk.fails("get", "file", "r@master:/nope", "-o", str(out), code=3)
    assert not out.exists() and list(tmp_path.glob(".out.txt*")) == []
    assert "-r" in tusk.fails("get", "file", "r@master:/data", code=4)
    assert "-o DIR" in tusk.fails("get", "file", "r@master:/data", "-r", code=2)
    assert ".." in tusk.fails("get", "file", "r@master:/data/../top.txt", code=2)
    assert "not found" in tusk.fails("get", "file", "r@nope:/top.txt", code=3)
    assert "not found" in tusk.fails("get", "file", "nope@master:/top.txt", code=3)


def test_get_directory(tusk: Tusk, filled: dict[str, bytes], tmp_path: Path) -> None:
    out = tmp_path / "out"
    tusk("get", "file", "r@master:/data", "-r", "-o", str(out))
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == {
        "a.csv": filled["/data/a.csv"],
        "b.csv": filled["/data/b.csv"],
        "raw/c.bin": filled["/data/raw/c.bin"],
    }
    whole = tmp_path / "whole"
    summary = tusk("-o", "json", "get", "file", "r@master", "-r", "-o", str(whole)).json()
    assert summary["files"] == 4
    assert (whole / "data" / "raw" / "c.bin").read_bytes() == filled["/data/raw/c.bin"]


def test_get_tar(tusk: Tusk, filled: dict[str, bytes], tmp_path: Path) -> None:
    raw = tusk("get", "file", "r@master:/data", "--tar").stdout_bytes
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert got == {
        "data/a.csv": filled["/data/a.csv"],
        "data/b.csv": filled["/data/b.csv"],
        "data/raw/c.bin": filled["/data/raw/c.bin"],
    }
    out = tmp_path / "all.tar"
    tusk("get", "file", "r@master", "--tar", "-o", str(out))
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == sorted(p.lstrip("/") for p in filled)


# reading


def test_list_file(tusk: Tusk, filled: dict[str, bytes]) -> None:
    root = tusk.json("list", "file", "r@master")
    assert [(f["path"], f["type"]) for f in root] == [("/data", "dir"), ("/top.txt", "file")]
    assert root[0]["files"] == 3
    assert [f["path"] for f in tusk.json("list", "file", "r@master:/data")] == [
        "/data/a.csv",
        "/data/b.csv",
        "/data/raw",
    ]
    table = tusk("list", "file", "r@master:/data").lines
    assert table[0].split() == ["NAME", "TYPE", "SIZE"]
    assert any(line.split()[:2] == ["/data/raw/", "dir"] for line in table)
    assert any("100.0 KiB" in line for line in table)
    assert "no such file" in tusk.fails("list", "file", "r@master:/missing", code=3)


def test_glob_file(tusk: Tusk, filled: dict[str, bytes]) -> None:
    got = [f["path"] for f in tusk.json("glob", "file", "r@master:/**/*.csv")]
    assert got == ["/data/a.csv", "/data/b.csv"]
    assert [f["path"] for f in tusk.json("glob", "file", "r@master:/*")] == ["/data", "/top.txt"]
    assert tusk.json("glob", "file", "r@master:/**/*.none") == []
    assert "/data/a.csv" in tusk("glob", "file", "r@master:/data/?.csv").stdout
    assert "pattern" in tusk.fails("glob", "file", "r@master", code=2)


def test_inspect_file(tusk: Tusk, filled: dict[str, bytes]) -> None:
    info = tusk.json("inspect", "file", "r@master:/data/raw/c.bin")
    assert (
        info["type"] == "file" and info["size"] == 256 * 400 and info["path"] == "/data/raw/c.bin"
    )
    assert info["chunks"] >= 1 and len(info["hash"]) == 64
    d = tusk.json("inspect", "file", "r@master:/data")
    assert d["type"] == "dir" and d["files"] == 3
    assert "Hash:" in tusk("inspect", "file", "r@master:/top.txt").stdout
    assert "no such file" in tusk.fails("inspect", "file", "r@master:/nope", code=3)


def test_diff_file(tusk: Tusk, filled: dict[str, bytes], write: Write) -> None:
    old = tusk.json("inspect", "commit", "r@master")["id"]
    tusk("start", "commit", "r@master")
    tusk("put", "file", "r@master:/data/a.csv", "-f", str(write("a2", "changed\n")))
    tusk("put", "file", "r@master:/new.txt", "-f", str(write("n", "new")))
    tusk("delete", "file", "r@master:/top.txt")
    tusk("finish", "commit", "r@master")

    entries = tusk.json("diff", "file", "r@master")
    by_path = {e["path"]: e for e in entries}
    assert {p: e["change"] for p, e in by_path.items()} == {
        "/data/a.csv": "changed",
        "/new.txt": "added",
        "/top.txt": "removed",
    }
    assert by_path["/new.txt"]["new_size"] == 3 and by_path["/new.txt"]["old_size"] is None
    assert by_path["/top.txt"]["old_size"] == 3 and by_path["/top.txt"]["new_hash"] is None
    assert by_path["/data/a.csv"]["old_hash"] != by_path["/data/a.csv"]["new_hash"]

    # An explicit OLD, the other way round, and limited to a path.
    reverse = tusk.json("diff", "file", f"r@{old}", "r@master")
    assert {e["path"]: e["change"] for e in reverse}["/new.txt"] == "removed"
    limited = tusk.json("diff", "file", "r@master:/data", f"r@{old}")
    assert [e["path"] for e in limited] == ["/data/a.csv"]
    table = tusk("diff", "file", "r@master").stdout
    assert "added" in table and "/new.txt" in table


def test_copy_file(tusk: Tusk, filled: dict[str, bytes]) -> None:
    tusk("create", "repo", "other")
    info = tusk.json("copy", "file", "r@master:/data", "other@master:/copied")
    assert info["repo"] == "other" and info["files"] == 3
    assert (
        tusk("get", "file", "other@master:/copied/raw/c.bin").stdout_bytes
        == filled["/data/raw/c.bin"]
    )
    tusk("copy", "file", "r@master:/top.txt", "r@master:/top-copy.txt")
    assert tusk("get", "file", "r@master:/top-copy.txt").stdout == "top"
    before = tusk.state()
    assert "no such file" in tusk.fails("copy", "file", "r@master:/nope", "r@master:/x", code=3)
    assert "destination" in tusk.fails("copy", "file", "r@master:/top.txt", "r@master", code=2)
    assert tusk.state() == before


def test_delete_file(tusk: Tusk, filled: dict[str, bytes]) -> None:
    info = tusk.json("delete", "file", "r@master:/data/raw")
    assert info["files"] == 3
    assert paths(tusk, "r@master") == ["/data/a.csv", "/data/b.csv", "/top.txt"]
    assert tusk("delete", "file", "r@master:/top.txt", "-d", "bye").stdout == ""
    assert tusk.json("inspect", "commit", "r@master")["description"] == "bye"
    before = tusk.state()
    assert "path" in tusk.fails("delete", "file", "r@master", code=2)
    assert tusk.fails("delete", "file", "r@master:/nope", code=3)
    assert tusk.state() == before
