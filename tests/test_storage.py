"""The storage layer: object backend contract, chunks and packs, fsck, gc, migrations."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest
from alembic.script import ScriptDirectory
from botocore.exceptions import ClientError, EndpointConnectionError

import s3server
import tusk.storage.meta as meta_pkg
from s3server import S3Server, free_port, use_test_credentials
from tusk import Client
from tusk.config import StoreConfig
from tusk.errors import CorruptObject, InvalidArgument, StorageError, TuskError
from tusk.storage.backends import LocalBackend, ObjectBackend, open_backend
from tusk.storage.backends.s3 import S3Backend
from tusk.storage.meta.store import SCHEMA_HEAD
from tusk.storage.packs import read_pack_index
from tusk.storage.store import Storage

# The moto S3 endpoint's fixtures: one server per session, a fresh bucket per test.
s3_server = s3server.s3_server
s3_url = s3server.s3_url

MiB = 1024 * 1024


def rand(n: int, seed: bytes = b"seed") -> bytes:
    return blake3.blake3(seed).digest(length=n)


def pack_files(home: Path) -> list[Path]:
    root = home / "objects" / "packs"
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))


def tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


# Object backend contract: every test taking ``backend`` runs on the local folder and on S3
# (moto in server mode, an emulator of the S3 API: tests/s3server.py).


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectBackend]:
    if request.param == "s3":
        b = open_backend(request.getfixturevalue("s3_url"))
    else:
        b = LocalBackend(tmp_path / "objects")
    yield b
    b.close()


@pytest.fixture
def local_backend(tmp_path: Path) -> Iterator[LocalBackend]:
    b = LocalBackend(tmp_path / "objects")
    yield b
    b.close()


def leftovers(backend: ObjectBackend) -> list[str]:
    """What interrupted puts leave behind: temp files, or unfinished multipart uploads."""
    if isinstance(backend, LocalBackend):
        return [p.name for p in tmp_files(backend.root)]
    assert isinstance(backend, S3Backend)
    uploads = backend._client.list_multipart_uploads(Bucket=backend.bucket).get("Uploads", [])
    return [u["Key"] for u in uploads]


def leave_partial(backend: ObjectBackend, key: str) -> None:
    """Leave what a put killed midway leaves."""
    if isinstance(backend, LocalBackend):
        parent, _, name = key.rpartition("/")
        tmp = backend.root / parent / f".tmp-{name}-1-2"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(b"partial")
    else:
        assert isinstance(backend, S3Backend)
        client = backend._client
        up = client.create_multipart_upload(Bucket=backend.bucket, Key=backend._key(key))
        client.upload_part(
            Bucket=backend.bucket,
            Key=backend._key(key),
            UploadId=up["UploadId"],
            PartNumber=1,
            Body=b"partial",
        )


def test_backend_put_get_range_exists_delete(backend: ObjectBackend) -> None:
    data = rand(100_000)
    assert not backend.exists("packs/ab/abc")
    backend.put("packs/ab/abc", data)
    assert backend.exists("packs/ab/abc")
    assert backend.get("packs/ab/abc") == data
    assert backend.get_range("packs/ab/abc", 0, 10) == data[:10]
    assert backend.get_range("packs/ab/abc", 12345, 777) == data[12345 : 12345 + 777]
    assert backend.get_range("packs/ab/abc", len(data) - 5, 5) == data[-5:]
    assert backend.get_range("packs/ab/abc", 7, 0) == b""
    backend.put("x", memoryview(b"a memoryview"))
    assert backend.get("x") == b"a memoryview"
    backend.put("empty", b"")
    assert backend.get("empty") == b""
    # Overwriting replaces the whole object.
    backend.put("x", b"short")
    assert backend.get("x") == b"short"

    backend.delete("packs/ab/abc")
    assert not backend.exists("packs/ab/abc")
    with pytest.raises(StorageError):
        backend.get("packs/ab/abc")
    with pytest.raises(StorageError):
        backend.get_range("packs/ab/abc", 0, 1)
    with pytest.raises(StorageError):
        backend.get_range("packs/ab/abc", 0, 0)
    backend.delete("packs/ab/abc")  # deleting a missing key is fine (as in S3)
    backend.delete("never/was")
    assert leftovers(backend) == []


def test_backend_missing_and_short_reads(backend: ObjectBackend) -> None:
    with pytest.raises(StorageError) as exc:
        backend.get("nope")
    assert "nope" in str(exc.value)
    assert isinstance(exc.value, TuskError)
    with pytest.raises(StorageError):
        backend.get_range("nope", 0, 1)
    backend.put("small", b"12345")
    with pytest.raises(StorageError):
        backend.get_range("small", 3, 10)  # past the end
    with pytest.raises(StorageError):
        backend.get_range("small", 30, 10)  # starts past the end


def test_backend_list(backend: ObjectBackend) -> None:
    backend.put("packs/00/p1", b"1")
    backend.put("packs/01/p2", b"22")
    backend.put("other/thing", b"333")
    # What an interrupted put left is never listed.
    leave_partial(backend, "packs/00/p3")
    listed = {o.key: o.size for o in backend.list("packs/")}
    assert listed == {"packs/00/p1": 1, "packs/01/p2": 2}
    assert {o.key for o in backend.list()} == {"packs/00/p1", "packs/01/p2", "other/thing"}
    assert [o.key for o in backend.list("packs/01")] == ["packs/01/p2"]
    assert list(backend.list("zzz")) == []
    assert all(o.mtime > time.time() - 3600 for o in backend.list())


@pytest.mark.parametrize("key", ["", "a//b", "../escape", "a/../../b", "a/./b", "/abs", "x\0y"])
def test_backend_rejects_bad_keys(backend: ObjectBackend, key: str) -> None:
    with pytest.raises(InvalidArgument):
        backend.put(key, b"x")
    with pytest.raises(InvalidArgument):
        backend.get(key)
    with pytest.raises(InvalidArgument):
        backend.exists(key)
    if isinstance(backend, LocalBackend):
        assert not (backend.root.parent / "escape").exists()
    assert list(backend.list()) == []


def test_backend_put_parts_and_sync(backend: ObjectBackend) -> None:
    parts = [b"TUSK", memoryview(b"-parts-"), rand(10_000)]
    backend.put_parts("p/one", parts, durable=False)
    backend.sync(["p/one"])
    assert backend.get("p/one") == b"".join(bytes(p) for p in parts)
    backend.put_parts("p/two", [rand(5000)] * 300, durable=False, sync_soon=True)
    backend.sync(["p/one", "p/two"])
    assert backend.get("p/two") == rand(5000) * 300
    backend.sync([])
    assert leftovers(backend) == []


def test_backend_put_stream(backend: ObjectBackend) -> None:
    blocks = [rand(1000, b"%d" % i) for i in range(50)]
    backend.put_stream("s/one", iter(blocks), durable=False)
    backend.sync(["s/one"])
    assert backend.get("s/one") == b"".join(blocks)
    backend.put_stream("s/one", (b for b in [b"new", memoryview(b" contents")]), size=12)
    assert backend.get("s/one") == b"new contents"
    backend.put_stream("s/empty", iter([]))
    assert backend.get("s/empty") == b""
    assert leftovers(backend) == []


def test_backend_put_is_atomic(
    local_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = local_backend
    backend.put("obj", b"old contents")
    assert not tmp_files(backend.root)

    real_write = os.write
    calls = {"n": 0}

    def failing_writev(fd: int, buffers: list[memoryview]) -> int:
        # A short write first (as a full disk gives), then the error.
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(28, "No space left on device")
        return real_write(fd, b"".join(bytes(b) for b in buffers)[:1000])

    monkeypatch.setattr(os, "writev", failing_writev)
    with pytest.raises(OSError):
        backend.put("obj", rand(50_000))
    with pytest.raises(OSError):
        backend.put("new", rand(50_000))
    monkeypatch.undo()

    # Readers see the old object or nothing, never a partial one.
    assert backend.get("obj") == b"old contents"
    assert not backend.exists("new")
    assert {o.key for o in backend.list()} == {"obj"}
    # And a failed put leaves no temp file behind.
    assert tmp_files(backend.root) == []


def test_backend_remove_stale_temp(local_backend: LocalBackend) -> None:
    backend = local_backend
    backend.put("a/b", b"x")
    old = backend.root / "a" / ".tmp-b-1-1"
    old.write_bytes(b"old partial")
    past = time.time() - 7200
    os.utime(old, (past, past))
    fresh = backend.root / "a" / ".tmp-c-1-1"
    fresh.write_bytes(b"in progress")
    assert backend.remove_stale_temp(time.time() - 3600) == 1
    assert not old.exists()
    assert fresh.exists()
    assert backend.get("a/b") == b"x"


def test_open_backend_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b1 = open_backend(str(tmp_path / "plain"))
    b2 = open_backend((tmp_path / "url").as_uri())
    assert isinstance(b1, LocalBackend)
    assert isinstance(b2, LocalBackend)
    b2.put("k", b"v")
    assert (tmp_path / "url" / "k").read_bytes() == b"v"
    with pytest.raises(InvalidArgument):
        open_backend("ftp://example.com/x")
    use_test_credentials(monkeypatch)
    b3 = open_backend("s3://some-bucket/a/prefix/?region=eu-west-1")
    assert isinstance(b3, S3Backend)
    assert (b3.bucket, b3.prefix, b3.url) == (
        "some-bucket",
        "a/prefix",
        "s3://some-bucket/a/prefix?region=eu-west-1",
    )
    b3.close()


# S3 backend


@pytest.fixture
def s3(s3_url: str) -> Iterator[S3Backend]:
    b = S3Backend.from_url(s3_url)
    yield b
    b.close()


def _small_parts_backend(s3: S3Backend) -> S3Backend:
    """The same bucket, with multipart from 6 MiB in parts of 5 MiB (S3's smallest)."""
    return S3Backend(
        s3.bucket, s3.prefix, endpoint=s3.endpoint, multipart_threshold=6 * MiB, part_size=5 * MiB
    )


def test_s3_url_options(monkeypatch: pytest.MonkeyPatch) -> None:
    use_test_credentials(monkeypatch)
    b = S3Backend.from_url(
        "s3://bkt/p?endpoint=http://127.0.0.1:9000&region=eu-central-1&addressing=virtual"
        "&max_attempts=2&connect_timeout=1.5&read_timeout=3&multipart_threshold=128MiB"
        "&part_size=8M&upload_threads=2&checksums=when_supported"
    )
    assert (b.bucket, b.prefix, b.endpoint) == ("bkt", "p", "http://127.0.0.1:9000")
    assert (b.multipart_threshold, b.part_size, b.upload_threads) == (128 * MiB, 8 * MiB, 2)
    # The URL reopens the same backend (Dask workers open storage from it).
    assert b.url == (
        "s3://bkt/p?endpoint=http://127.0.0.1:9000&region=eu-central-1&addressing=virtual"
        "&max_attempts=2&connect_timeout=1.5&read_timeout=3.0&multipart_threshold=134217728"
        "&part_size=8388608&upload_threads=2&checksums=when_supported"
    )
    again = S3Backend.from_url(b.url)
    assert again.url == b.url
    assert again._client.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}
    again.close()
    config = b._client.meta.config
    assert config.region_name == "eu-central-1"
    assert config.s3 == {"addressing_style": "virtual"}
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}
    assert (config.connect_timeout, config.read_timeout) == (1.5, 3.0)
    b.close()
    # A custom endpoint defaults to path-style addressing (MinIO, Ceph RGW), AWS to auto.
    b = S3Backend.from_url("s3://bkt?endpoint=https://minio.example:9000")
    assert b._client.meta.config.s3 == {"addressing_style": "path"}
    assert b.prefix == ""
    b.close()
    b = S3Backend.from_url("s3://bkt/x")
    assert b._client.meta.config.s3 == {"addressing_style": "auto"}
    assert "amazonaws.com" in b.endpoint
    b.close()
    for bad in [
        "s3://bkt/p?endpont=http://x",  # a typo is an error that names the option
        "s3://KEY:SECRET@bkt/p",  # credentials never go in the URL
        "s3:///p",
        "s3://bkt/p?addressing=dns",
        "s3://bkt/p?part_size=1MiB",  # below S3's 5 MiB floor
        "s3://bkt/p?multipart_threshold=lots",
        "s3://bkt/p?max_attempts=0",
        "s3://bkt/p?endpoint=127.0.0.1:9000",
        "s3://bkt/a//b",
        "s3://bkt/../b",
    ]:
        with pytest.raises(InvalidArgument) as exc:
            S3Backend.from_url(bad)
        assert "\n" not in str(exc.value)
    with pytest.raises(InvalidArgument, match="endpont"):
        S3Backend.from_url("s3://bkt/p?endpont=http://x")


