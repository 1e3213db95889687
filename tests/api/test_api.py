"""The REST API on a live server: error shapes and statuses, streaming, dropped uploads, docs."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import httpx
import pytest
from apihelpers import Live, start_live, stop_live

import tusk
from tusk.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    InvalidPath,
    RepoNotFound,
    TuskError,
    Unavailable,
)
from tusk.sdk.remote import RemoteClient

API = "/api/v1"


@pytest.fixture
def web(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url) as c:
        yield c


def error_of(r: httpx.Response) -> dict[str, str]:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert "\n" not in body["error"]["message"]
    return dict(body["error"])


def raw_request(live: Live, method: str, target: str, body: bytes = b"") -> tuple[int, Any]:
    """A request whose path goes out exactly as written (httpx would normalise '..')."""
    conn = HTTPConnection(live.server.host, live.server.port, timeout=30)
    try:
        conn.request(method, target, body=body or None)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


# Errors


def test_not_found_shapes(web: httpx.Client) -> None:
    r = web.get(f"{API}/repos/nope")
    assert r.status_code == 404
    assert error_of(r)["code"] == "repo_not_found"
    r = web.get(f"{API}/no/such/route")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    assert "no such route" in error_of(r)["message"]
    r = web.get("/elsewhere")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = web.patch(f"{API}/repos")
    assert r.status_code == 405 and error_of(r)["code"] == "method_not_allowed"


def test_conflict_and_validation(web: httpx.Client) -> None:
    assert web.post(f"{API}/repos", json={"name": "r"}).status_code == 201
    r = web.post(f"{API}/repos", json={"name": "r"})
    assert r.status_code == 409 and error_of(r)["code"] == "already_exists"
    r = web.post(f"{API}/repos", json={"name": "bad name"})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_name"
    r = web.post(f"{API}/repos", content=b'{"name": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_argument"
    assert "malformed JSON" in error_of(r)["message"]
    r = web.post(f"{API}/repos", json={"nom": "r"})
    assert r.status_code == 400 and "body.name" in error_of(r)["message"]
    r = web.get(f"{API}/repos/r/commits", params={"number": -1})
    assert r.status_code == 400 and "number" in error_of(r)["message"]
    r = web.get(f"{API}/repos/r/commits/master~x")
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_argument"
    r = web.get(f"{API}/repos/r/commits/master/wait", params={"timeout": "nan"})
    assert r.status_code == 400


@pytest.mark.parametrize("path", ["a/../b", "%2E%2E/etc/passwd", "a/%2e%2e/b", "a/./b", "a//b"])
def test_path_traversal_is_refused(live: Live, web: httpx.Client, path: str) -> None:
    web.post(f"{API}/repos", json={"name": "r"})
    for method in ("GET", "PUT", "DELETE"):
        status, body = raw_request(live, method, f"{API}/repos/r/commits/master/files/{path}", b"x")
        assert status == 400, (method, body)
        assert body["error"]["code"] == "invalid_path"
    status, body = raw_request(live, "GET", f"{API}/repos/r/commits/master/tar/{path}")
    assert status == 400 and body["error"]["code"] == "invalid_path"
    assert web.get(f"{API}/repos/r/commits").json() == []


def test_json_bodies_over_the_limit_are_413(home: Path) -> None:
    live = start_live(home, max_body=64 * 1024)
    try:
        big = {"name": "r", "description": "x" * 100_000}
        with httpx.Client(base_url=live.url) as web:
            r = web.post(f"{API}/repos", json=big)  # Content-Length says it up front
            assert r.status_code == 413 and error_of(r)["code"] == "too_large"

            def chunks() -> Any:  # no Content-Length: counted as it arrives
                data = json.dumps(big).encode()
                for i in range(0, len(data), 8192):
                    yield data[i : i + 8192]

            r = web.post(
                f"{API}/repos", content=chunks(), headers={"content-type": "application/json"}
            )
            assert r.status_code == 413 and error_of(r)["code"] == "too_large"
            assert web.get(f"{API}/repos").json() == []
            # Uploads stream and are not limited.
            assert web.post(f"{API}/repos", json={"name": "r"}).status_code == 201
            r = web.put(f"{API}/repos/r/commits/master/files/big", content=b"y" * 200_000)
            assert r.status_code == 200 and r.json()["bytes"] == 200_000
    finally:
        stop_live(live)


def test_errors_come_back_as_the_same_classes(live: Live) -> None:
    c = live.client()
    with pytest.raises(RepoNotFound, match="repo nope not found"):
        c.inspect_repo("nope")
    c.create_repo("r")
    with pytest.raises(AlreadyExists) as exc:
        c.create_repo("r")
    assert isinstance(exc.value, Conflict) and exc.value.exit_code == 4
    with pytest.raises(InvalidPath):
        c.get_file("r@master:/a/../b")  # refused before any request


def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with RemoteClient(f"127.0.0.1:{port}") as c, pytest.raises(Unavailable) as exc:
        c.list_repos()
    assert f"http://127.0.0.1:{port}" in exc.value.message and exc.value.exit_code == 7


def test_dead_metadata_store_is_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pgserver import PgServer

    pg = PgServer()
    try:
        monkeypatch.setenv("TUSK_METADATA_URL", pg.new_database())
        live = start_live(tmp_path / "home")
        try:
            c = live.client()
            c.create_repo("r")
            pg.halt()
            r = httpx.get(f"{live.url}{API}/repos")
            assert r.status_code == 503 and error_of(r)["code"] == "unavailable"
            assert httpx.get(f"{live.url}{API}/health").status_code == 503
            with pytest.raises(Unavailable):
                c.inspect_repo("r")
            pg.start()
            assert [r.name for r in c.list_repos()] == ["r"]
        finally:
            stop_live(live)
    finally:
        pg.stop()


# Streaming


class Pattern(io.RawIOBase):
    """``size`` pseudo-random bytes made on the fly (never all in memory), hashed as read."""

    def __init__(self, size: int, seed: int = 1) -> None:
        self.left = size
        self.sha = hashlib.sha256()
        self._seed = hashlib.blake2b(str(seed).encode()).digest()
        self._n = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.left, 1 << 20)
        if n == 0:
            return 0
        block = hashlib.shake_256(self._seed + self._n.to_bytes(8, "big")).digest(n)
        self._n += 1
        b[:n] = block
        self.sha.update(block)
        self.left -= n
        return n


def test_large_file_streams_up_and_down(live: Live) -> None:
    c = live.client()
    c.create_repo("r")
    size = 200 * 1024 * 1024 + 17
    source = Pattern(size)
    result = c.put_file("r@master:/big.bin", io.BufferedReader(source))
    assert result.bytes == size and result.commit.files == 1
    down = hashlib.sha256()
    n = 0
    for block in c.open_file("r@master:/big.bin"):
        assert len(block) <= 16 * 1024 * 1024
        down.update(block)
        n += len(block)
    assert n == size and down.hexdigest() == source.sha.hexdigest()


def test_dropped_upload_leaves_no_commit_and_can_be_sent_again(live: Live) -> None:
    c = live.client()
    c.create_repo("r")
    c.put_file("r@master:/keep", b"kept")
    before = c.list_commits("r")
    for chunked in (False, True):
        with socket.create_connection((live.server.host, live.server.port)) as s:
            head = f"PUT {API}/repos/r/commits/master/files/big HTTP/1.1\r\nHost: x\r\n"
            if chunked:
                head += "Transfer-Encoding: chunked\r\n\r\n"
                s.sendall(head.encode() + b"100000\r\n" + b"z" * 0x100000 + b"\r\n")
            else:
                head += f"Content-Length: {64 << 20}\r\n\r\n"
                s.sendall(head.encode() + b"z" * (4 << 20))
        # The server drops the half upload: same commits, and the file is not there.
        assert c.list_commits("r") == before
        assert [f.path for f in c.list_files("r@master:/")] == ["/keep"]
    data = b"complete" * 100_000
    c.put_file("r@master:/big", io.BytesIO(data))  # sending it again simply works
    assert len(c.list_commits("r")) == len(before) + 1
    assert c.get_file("r@master:/big") == data
    assert c.fsck().ok


def test_dropped_upload_into_an_open_commit_changes_nothing(live: Live) -> None:
    c = live.client()
    c.create_repo("r")
    open_commit = c.start_commit("r@master")
    c.put_file("r@master:/a", b"a")
    with socket.create_connection((live.server.host, live.server.port)) as s:
        s.sendall(
            f"PUT {API}/repos/r/commits/{open_commit.id}/files/b HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: 1000000\r\n\r\n".encode()
            + b"b" * 1000
        )
    staged = c.inspect_commit(f"r@{open_commit.id}")
    assert (staged.state, staged.files) == ("open", 1)
    assert [f.path for f in c.list_files(f"r@{open_commit.id}:/")] == ["/a"]


def test_tar_uploads_over_plain_http(live: Live, web: httpx.Client) -> None:
    c = live.client()
    c.create_repo("r")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("./a.txt", b"A"), ("./sub/b.txt", b"BB")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        d = tarfile.TarInfo("./sub")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
    r = web.post(f"{API}/repos/r/commits/master/tar/data", content=buf.getvalue())
    assert r.status_code == 200 and r.json()["files"] == 2
    assert c.get_file("r@master:/data/sub/b.txt") == b"BB"
    before = c.list_commits("r")

    def tar_of(*members: tarfile.TarInfo) -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as t:
            for m in members:
                t.addfile(m, io.BytesIO(b"x" * m.size) if m.isreg() else None)
        return out.getvalue()

    evil = tarfile.TarInfo("../escape")
    evil.size = 1
    r = web.post(f"{API}/repos/r/commits/master/tar/", content=tar_of(evil))
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_path"
    link = tarfile.TarInfo("link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    r = web.post(f"{API}/repos/r/commits/master/tar/", content=tar_of(link))
    assert r.status_code == 400 and "not a regular file" in error_of(r)["message"]
    r = web.post(f"{API}/repos/r/commits/master/tar/", content=gzip.compress(b"not a tar"))
    assert r.status_code == 400
    assert c.list_commits("r") == before


def test_get_tar_is_the_same_bytes_in_both_modes(live: Live, home: Path) -> None:
    c = live.client()
    c.create_repo("r")
    c.put_files("r@master:/", [("/a/b.txt", b"b" * 70_000), ("/c", b""), ("/ü/d", b"d")])
    remote, local = io.BytesIO(), io.BytesIO()
    assert c.get_tar("r@master:/", remote) == 3
    with tusk.Client(home) as embedded:
        assert embedded.get_tar("r@master:/", local) == 3
    assert remote.getvalue() == local.getvalue()


def test_concurrent_uploads_and_reads(live: Live) -> None:
    c = live.client()
    c.create_repo("r")
    errors: list[BaseException] = []

    def put(i: int) -> None:
        try:
            with RemoteClient(live.url) as mine:
                mine.put_file(f"r@b{i}:/f", io.BytesIO(bytes([i]) * 3_000_000))
                assert mine.get_file(f"r@b{i}:/f") == bytes([i]) * 3_000_000
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(c.list_branches("r")) == 6


# Documents and the server


def test_openapi_and_docs(web: httpx.Client) -> None:
    doc = web.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert f"{API}/repos/{{repo}}/commits/{{ref}}/files/{{path}}" in paths
    put = paths[f"{API}/repos/{{repo}}/commits/{{ref}}/files/{{path}}"]["put"]
    assert "application/octet-stream" in put["requestBody"]["content"]
    listing = paths[f"{API}/repos"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listing["schema"]["items"]["$ref"] == "#/components/schemas/RepoInfo"
    assert "Error" in doc["components"]["schemas"]
    assert len({op["operationId"] for p in paths.values() for op in p.values()}) >= 50
    r = web.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    assert web.get(f"{API}/health").json() == {"status": "ok"}
    assert web.get(f"{API}/version").json()["api"] == "v1"


def test_client_factory(live: Live, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = tusk.Client(address=live.url)
    assert isinstance(remote, RemoteClient) and remote.home == home.resolve()
    remote.close()
    monkeypatch.setenv("TUSK_ADDRESS", live.url + "/")
    from_env = tusk.Client()
    assert isinstance(from_env, RemoteClient) and from_env.address == live.url
    from_env.close()
    with tusk.Client(home) as local:  # an explicit home is always in-process
        assert not isinstance(local, RemoteClient)
    with pytest.raises(InvalidArgument, match="not both"):
        tusk.Client(home, address=live.url)


def test_remote_client_mirrors_the_in_process_client() -> None:
    import inspect

    from tusk.sdk import Client

    def public(cls: type) -> dict[str, Any]:
        return {
            name: member
            for name, member in inspect.getmembers(cls)
            if not name.startswith("_") and callable(member)
        }

    local, remote = public(Client), public(RemoteClient)
    assert sorted(local) == sorted(remote)
    for name, fn in local.items():
        a, b = inspect.signature(fn), inspect.signature(remote[name])
        assert list(a.parameters) == list(b.parameters), name
        for pa, pb in zip(a.parameters.values(), b.parameters.values(), strict=True):
            assert (pa.kind, pa.default, str(pa.annotation)) == (
                pb.kind,
                pb.default,
                str(pb.annotation),
            ), (name, pa.name)
        assert str(a.return_annotation) == str(b.return_annotation), name


def test_scheduler_is_not_remote(live: Live) -> None:
    with RemoteClient(live.url) as c, pytest.raises(InvalidArgument, match="tusk up"):
        c.run_scheduler(once=True)


def test_sdk_import_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, tusk.sdk; "
        "print(sorted(m for m in ('httpx', 'fastapi', 'uvicorn', 'starlette') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_error_code_maps_back() -> None:
    from tusk.api.wire import error_classes, error_from

    for code, cls in error_classes().items():
        err = error_from(cls.status, {"error": {"code": code, "message": "m"}})
        assert type(err) is cls and err.message == "m"
    assert type(error_from(502, "<html>bad gateway</html>")) is Unavailable
    assert type(error_from(418, None)) is TuskError


def test_waits_are_long_polls_and_a_stopping_server_ends_them(home: Path) -> None:
    live = start_live(home)
    c = live.client()
    c.create_repo("r")
    c.start_commit("r@master")
    with pytest.raises(tusk.errors.Timeout, match=r"still open after 0\.3s$"):
        c.wait_commit("r@master", timeout=0.3)
    r = httpx.get(f"{live.url}{API}/repos/r/commits/master/wait", params={"timeout": 0})
    assert r.status_code == 504 and error_of(r)["code"] == "timeout"
    outcome: list[BaseException] = []
    mine = RemoteClient(live.url)

    def waiter() -> None:
        try:
            mine.wait_commit("r@master")  # forever, in 30 s long polls
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    uv = live.server._uvicorn
    assert uv is not None
    try:
        wait_until(lambda: len(uv.server_state.tasks) == 1)  # the wait is in the server
    finally:
        stop_live(live)
        t.join(30)
        mine.close()
    assert len(outcome) == 1 and isinstance(outcome[0], Unavailable), outcome
    assert "stopping" in str(outcome[0])


def wait_until(cond: Any, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
