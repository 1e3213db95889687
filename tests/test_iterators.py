"""Streaming listings: ``iter_files``, ``iter_glob``, ``iter_diff`` and ``iter_commits``.

Every test that takes ``client`` runs in-process (SQLite and PostgreSQL) and over HTTP (a
``RemoteClient`` on a live server, reading NDJSON): each iterator must give exactly what its
list method gives, lazily, and fail with the same exception class before any item. The tests
at the end speak HTTP directly: the NDJSON form of the list routes, and how it fails.
"""

from __future__ import annotations

import inspect
import itertools
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent / "api"))

from apihelpers import Live, client_over, start_live, stop_live

from tusk import Client
from tusk.errors import (
    BranchNotFound,
    CommitNotFound,
    FileNotFound,
    InvalidArgument,
    InvalidPath,
    RepoNotFound,
    StorageError,
)
from tusk.pfs.models import FileInfo
from tusk.pfs.service import PfsService
from tusk.sdk.remote import RemoteClient

API = "/api/v1"
NDJSON = "application/x-ndjson"
ODD_NAME = "/u/\u00e9\u2028\x85.txt"  # line breaks to str.splitlines, not to NDJSON
BIG = 5000


@pytest.fixture(params=["in-process", "in-process-postgresql", "http"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name = str(request.param)
    if name.endswith("postgresql"):
        pg = request.getfixturevalue("pg_server")
        monkeypatch.setenv("TUSK_METADATA_URL", pg.new_database())
    else:
        monkeypatch.delenv("TUSK_METADATA_URL", raising=False)
    return name


@pytest.fixture
def client(transport: str, home: Path) -> Iterator[Client]:
    # Over HTTP on SQLite only: the API layer is the same on either engine.
    with client_over(transport, home) as c:
        yield c


@pytest.fixture
def live(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    monkeypatch.delenv("TUSK_METADATA_URL", raising=False)
    server = start_live(home)
    yield server
    stop_live(server)


def make_history(c: Client) -> list[str]:
    """Repo ``r``: three commits on master (a put, a change set, an add), ``dev`` at the
    first; their ids, oldest first."""
    c.create_repo("r")
    first = c.put_files(
        "r@master",
        [
            ("/a/1.txt", b"one"),
            ("/a/2.txt", b"two"),
            ("/a/sub/3.csv", b"3"),
            ("/b.csv", b"b"),
            (ODD_NAME, b"odd"),
        ],
    ).commit.id
    with c.commit("r@master") as h:
        h.put_file("/a/1.txt", b"ONE")
        h.delete_file("/b.csv")
        h.put_file("/a/sub/4.csv", b"4")
    second = h.id
    third = c.put_file("r@master:/c/5.txt", b"5").commit.id
    c.create_branch("r@dev", head=first)
    return [first, second, third]


# Each iterator gives what its list gives


def test_iter_files_is_list_files(client: Client) -> None:
    first, _, _ = make_history(client)
    assert [f.path for f in client.iter_files("r@master:/a")] == ["/a/1.txt", "/a/2.txt", "/a/sub"]
    assert [f.path for f in client.iter_files("r@master:/u")] == [ODD_NAME]
    for address in (
        "r@master:/",
        "r@master",
        "r@master:/a",
        "r@master:/a/sub/",
        "r@master:/a/1.txt",
        "r@master^2:/",
        f"r@{first}:/a/sub",
        "r@dev:/",
    ):
        listed = client.list_files(address)
        assert listed, address
        assert list(client.iter_files(address)) == listed, address


def test_iter_glob_is_glob_files(client: Client) -> None:
    make_history(client)
    csvs = [f.path for f in client.iter_glob("r@master:/**/*.csv")]
    assert csvs == ["/a/sub/3.csv", "/a/sub/4.csv"]
    for pattern in (
        "r@master:/**",
        "r@master:/*",
        "r@master:/a/*",
        "r@master:/**/sub",
        "r@master^1:/**/*.csv",
        "r@master:/nothing*",
    ):
        assert list(client.iter_glob(pattern)) == client.glob_files(pattern), pattern
    assert client.glob_files("r@master:/**")  # not all empty


def test_iter_diff_is_diff_file(client: Client) -> None:
    _, second, _ = make_history(client)
    changes = [(d.path, d.change) for d in client.iter_diff(f"r@{second}")]
    assert changes == [("/a/1.txt", "changed"), ("/a/sub/4.csv", "added"), ("/b.csv", "removed")]
    for new, old in (
        ("r@master", None),
        ("r@master^1", None),
        ("r@master^2", None),  # the first commit: everything added
        ("r@master:/a", None),
        ("r@master:/a/1.txt", "r@master^2"),
        ("r@master", "r@master^2"),
        ("r@master^2", "r@master"),
        ("r@master", "r@dev"),
        ("r@master", "r@master"),  # nothing
    ):
        assert list(client.iter_diff(new, old)) == client.diff_file(new, old), (new, old)


def test_iter_commits_is_list_commits(client: Client) -> None:
    ids = make_history(client)
    assert [c.id for c in client.iter_commits("r@master")] == ids[::-1]
    for address, number in (
        ("r", None),
        ("r@master", None),
        ("r@master^1", None),
        ("r@dev", None),
        (f"r@{ids[1]}", None),
        ("r", 2),
        ("r@master", 1),
        ("r@master", 0),
        ("r", 0),
    ):
        assert list(client.iter_commits(address, number)) == client.list_commits(address, number)


def test_histories_longer_than_a_batch(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # Read two commits per transaction (the live server runs in this process too).
    monkeypatch.setattr("tusk.pfs.service.COMMIT_BATCH", 2)
    client.create_repo("r")
    ids = [client.put_file(f"r@master:/f{i}", b"%d" % i).commit.id for i in range(7)]
    for number in (None, 0, 1, 2, 3, 4, 7, 9):
        got = [c.id for c in client.iter_commits("r@master", number)]
        assert got == ids[::-1][:number], number
        assert [c.id for c in client.list_commits("r@master", number)] == got
    assert sorted(c.id for c in client.iter_commits("r")) == sorted(ids)
    assert list(client.iter_commits("r", 5)) == client.list_commits("r", 5)


# Lazy, and they fail first


def test_iterators_are_generators_not_lists(client: Client) -> None:
    make_history(client)
    for it in (
        client.iter_files("r@master:/"),
        client.iter_glob("r@master:/**"),
        client.iter_diff("r@master"),
        client.iter_commits("r@master"),
    ):
        assert isinstance(it, types.GeneratorType)
        assert inspect.getgeneratorstate(it) == inspect.GEN_CREATED
        first = next(it)
        assert not isinstance(first, list)
        assert inspect.getgeneratorstate(it) == inspect.GEN_SUSPENDED
        it.close()


FAILURES: list[tuple[str, tuple[Any, ...], type[Exception]]] = [
    ("iter_files", ("nope@master:/",), RepoNotFound),
    ("iter_files", ("r@master:/missing",), FileNotFound),
    ("iter_files", ("r@master:/a/1.txt/x",), FileNotFound),
    ("iter_files", ("r@nobranch:/",), BranchNotFound),
    ("iter_files", ("r@master^9:/",), CommitNotFound),
    ("iter_files", ("r@master:/a/../b",), InvalidPath),
    ("iter_glob", ("nope@master:/**",), RepoNotFound),
    ("iter_glob", ("r@nobranch:/**",), BranchNotFound),
    ("iter_glob", ("r@master",), InvalidArgument),
    ("iter_diff", ("nope@master",), RepoNotFound),
    ("iter_diff", ("r@master:/missing",), FileNotFound),
    ("iter_diff", ("r@master", "r@nobranch"), BranchNotFound),
    ("iter_commits", ("nope",), RepoNotFound),
    ("iter_commits", ("nope@master", 0), RepoNotFound),
    ("iter_commits", ("r@nobranch",), BranchNotFound),
]
LISTS = {
    "iter_files": "list_files",
    "iter_glob": "glob_files",
    "iter_diff": "diff_file",
    "iter_commits": "list_commits",
}


def test_errors_raise_on_the_first_next(client: Client) -> None:
    make_history(client)
    for method, args, error in FAILURES:
        it = getattr(client, method)(*args)  # nothing happens until it is iterated
        with pytest.raises(error):
            next(it)
        assert inspect.getgeneratorstate(it) == inspect.GEN_CLOSED
        with pytest.raises(error):  # and the list method fails the same way
            getattr(client, LISTS[method])(*args)


# A large listing, read in part


def test_first_items_of_a_large_listing(client: Client) -> None:
    client.create_repo("r")
    put = client.put_files("r@master:/big", ((f"f{i:05d}", b"%d" % i) for i in range(BIG)))
    assert put.files == BIG
    it = client.iter_files("r@master:/big")
    head = list(itertools.islice(it, 5))
    assert [f.path for f in head] == [f"/big/f{i:05d}" for i in range(5)]
    assert inspect.getgeneratorstate(it) == inspect.GEN_SUSPENDED  # stopped, not run out
    # Writes go on while a listing is half read; the listing stays on the commit it began on.
    newer = client.put_file("r@master:/big/g", b"g").commit.id
    rest = list(it)
    assert len(head) + len(rest) == BIG
    assert {f.commit for f in head + rest} == {put.commit.id}
    assert [f.path for f in rest[-2:]] == ["/big/f04998", "/big/f04999"]
    # Left early (closed, and dropped), a listing leaves the client fit for more.
    for _ in range(3):
        partial = client.iter_glob("r@master:/big/*")
        assert next(partial).path == "/big/f00000"
        partial.close()
        assert inspect.getgeneratorstate(partial) == inspect.GEN_CLOSED
        assert next(client.iter_files("r@master:/big")).commit == newer
    assert len(client.list_files("r@master:/big")) == BIG + 1


def test_a_listing_builds_only_what_is_read(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = 0
    file_info = PfsService._file_info

    def counted(self: PfsService, *args: Any) -> FileInfo:
        nonlocal made
        made += 1
        return file_info(self, *args)

    with Client(home) as c:
        c.create_repo("r")
        c.put_files("r@master", ((f"/d/f{i:04d}", b"x") for i in range(1000)))
        monkeypatch.setattr(PfsService, "_file_info", counted)
        for it in (c.iter_files("r@master:/d"), c.iter_glob("r@master:/d/*")):
            made = 0
            assert len(list(itertools.islice(it, 3))) == 3
            assert made == 3
            it.close()


def test_a_squash_during_a_history_listing(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits are read a batch per transaction: one squashed between batches is skipped,
    and the history goes on through the commit it was squashed into."""
    monkeypatch.setattr("tusk.pfs.service.COMMIT_BATCH", 2)
    with Client(home) as c:
        c.create_repo("r")
        ids = [c.put_file(f"r@master:/f{i}", b"%d" % i).commit.id for i in range(6)]
        it = c.iter_commits("r@master")
        assert [x.id for x in itertools.islice(it, 2)] == [ids[5], ids[4]]
        c.squash_commit(f"r@{ids[3]}")  # into ids[2]; ids[4] moves onto ids[2]
        assert [x.id for x in it] == [ids[2], ids[1], ids[0]]
        assert [x.id for x in c.list_commits("r@master")] == [ids[5], ids[4], *ids[2::-1]]


def test_both_transports_give_the_same_items(live: Live, home: Path) -> None:
    remote = live.client()
    make_history(cast(Client, remote))
    with Client(home) as local:
        for name, args in (
            ("iter_files", ("r@master:/a",)),
            ("iter_files", ("r@master:/",)),
            ("iter_glob", ("r@master:/**",)),
            ("iter_diff", ("r@master", "r@master^2")),
            ("iter_commits", ("r",)),
            ("iter_commits", ("r@master", 2)),
        ):
            mine = list(getattr(local, name)(*args))
            assert mine, (name, args)
            assert list(getattr(remote, name)(*args)) == mine, (name, args)


# HTTP: the NDJSON form of the list routes


def ndjson_lines(body: bytes) -> list[dict[str, Any]]:
    assert body.endswith(b"\n")
    lines = body.split(b"\n")[:-1]
    assert all(line.isascii() for line in lines)
    values = [json.loads(line) for line in lines]
    assert all(isinstance(v, dict) for v in values)
    return values


def test_list_routes_stream_one_object_per_line(live: Live) -> None:
    remote = live.client()
    make_history(cast(Client, remote))
    remote.put_files("r@master:/big", ((f"f{i:05d}", b"%d" % i) for i in range(BIG)))
    commits = f"{API}/repos/r/commits"
    with httpx.Client(base_url=live.url) as web:
        for url, params in (
            (f"{commits}/master/list/big", {}),
            (f"{commits}/master/list/", {}),
            (f"{commits}/master/list/a/1.txt", {}),
            (f"{commits}/master/glob", {"pattern": "/**/*.csv"}),
            (f"{commits}/master~1/diff/", {}),
            (f"{commits}/master/diff/a", {"old": "r@master~3"}),
            (commits, {}),
            (commits, {"ref": "master", "number": 2}),
        ):
            whole = web.get(url, params=params)
            assert whole.status_code == 200
            assert whole.headers["content-type"] == "application/json"
            streamed = web.get(url, params=params, headers={"accept": NDJSON})
            assert streamed.status_code == 200, streamed.text
            assert streamed.headers["content-type"] == NDJSON
            assert "accept" in streamed.headers["vary"].lower()
            assert ndjson_lines(streamed.content) == whole.json(), url
            assert whole.json(), url
        # The big listing arrives in pieces: its first read holds a part of it only.
        with web.stream("GET", f"{commits}/master/list/big", headers={"accept": NDJSON}) as r:
            first = next(r.iter_raw())
            assert 0 < first.count(b"\n") < BIG
    assert remote.inspect_file(f"r@master:{ODD_NAME}").path == ODD_NAME


ACCEPTS = [
    (None, False),
    ("application/json", False),
    ("*/*", False),
    (NDJSON, True),
    ("application/json;q=0.5, application/x-ndjson", True),
    ("Application/X-NDJSON; charset=utf-8", True),
    ("application/x-ndjson;q=0", False),
    ("application/x-ndjson;q=oops", False),
]


def test_ndjson_only_when_asked_for(live: Live) -> None:
    remote = live.client()
    remote.create_repo("r")
    remote.put_file("r@master:/a", b"a")
    with httpx.Client(base_url=live.url) as web:
        for accept, streamed in ACCEPTS:
            headers = {"accept": accept} if accept is not None else {}
            r = web.get(f"{API}/repos/r/commits/master/list/", headers=headers)
            assert r.status_code == 200
            if streamed:
                assert r.headers["content-type"] == NDJSON, accept
                assert [f["path"] for f in ndjson_lines(r.content)] == ["/a"]
            else:
                assert r.headers["content-type"] == "application/json", accept
                assert [f["path"] for f in r.json()] == ["/a"]


EARLY_ERRORS = [
    ("/repos/nope/commits/master/list/", 404, "repo_not_found"),
    ("/repos/r/commits/dev/list/missing", 404, "file_not_found"),
    ("/repos/r/commits/nobranch/list/", 404, "branch_not_found"),
    ("/repos/r/commits/master/glob?pattern=/**", 404, "branch_not_found"),
    ("/repos/r/commits/dev/diff/?old=nope@master", 404, "repo_not_found"),
    ("/repos/nope/commits", 404, "repo_not_found"),
    ("/repos/r/commits?ref=nobranch", 404, "branch_not_found"),
    ("/repos/r/commits/dev/list/a%2F..%2Fb", 400, "invalid_path"),
]


def test_errors_before_the_stream_are_plain_json(live: Live) -> None:
    remote = live.client()
    remote.create_repo("r")
    remote.put_file("r@dev:/a", b"a")
    with httpx.Client(base_url=live.url) as web:
        for url, status, code in EARLY_ERRORS:
            r = web.get(API + url, headers={"accept": NDJSON})
            assert (r.status_code, r.headers["content-type"]) == (status, "application/json"), url
            assert r.json()["error"]["code"] == code, url


def test_a_failure_midway_ends_the_stream_with_an_error_line(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = live.client()
    remote.create_repo("r")
    remote.put_files("r@master", [("/a", b"a"), ("/b", b"b")])
    pfs = live.services.pfs
    iter_files = pfs.iter_files

    def breaks_after_one(*args: Any) -> Iterator[FileInfo]:
        items = iter_files(*args)
        yield next(items)
        raise StorageError("tree node 00ff is missing (run tusk fsck)")

    monkeypatch.setattr(pfs, "iter_files", breaks_after_one)
    with httpx.Client(base_url=live.url) as web:
        r = web.get(f"{API}/repos/r/commits/master/list/", headers={"accept": NDJSON})
    assert r.status_code == 200
    lines = ndjson_lines(r.content)
    assert [line.get("path") for line in lines[:-1]] == ["/a"]
    assert lines[-1] == {
        "error": {"code": "storage_error", "message": "tree node 00ff is missing (run tusk fsck)"}
    }
    got = []
    with pytest.raises(StorageError, match="tree node 00ff"):
        for f in remote.iter_files("r@master:/"):
            got.append(f.path)
    assert got == ["/a"]


def test_the_sdk_reads_what_other_servers_send() -> None:
    """A server from before NDJSON listings (a JSON array), and a damaged stream."""
    one = {"repo": "r", "commit": "c" * 32, "path": "/a", "type": "file", "size": 1}
    one |= {"files": 1, "hash": "ab", "chunks": 1, "added_later": True}
    answers = {
        "/api/v1/repos/r/commits/old/list/": httpx.Response(200, json=[one, one]),
        "/api/v1/repos/r/commits/cut/list/": httpx.Response(
            200, content=json.dumps(one).encode() + b'\n{"repo": ', headers={"content-type": NDJSON}
        ),
    }
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["accept"])
        return answers[request.url.path]

    with RemoteClient("http://tusk.invalid:7800") as remote:
        remote._t.http.close()
        remote._t.http = httpx.Client(
            transport=httpx.MockTransport(answer), base_url=remote.address + API
        )
        assert [f.path for f in remote.iter_files("r@old:/")] == ["/a", "/a"]
        cut = remote.iter_files("r@cut:/")
        assert next(cut).path == "/a"
        with pytest.raises(StorageError, match="damaged listing"):
            next(cut)
    assert seen == [NDJSON, NDJSON]