def test_s3_keeps_to_its_prefix(s3_server: S3Server, s3: S3Backend) -> None:
    other = S3Backend(s3.bucket, "tusk2", endpoint=s3.endpoint)
    other.put("packs/x", b"other")
    unprefixed = S3Backend(s3.bucket, endpoint=s3.endpoint)
    s3.put("packs/x", b"mine")
    assert [o.key for o in s3.list()] == ["packs/x"]
    assert s3.get("packs/x") == b"mine"
    assert sorted(o.key for o in unprefixed.list()) == ["tusk/packs/x", "tusk2/packs/x"]
    raw = s3_server.client().get_object(Bucket=s3.bucket, Key="tusk/packs/x")["Body"].read()
    assert raw == b"mine"
    other.close()
    unprefixed.close()


def test_s3_multipart_upload_for_large_objects(s3: S3Backend) -> None:
    big = _small_parts_backend(s3)
    sent: list[int] = []

    def record(request: object, **_: object) -> None:
        url = str(getattr(request, "url", ""))
        if "partNumber=" in url:
            sent.append(int(getattr(request, "headers", {})["Content-Length"]))

    big._client.meta.events.register("before-send.s3.UploadPart", record)
    # A pack's shape: a header, thousands of small chunk buffers, a footer.
    parts: list[bytes | memoryview] = [b"HEAD"]
    parts += [memoryview(rand(4096, b"%d" % i)) for i in range(3000)]
    parts.append(b"FOOT" * 10)
    data = b"".join(bytes(p) for p in parts)
    assert len(data) > 2 * 5 * MiB
    big.put_parts("packs/big", parts, durable=False, sync_soon=True)
    big.sync(["packs/big"])
    assert sorted(sent, reverse=True) == [5 * MiB, 5 * MiB, len(data) - 10 * MiB]
    head = big._client.head_object(Bucket=s3.bucket, Key="tusk/packs/big")
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of a 3-part upload
    assert head["ContentLength"] == len(data)
    assert s3.get("packs/big") == data
    # Ranges within and across part boundaries.
    for off, n in [(0, 4), (5 * MiB - 3, 10), (10 * MiB - 1, 2), (len(data) - 40, 40)]:
        assert s3.get_range("packs/big", off, n) == data[off : off + n]
    assert leftovers(s3) == []
    # One bytes object above the threshold goes the same way.
    one = rand(7 * MiB)
    big.put("packs/one", one)
    head = big._client.head_object(Bucket=s3.bucket, Key="tusk/packs/one")
    assert head["ETag"].strip('"').endswith("-2")
    assert s3.get("packs/one") == one
    # Below the threshold: one plain PUT.
    big.put("packs/small", rand(MiB))
    head = big._client.head_object(Bucket=s3.bucket, Key="tusk/packs/small")
    assert "-" not in head["ETag"]
    big.close()


def test_s3_put_stream_sends_parts_as_the_blocks_come(s3: S3Backend) -> None:
    # One upload thread: part 1 goes up while part 2 is cut, so memory stays at two parts.
    big = S3Backend(
        s3.bucket, s3.prefix, endpoint=s3.endpoint, multipart_threshold=6 * MiB,
        part_size=5 * MiB, upload_threads=1,
    )  # fmt: skip
    made: list[bytes] = []
    sent: list[int] = []  # blocks made when each part went up

    def record(request: object, **_: object) -> None:
        if "partNumber=" in str(getattr(request, "url", "")):
            sent.append(len(made))

    def blocks() -> Iterator[bytes]:
        for i in range(80):  # 20 MiB in 256 KiB blocks
            made.append(rand(256 * 1024, b"%d" % i))
            yield made[-1]

    big._client.meta.events.register("before-send.s3.UploadPart", record)
    big.put_stream("streamed", blocks())
    assert len(sent) == 4 and sent[0] <= 41 < len(made) == 80
    assert s3.get("streamed") == b"".join(made)
    assert leftovers(s3) == []
    big.close()


def test_s3_failed_multipart_upload_is_aborted(
    s3: S3Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = _small_parts_backend(s3)
    big.put("obj", b"old contents")
    real = big._client.upload_part

    def failing_upload_part(**kwargs: object) -> object:
        if kwargs["PartNumber"] == 2:
            raise EndpointConnectionError(endpoint_url=big.endpoint)
        return real(**kwargs)

    monkeypatch.setattr(big._client, "upload_part", failing_upload_part)
    with pytest.raises(StorageError, match="unreachable"):
        big.put("obj", rand(12 * MiB))
    with pytest.raises(StorageError):
        big.put("new", rand(12 * MiB))
    # Readers see the old object or nothing, and no upload is left to bill.
    assert s3.get("obj") == b"old contents"
    assert not s3.exists("new")
    assert [o.key for o in s3.list()] == ["obj"]
    assert leftovers(s3) == []
    big.close()


def test_s3_ranged_reads_send_a_range_header(s3: S3Backend) -> None:
    data = rand(300_000)
    s3.put("r", data)
    ranges: list[str] = []

    def record(request: object, **_: object) -> None:
        headers = getattr(request, "headers", {})
        value = headers.get("Range")
        ranges.append(value.decode() if isinstance(value, bytes) else str(value))

    s3._client.meta.events.register("before-send.s3.GetObject", record)
    assert s3.get_range("r", 1000, 24) == data[1000:1024]
    assert s3.get_range("r", 0, 1) == data[:1]
    assert s3.get_range("r", len(data) - 1, 1) == data[-1:]
    assert ranges == ["bytes=1000-1023", "bytes=0-0", f"bytes={len(data) - 1}-{len(data) - 1}"]
    with pytest.raises(StorageError, match="shorter than expected"):
        s3.get_range("r", len(data) - 1, 2)
    with pytest.raises(InvalidArgument):
        s3.get_range("r", -1, 2)


def test_s3_list_paginates(s3: S3Backend) -> None:
    paged = S3Backend(s3.bucket, s3.prefix, endpoint=s3.endpoint, list_page_size=2)
    pages = []
    paged._client.meta.events.register("before-send.s3.ListObjectsV2", lambda **kw: pages.append(1))
    keys = [f"packs/{i:02x}/p{i}" for i in range(7)]
    for i, k in enumerate(keys):
        s3.put(k, b"x" * i)
    listed = list(paged.list("packs/"))
    assert [o.key for o in listed] == keys
    assert [o.size for o in listed] == list(range(7))
    assert len(pages) == 4
    paged.close()


def test_s3_missing_key_and_bucket(s3_server: S3Server, s3: S3Backend) -> None:
    with pytest.raises(StorageError) as exc:
        s3.get("packs/ab/missing")
    assert str(exc.value) == f"object 'packs/ab/missing' is missing from {s3.location}"
    assert isinstance(exc.value.__cause__, ClientError)  # kept for debugging, not shown
    with pytest.raises(StorageError, match="missing"):
        s3.get_range("packs/ab/missing", 10, 10)
    assert not s3.exists("packs/ab/missing")
    s3.delete("packs/ab/missing")
    nobucket = S3Backend("no-such-bucket-here", "p", endpoint=s3.endpoint)
    with pytest.raises(StorageError, match="bucket 'no-such-bucket-here' does not exist"):
        nobucket.put("k", b"v")
    with pytest.raises(StorageError, match="does not exist"):
        list(nobucket.list())
    nobucket.close()


def test_s3_endpoint_down_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    use_test_credentials(monkeypatch)
    server = S3Server()
    bucket = server.new_bucket()
    b = open_backend(server.url(bucket, max_attempts="3", connect_timeout="2"))
    b.put("k", b"v")
    assert b.get("k") == b"v"
    server.stop()
    expected = f"object store unreachable at {server.endpoint} (retry when it is back)"
    started = time.monotonic()
    for op in (
        lambda: b.get("k"),
        lambda: b.get_range("k", 0, 1),
        lambda: b.put("k2", b"v"),
        lambda: b.exists("k"),
        lambda: b.delete("k"),
        lambda: list(b.list()),
        lambda: b.remove_stale_temp(time.time()),
    ):
        with pytest.raises(StorageError) as exc:
            op()
        assert str(exc.value) == expected
        assert exc.value.code == "storage_error"
    assert time.monotonic() - started < 30  # retried, with short backoffs, then gave up
    b.close()
    # A port where nothing ever listened says the same.
    closed = open_backend(f"s3://bkt/p?endpoint=http://127.0.0.1:{free_port()}&max_attempts=1")
    with pytest.raises(StorageError, match=r"^object store unreachable at http://127\.0\.0\.1"):
        closed.get("k")
    closed.close()


def test_s3_without_credentials(s3: S3Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    b = S3Backend(s3.bucket, endpoint=s3.endpoint)
    with pytest.raises(StorageError, match=r"no usable credentials .* AWS_ACCESS_KEY_ID"):
        b.get("k")
    b.close()


def test_s3_remove_stale_temp_aborts_interrupted_uploads(
    s3_server: S3Server, s3: S3Backend
) -> None:
    s3.put("packs/done", b"x")
    leave_partial(s3, "packs/killed")
    # An upload outside the prefix belongs to someone else.
    s3_server.client().create_multipart_upload(Bucket=s3.bucket, Key="elsewhere/upload")
    assert sorted(leftovers(s3)) == ["elsewhere/upload", "tusk/packs/killed"]
    # moto dates every upload 2010-11-10, so only the age test against 2010 can be seen here.
    assert s3.remove_stale_temp(0) == 0
    assert s3.remove_stale_temp(time.time()) == 1
    assert leftovers(s3) == ["elsewhere/upload"]
    assert s3.get("packs/done") == b"x"


def test_tusk_cli_does_not_import_boto3() -> None:
    code = (
        "import sys, tusk, tusk.cli.main\n"
        "from tusk.storage.store import Storage\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_client_end_to_end_on_s3(
    s3_server: S3Server, s3_url: str, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small multipart settings so the 16 MiB packs go up in parts, as big packs do on S3.
    url = f"{s3_url}&multipart_threshold=8MiB&part_size=5MiB"
    monkeypatch.setenv("TUSK_STORAGE_URL", url)
    bucket = S3Backend.from_url(url)
    big = rand(20 * MiB, b"big")
    src = tmp_path / "src"
    for i in range(300):
        d = src / f"d{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.txt").write_bytes(b"small %d" % i)
    with Client(home) as c:
        c.create_repo("r")
        assert c.put_file("r@master:/big.bin", big).bytes == len(big)
        assert c.put_dir("r@master:/in", src).files == 300
        c.put_file("r@master:/note.txt", b"hello s3")
        assert c.get_file("r@master:/big.bin") == big
        assert c.get_file("r@master:/in/d1/f100.txt") == b"small 100"
        report = c.fsck()
        assert report.ok, report.problems
    # The data lives in the bucket, not in the home.
    assert pack_files(home) == []
    packs = [o for o in bucket.list("packs/") if o.size > 0]
    assert len(packs) >= 2
    assert any(o.size > 8 * MiB for o in packs)  # a pack that went up in parts
    assert leftovers(bucket) == []

    with Client(home) as c:  # a new process finds it all again
        assert c.get_file("r@master:/big.bin") == big
        assert c.get_file("r@master:/note.txt") == b"hello s3"
        c.create_repo("keep")
        c.put_file("keep@master:/k", b"kept")
        c.delete_repo("r")
        report_gc = c.gc(grace=0)
        assert report_gc.packs_deleted >= 2
        assert c.get_file("keep@master:/k") == b"kept"
        report = c.fsck()
        assert report.ok, report.problems
        assert report.notes == []
        # A pack deleted behind Tusk's back is found missing, as on the local disk.
        (victim,) = [o.key for o in bucket.list("packs/")]
        bucket.delete(victim)
        report = c.fsck()
        assert not report.ok
        assert any("missing" in p for p in report.problems), report.problems
    with Client(home) as c, pytest.raises(StorageError, match="missing"):
        c.get_file("keep@master:/k")
    bucket.close()


# Chunk store


def test_chunk_store_round_trip(tmp_path: Path) -> None:
    data = rand(5 * MiB)
    storage = Storage.open(tmp_path / "home")
    try:
        with storage.chunks.writer() as w:
            refs = w.write_bytes(data)
        stats = w.stats()
        assert stats.bytes_in == len(data)
        assert stats.new_chunks == len(set(refs)) > 5  # content-defined chunks
        assert sum(n for _, n in refs) == len(data)
        assert b"".join(storage.chunks.read_chunks(refs)) == data
        # A second session finds every chunk already stored.
        with storage.chunks.writer() as w2:
            refs2 = w2.write_bytes(data)
        assert refs2 == refs
        assert w2.stats().new_chunks == 0
    finally:
        storage.close()


def test_client_round_trip_5mib_file(client: Client, tmp_path: Path) -> None:
    data = rand(5 * MiB)
    src = tmp_path / "five.bin"
    src.write_bytes(data)
    client.create_repo("r")
    res = client.put_file("r@master:/five.bin", src)
    assert (res.bytes, res.files) == (len(data), 1)
    assert client.get_file("r@master:/five.bin") == data
    info = client.inspect_file("r@master:/five.bin")
    assert info.size == len(data)
    assert info.hash == client.inspect_file("r@master:/five.bin").hash
    assert info.chunks > 5
    assert client.fsck().ok


def test_dedup_same_file_twice_adds_no_chunks(client: Client, tmp_path: Path) -> None:
    data = rand(5 * MiB)
    src = tmp_path / "five.bin"
    src.write_bytes(data)
    client.create_repo("r")
    client.put_file("r@master:/one.bin", src)
    before = client.stats()
    res = client.put_file("r@master:/two.bin", src)
    res3 = client.put_file("r@master:/dir/three.bin", data)  # same bytes, another source type
    after = client.stats()
    assert res.new_chunks == 0
    assert res3.new_chunks == 0
    assert after["pack_bytes"] == before["pack_bytes"]
    assert after["chunks"] == before["chunks"]
    assert client.get_file("r@master:/two.bin") == data
    assert client.get_file("r@master:/dir/three.bin") == data
    assert (
        client.inspect_file("r@master:/one.bin").hash
        == client.inspect_file("r@master:/two.bin").hash
        == client.inspect_file("r@master:/dir/three.bin").hash
    )
    # Also in another repo.
    client.create_repo("other")
    assert client.put_file("other@master:/x.bin", data).new_chunks == 0
    assert client.stats()["pack_bytes"] == before["pack_bytes"]


def test_edit_in_the_middle_stores_few_chunks(client: Client) -> None:
    data = bytearray(rand(8 * MiB))
    client.create_repo("r")
    client.put_file("r@master:/big.bin", bytes(data))
    before = client.stats()
    data[4 * MiB : 4 * MiB + 100] = b"E" * 100
    res = client.put_file("r@master:/big.bin", bytes(data))
    after = client.stats()
    assert after["pack_bytes"] - before["pack_bytes"] < 1 * MiB
    assert 1 <= res.new_chunks <= 4
    assert client.get_file("r@master:/big.bin") == bytes(data)
    assert client.get_file("r@master^:/big.bin") == rand(8 * MiB)
    # An insertion shifts the bytes after it; content-defined chunking resynchronises.
    data[2 * MiB : 2 * MiB] = b"inserted!" * 10
    before = client.stats()
    res = client.put_file("r@master:/big.bin", bytes(data))
    assert client.stats()["pack_bytes"] - before["pack_bytes"] < 1 * MiB
    assert res.new_chunks <= 4
    assert client.get_file("r@master:/big.bin") == bytes(data)


def test_many_tiny_files_make_few_packs(client: Client) -> None:
    n = 20_000
    client.create_repo("r")
    started = time.monotonic()
    res = client.put_files("r@master:/", ((f"/t/{i % 100}/f{i}", b"tiny %d" % i) for i in range(n)))
    elapsed = time.monotonic() - started
    assert res.files == n
    assert elapsed < 60
    stats = client.stats()
    assert stats["packs"] < 20
    assert len(pack_files(client.home)) < 20
    assert stats["chunks"] == n
    assert client.get_file("r@master:/t/7/f12307") == b"tiny 12307"
    assert client.inspect_commit("r@master").files == n


def test_many_tiny_local_files_make_few_packs(client: Client, tmp_path: Path) -> None:
    n = 2_000
    src = tmp_path / "src"
    for i in range(n):
        d = src / f"d{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.txt").write_bytes(b"local %d" % i)
    client.create_repo("r")
    res = client.put_dir("r@master:/in", src)
    assert res.files == n
    assert len(pack_files(client.home)) < 5
    assert client.get_file("r@master:/in/d3/f1233.txt") == b"local 1233"
    assert client.inspect_commit("r@master").files == n


# fsck


def _setup_data(client: Client) -> bytes:
    data = rand(300_000)
    client.create_repo("r")
    client.put_file("r@master:/a.bin", data)
    client.put_file("r@master:/b.txt", b"hello")
    assert client.fsck().ok
    return data


def _only_pack(client: Client) -> tuple[Path, str]:
    packs = pack_files(client.home)
    biggest = max(packs, key=lambda p: p.stat().st_size)
    return biggest, biggest.name


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("back", "word"),
    [(32 + 3, "footer"), (1, "trailer")],  # inside the footer, just before the 32-byte trailer
)
def test_fsck_detects_a_damaged_pack_end(client: Client, back: int, word: str) -> None:
    _setup_data(client)
    pack, pack_id = _only_pack(client)
    _flip(pack, pack.stat().st_size - back)
    report = client.fsck()
    assert not report.ok
    assert any(pack_id in p and word in p for p in report.problems), report.problems


def test_fsck_and_reads_detect_a_damaged_chunk(client: Client) -> None:
    _setup_data(client)
    pack, pack_id = _only_pack(client)
    entries = read_pack_index(pack.read_bytes())
    target = entries[len(entries) // 2]
    _flip(pack, target.offset + target.length // 2)
    report = client.fsck()
    assert not report.ok
    assert any(pack_id in p and target.hash.hex() in p for p in report.problems), report.problems
    with Client(client.home) as fresh, pytest.raises(CorruptObject):
        fresh.get_file("r@master:/a.bin")


def test_fsck_detects_a_truncated_pack(client: Client) -> None:
    _setup_data(client)
    pack, pack_id = _only_pack(client)
    raw = pack.read_bytes()
    pack.write_bytes(raw[: len(raw) // 2])
    report = client.fsck()
    assert not report.ok
    assert any(pack_id in p for p in report.problems), report.problems


def test_fsck_reports_a_deleted_pack(client: Client) -> None:
    _setup_data(client)
    pack, pack_id = _only_pack(client)
    pack.unlink()
    report = client.fsck()
    assert not report.ok
    assert any(pack_id in p and "missing" in p for p in report.problems), report.problems
    with Client(client.home) as fresh, pytest.raises(StorageError):
        fresh.get_file("r@master:/a.bin")
    assert client.get_file("r@master:/b.txt") == b"hello"  # other packs still read


def test_fsck_detects_a_corrupt_tree_node(client: Client) -> None:
    _setup_data(client)
    db = sqlite3.connect(client.home / "tusk.db")
    try:
        h, data = db.execute("SELECT hash, data FROM nodes LIMIT 1").fetchone()
        import zstandard

        raw = zstandard.ZstdDecompressor().decompress(data)
        bad = zstandard.ZstdCompressor().compress(raw.replace(b'"', b"'", 1))
        db.execute("UPDATE nodes SET data = ? WHERE hash = ?", (bad, h))
        db.commit()
    finally:
        db.close()
    report = client.fsck()
    assert not report.ok
    assert any(bytes(h).hex() in p for p in report.problems), report.problems


def test_fsck_detects_a_missing_tree_node_in_a_running_client(client: Client) -> None:
    """fsck must check the store, not what this process happens to have cached."""
    client.create_repo("r")
    client.put_files("r@master:/", [("/a/b/c", b"c" * 10), ("/a/d", b"d")])
    assert client.get_file("r@master:/a/b/c") == b"c" * 10  # reads (and caches) every node
    db = sqlite3.connect(client.home / "tusk.db")
    try:
        root = db.execute("SELECT tree FROM commits").fetchone()[0]
        victim = db.execute("SELECT hash FROM nodes WHERE hash != ? LIMIT 1", (root,)).fetchone()
        db.execute("DELETE FROM nodes WHERE hash = ?", victim)
        db.commit()
    finally:
        db.close()
    with Client(client.home) as fresh:
        assert not fresh.fsck().ok  # a fresh process sees it
    report = client.fsck()
    assert not report.ok
    assert any(bytes(victim[0]).hex() in p for p in report.problems), report.problems


def test_fsck_notes_orphans_but_stays_ok(client: Client) -> None:
    _setup_data(client)
    LocalBackend(client.home / "objects").put("packs/ff/" + "f" * 32, b"orphan bytes")
    report = client.fsck()
    assert report.ok, report.problems
    assert any("not indexed" in n for n in report.notes)
    assert report.counts["packs"] >= 1
    assert report.counts["chunks_checked"] >= 2


# gc


def test_gc_removes_a_deleted_repos_data(client: Client) -> None:
    _setup_data(client)
    client.put_file("r@dev:/c.bin", rand(200_000, b"c"))
    assert client.stats()["packs"] > 0
    client.delete_repo("r")
    report = client.gc(grace=0)
    assert report.packs_deleted >= 1
    assert report.chunks_deleted >= 3
    assert report.bytes_freed > 500_000
    stats = client.stats()
    assert (stats["packs"], stats["chunks"], stats["nodes"], stats["pack_bytes"]) == (0, 0, 0, 0)
    assert pack_files(client.home) == []
    assert client.fsck().ok
    assert client.fsck().notes == []


def test_gc_keeps_live_data(client: Client) -> None:
    keep = rand(400_000, b"keep")
    old = rand(100_000, b"old")
    client.create_repo("keep")
    client.put_file("keep@master:/old.bin", old)
    client.put_file("keep@master:/old.bin", keep)  # the old version lives in history only
    client.put_file("keep@staged:/s.bin", b"base")
    client.start_commit("keep@staged")
    client.put_file("keep@staged:/open.bin", rand(70_000, b"open"))  # only in an open commit
    client.create_repo("drop")
    client.put_file("drop@master:/gone.bin", rand(300_000, b"gone"))
    client.copy_file("drop@master:/gone.bin", "keep@master:/shared.bin")
    client.put_file("drop@master:/only.bin", rand(300_000, b"only"))
    before = client.stats()
    client.delete_repo("drop")

    report = client.gc(grace=0)
    assert report.chunks_deleted >= 1
    after = client.stats()
    assert after["pack_bytes"] < before["pack_bytes"]
    assert client.get_file("keep@master:/old.bin") == keep
    assert client.get_file("keep@master~2:/old.bin") == old
    assert client.get_file("keep@master:/shared.bin") == rand(300_000, b"gone")
    open_id = client.inspect_commit("keep@staged").id
    assert client.get_file(f"keep@{open_id}:/open.bin") == rand(70_000, b"open")
    report = client.fsck()
    assert report.ok, report.problems
    assert report.notes == []
    # Nothing left to collect.
    again = client.gc(grace=0)
    assert (again.chunks_deleted, again.nodes_deleted, again.packs_deleted) == (0, 0, 0)


def test_gc_after_deleting_a_commit(client: Client) -> None:
    client.create_repo("r")
    client.put_file("r@master:/a", b"a" * 1000)
    client.put_file("r@master:/b", rand(100_000))
    client.delete_commit("r@master")
    report = client.gc(grace=0)
    assert report.chunks_deleted >= 1
    assert report.nodes_deleted >= 1
    assert client.get_file("r@master:/a") == b"a" * 1000
    assert client.list_commits("r@master")[0].files == 1
    assert client.fsck().ok


def test_gc_default_grace_deletes_nothing_new(client: Client) -> None:
    _setup_data(client)
    client.put_file("r@master:/a.bin", b"replaced")
    client.delete_repo("r")
    stats = client.stats()
    files = pack_files(client.home)
    report = client.gc()
    assert (report.nodes_deleted, report.chunks_deleted, report.packs_deleted) == (0, 0, 0)
    assert report.bytes_freed == 0
    assert client.stats() == stats
    assert pack_files(client.home) == files
    # A dry run with no grace reports what would go, and deletes nothing either.
    dry = client.gc(grace=0, dry_run=True)
    assert dry.dry_run
    assert dry.chunks_deleted >= 2
    assert dry.nodes_deleted >= 1
    assert client.stats() == stats
    assert pack_files(client.home) == files


def test_gc_removes_stale_temp_files(client: Client) -> None:
    _setup_data(client)
    tmp = client.home / "objects" / "packs" / ".tmp-leftover-1-1"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(b"partial")
    assert client.gc().temp_files_deleted == 0
    assert tmp.exists()
    assert client.gc(grace=0).temp_files_deleted == 1
    assert not tmp.exists()


def test_sync_none_config_round_trips(home: Path) -> None:
    with Client(home, config=StoreConfig(sync="none")) as c:
        c.create_repo("r")
        c.put_file("r@master:/x", rand(2 * MiB))
        assert c.get_file("r@master:/x") == rand(2 * MiB)
        assert c.fsck().ok


# Metadata schema


def test_alembic_head_matches_schema_head() -> None:
    migrations = Path(meta_pkg.__file__).parent / "migrations"
    script = ScriptDirectory(str(migrations))
    assert script.get_current_head() == SCHEMA_HEAD
    assert len(script.get_heads()) == 1


def test_new_home_is_stamped_and_reopens(home: Path) -> None:
    with Client(home) as c:
        c.create_repo("r")
        c.put_file("r@master:/x", b"x")
    db = sqlite3.connect(home / "tusk.db")
    try:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(SCHEMA_HEAD,)]
    finally:
        db.close()
    with Client(home) as c:
        assert c.get_file("r@master:/x") == b"x"
        assert [r.name for r in c.list_repos()] == ["r"]


def test_backend_put_parts_survives_short_writes(
    local_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """writev may write less than asked; the rest must follow, byte for byte."""
    backend = local_backend
    real_write = os.write

    def short_writev(fd: int, buffers: list[memoryview]) -> int:
        return real_write(fd, b"".join(bytes(b) for b in buffers)[:777])

    monkeypatch.setattr(os, "writev", short_writev)
    parts = [rand(5000), b"", memoryview(rand(3)), rand(2000)] + [rand(10)] * 1500
    backend.put_parts("short", parts)
    monkeypatch.undo()
    assert backend.get("short") == b"".join(bytes(p) for p in parts)
