"""The S3 gateway through boto3, against a real ``tusk up`` (auth off: the embedded case).

One server for the module; each test uses buckets of its own. Writes are checked where they
land: as commits, read back through the SDK over the REST API.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import socket
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import tusk
from gateway import Gateway, start_gateway

MiB = 1 << 20


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("s3gw") / "home"
    g = start_gateway(home, "--s3-domain", "s3.tusk.test")
    yield g
    g.stop()


@pytest.fixture(scope="module")
def s3(gw: Gateway) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=gw.s3,
        aws_access_key_id="anything",
        aws_secret_access_key="anything",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def sdk(gw: Gateway) -> Iterator[tusk.Client]:
    c = tusk.Client(address=gw.api)
    yield c
    c.close()


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def status_of(exc: pytest.ExceptionInfo[ClientError]) -> int:
    return int(exc.value.response["ResponseMetadata"]["HTTPStatusCode"])


def test_buckets_are_branches(s3: Any, sdk: tusk.Client) -> None:
    s3.create_bucket(Bucket="master.images")
    s3.create_bucket(Bucket="dev.images")
    assert {b.name for b in sdk.list_branches("images")} == {"master", "dev"}
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "master.images" in names and "dev.images" in names
    s3.head_bucket(Bucket="master.images")
    assert s3.get_bucket_location(Bucket="master.images").get("LocationConstraint") in (None, "")
    assert s3.get_bucket_versioning(Bucket="master.images")["Status"] == "Enabled"
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket="dev.images")
    assert code_of(exc) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket="nope.images")
    assert status_of(exc) == 404
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket="master.nosuchrepo")
    assert code_of(exc) == "NoSuchBucket"
    # A one-name bucket is branch master of that repo.
    s3.put_object(Bucket="images", Key="short.txt", Body=b"x")
    assert sdk.get_file("images@master:/short.txt") == b"x"
    s3.delete_bucket(Bucket="dev.images")
    assert {b.name for b in sdk.list_branches("images")} == {"master"}
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket="master.images")
    assert code_of(exc) == "BucketNotEmpty"


def test_put_get_head_with_md5_etags_as_commits(s3: Any, sdk: tusk.Client) -> None:
    s3.create_bucket(Bucket="master.objs")
    data = os.urandom(300_000)
    out = s3.put_object(Bucket="master.objs", Key="dir/a.bin", Body=data)
    md5 = hashlib.md5(data).hexdigest()
    assert out["ETag"] == f'"{md5}"'
    commits = sdk.list_commits("objs@master")
    assert len(commits) == 1 and out["VersionId"] == commits[0].id
    assert sdk.get_file("objs@master:/dir/a.bin") == data
    got = s3.get_object(Bucket="master.objs", Key="dir/a.bin")
    assert got["Body"].read() == data and got["ETag"] == f'"{md5}"'
    assert got["ContentLength"] == len(data)
    head = s3.head_object(Bucket="master.objs", Key="dir/a.bin")
    assert head["ContentLength"] == len(data) and head["ETag"] == f'"{md5}"'
    # Content-MD5 is checked: a wrong one commits nothing (a body under one batch of the
    # hashing thread, tusk.s3.offload, and one over it).
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    for body in (b"abc", data):
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket="master.objs", Key="bad.bin", Body=body, ContentMD5=wrong)
        assert code_of(exc) == "BadDigest"
    assert len(sdk.list_commits("objs@master")) == 1
    right = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    s3.put_object(Bucket="master.objs", Key="good.bin", Body=b"abc", ContentMD5=right)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="master.objs", Key="missing")
    assert code_of(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket="master.objs", Key="missing")
    assert status_of(exc) == 404
    # An empty object, and a file put by the CLI/SDK (no MD5 recorded: a derived ETag).
    s3.put_object(Bucket="master.objs", Key="empty", Body=b"")
    assert s3.get_object(Bucket="master.objs", Key="empty")["Body"].read() == b""
    assert (
        s3.get_object(Bucket="master.objs", Key="empty", Range="bytes=-100")["Body"].read() == b""
    )
    sdk.put_file("objs@master:/from-sdk.txt", b"hello")
    head = s3.head_object(Bucket="master.objs", Key="from-sdk.txt")
    assert head["ETag"].strip('"').endswith("-1") and head["ContentLength"] == 5


def test_range_and_conditional_reads(s3: Any) -> None:
    s3.create_bucket(Bucket="master.ranges")
    data = os.urandom(3 * MiB + 17)
    etag = s3.put_object(Bucket="master.ranges", Key="big", Body=data)["ETag"]
    for spec, want in [
        ("bytes=0-9", data[:10]),
        ("bytes=1048570-2097160", data[1048570:2097161]),
        ("bytes=-100", data[-100:]),
        (f"bytes={len(data) - 5}-", data[-5:]),
        (f"bytes=10-{len(data) + 100}", data[10:]),
    ]:
        got = s3.get_object(Bucket="master.ranges", Key="big", Range=spec)
        assert got["Body"].read() == want, spec
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"].endswith(f"/{len(data)}")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="master.ranges", Key="big", Range=f"bytes={len(data)}-")
    assert code_of(exc) == "InvalidRange" and status_of(exc) == 416
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="master.ranges", Key="big", IfNoneMatch=etag)
    assert status_of(exc) == 304
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="master.ranges", Key="big", IfMatch='"0000"')
    assert status_of(exc) == 412
    assert s3.get_object(Bucket="master.ranges", Key="big", IfMatch=etag)["ContentLength"]
    future = datetime.now(UTC) + timedelta(days=1)
    past = datetime.now(UTC) - timedelta(days=1)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="master.ranges", Key="big", IfModifiedSince=future)
    assert status_of(exc) == 304
    s3.get_object(Bucket="master.ranges", Key="big", IfModifiedSince=past)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="master.ranges", Key="big", IfUnmodifiedSince=past)
    assert status_of(exc) == 412


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_listing_pages_prefixes_and_order(s3: Any, sdk: tusk.Client, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="master.many")
    files = {f"k/{i:05d}": b"x" for i in range(2500)}
    # Names that sort differently as keys than as tree entries ('-' < '/' < '0').
    files |= {"a-b": b"1", "a/x": b"2", "a/y/z": b"3", "a.c": b"4", "a0": b"5", "b c/d+e": b"6"}
    src = tmp_path / "many"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    sdk.put_dir("many@master:/", src)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="master.many")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert keys == sorted(files)  # every key, once, in S3's order, over 3 pages
    v1 = s3.get_paginator("list_objects").paginate(
        Bucket="master.many", PaginationConfig={"PageSize": 700}
    )
    assert [o["Key"] for page in v1 for o in page.get("Contents", [])] == sorted(files)
    top = s3.list_objects_v2(Bucket="master.many", Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "b c/", "k/"]
    assert [o["Key"] for o in top["Contents"]] == ["a-b", "a.c", "a0"]
    under = s3.list_objects_v2(Bucket="master.many", Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in under["Contents"]] == ["a/x"]
    assert [p["Prefix"] for p in under["CommonPrefixes"]] == ["a/y/"]
    part = s3.list_objects_v2(Bucket="master.many", Prefix="k/0249", MaxKeys=5)
    assert [o["Key"] for o in part["Contents"]] == [f"k/0249{i}" for i in range(5)]
    assert part["IsTruncated"] is True
    after = s3.list_objects_v2(Bucket="master.many", StartAfter="k/02497")
    assert [o["Key"] for o in after["Contents"]] == ["k/02498", "k/02499"]
    enc = s3.list_objects_v2(Bucket="master.many", Prefix="b ", EncodingType="url")
    # (boto3 decodes keys only when it asked for the encoding itself, as it does by default)
    assert [o["Key"] for o in enc["Contents"]] == ["b%20c/d%2Be"]
    # A continuation over common prefixes does not repeat them.
    first = s3.list_objects_v2(Bucket="master.many", Delimiter="/", MaxKeys=4)
    rest = s3.list_objects_v2(
        Bucket="master.many", Delimiter="/", ContinuationToken=first["NextContinuationToken"]
    )
    seen = [*first.get("Contents", []), *first.get("CommonPrefixes", [])]
    seen += [*rest.get("Contents", []), *rest.get("CommonPrefixes", [])]
    assert len(seen) == 6


def test_copy_delete_and_batch_delete(s3: Any, sdk: tusk.Client) -> None:
    s3.create_bucket(Bucket="master.cp")
    data = os.urandom(2 * MiB)
    etag = s3.put_object(Bucket="master.cp", Key="src.bin", Body=data)["ETag"]
    before = sdk.stats()
    out = s3.copy_object(
        Bucket="master.cp", Key="copy/dst.bin", CopySource={"Bucket": "master.cp", "Key": "src.bin"}
    )
    assert out["CopyObjectResult"]["ETag"] == etag
    assert sdk.get_file("cp@master:/copy/dst.bin") == data
    a = sdk.inspect_file("cp@master:/src.bin")
    b = sdk.inspect_file("cp@master:/copy/dst.bin")
    assert a.hash == b.hash  # the same chunks: nothing copied
    after = sdk.stats()
    assert {k: after[k] - before[k] for k in after if "chunk" in k and k in before} == {
        k: 0 for k in after if "chunk" in k and k in before
    }
    s3.delete_object(Bucket="master.cp", Key="src.bin")
    s3.delete_object(Bucket="master.cp", Key="not-there")  # S3 says 204 all the same
    assert [f.path for f in sdk.list_files("cp@master:/")] == ["/copy"]
    for i in range(5):
        s3.put_object(Bucket="master.cp", Key=f"d/{i}", Body=b"x")
    n = len(sdk.list_commits("cp@master"))
    res = s3.delete_objects(
        Bucket="master.cp",
        Delete={"Objects": [{"Key": f"d/{i}"} for i in range(5)] + [{"Key": "none"}]},
    )
    assert sorted(d["Key"] for d in res["Deleted"]) == sorted(
        [*(f"d/{i}" for i in range(5)), "none"]
    )
    assert len(sdk.list_commits("cp@master")) == n + 1  # one commit for the batch
    s3.put_object(Bucket="master.cp", Key="q", Body=b"x")
    quiet = s3.delete_objects(Bucket="master.cp", Delete={"Objects": [{"Key": "q"}], "Quiet": True})
    assert "Deleted" not in quiet
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket="master.cp", Key="x", CopySource={"Bucket": "master.cp", "Key": "gone"}
        )
    assert code_of(exc) == "NoSuchKey"


def test_multipart_upload_of_200_mib(s3: Any, sdk: tusk.Client, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="master.mp")
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(25):
            f.write(os.urandom(8 * MiB))
    key = "models/big.bin"
    up = s3.create_multipart_upload(Bucket="master.mp", Key=key)["UploadId"]
    listed = s3.list_multipart_uploads(Bucket="master.mp")["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in listed] == [(key, up)]
    parts = []
    md5s = []
    with open(big, "rb") as f:
        for n in range(1, 26):
            chunk = f.read(8 * MiB)
            md5s.append(hashlib.md5(chunk).digest())
            etag = s3.upload_part(
                Bucket="master.mp", Key=key, UploadId=up, PartNumber=n, Body=chunk
            )["ETag"]
            parts.append({"PartNumber": n, "ETag": etag})
    got = s3.list_parts(Bucket="master.mp", Key=key, UploadId=up, MaxParts=10)
    assert [p["PartNumber"] for p in got["Parts"]] == list(range(1, 11)) and got["IsTruncated"]
    assert sdk.list_commits("mp@master") == []  # nothing committed before completion
    done = s3.complete_multipart_upload(
        Bucket="master.mp", Key=key, UploadId=up, MultipartUpload={"Parts": parts}
    )
    want = f'"{hashlib.md5(b"".join(md5s)).hexdigest()}-25"'
    assert done["ETag"] == want
    assert len(sdk.list_commits("mp@master")) == 1
    assert sdk.inspect_file(f"mp@master:/{key}").size == 200 * MiB
    h = hashlib.sha256()
    for block in s3.get_object(Bucket="master.mp", Key=key)["Body"].iter_chunks(MiB):
        h.update(block)
    assert h.hexdigest() == hashlib.sha256(big.read_bytes()).hexdigest()
    assert s3.head_object(Bucket="master.mp", Key=key)["ETag"] == want
    assert s3.list_multipart_uploads(Bucket="master.mp").get("Uploads", []) == []
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket="master.mp", Key=key, UploadId=up)
    assert code_of(exc) == "NoSuchUpload"


def test_multipart_bad_input_commits_nothing(s3: Any, sdk: tusk.Client) -> None:
    s3.create_bucket(Bucket="master.mpbad")
    key = "x.bin"
    up = s3.create_multipart_upload(Bucket="master.mpbad", Key=key)["UploadId"]
    e1 = s3.upload_part(Bucket="master.mpbad", Key=key, UploadId=up, PartNumber=1, Body=b"a" * 1000)
    e2 = s3.upload_part(Bucket="master.mpbad", Key=key, UploadId=up, PartNumber=2, Body=b"b" * 10)
    one, two = {"PartNumber": 1, "ETag": e1["ETag"]}, {"PartNumber": 2, "ETag": e2["ETag"]}
    cases = [
        ([two, one], "InvalidPartOrder"),
        ([one, {"PartNumber": 3, "ETag": e2["ETag"]}], "InvalidPart"),
        ([{"PartNumber": 1, "ETag": '"ffff"'}], "InvalidPart"),
        ([one, two], "EntityTooSmall"),
    ]
    for parts, code in cases:
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(
                Bucket="master.mpbad", Key=key, UploadId=up, MultipartUpload={"Parts": parts}
            )
        assert code_of(exc) == code
    assert sdk.list_commits("mpbad@master") == []
    # A single part below 5 MiB is a whole upload (the last part may be small).
    s3.complete_multipart_upload(
        Bucket="master.mpbad", Key=key, UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1["ETag"]}]},
    )  # fmt: skip
    assert sdk.get_file("mpbad@master:/x.bin") == b"a" * 1000
    up2 = s3.create_multipart_upload(Bucket="master.mpbad", Key="y")["UploadId"]
    s3.abort_multipart_upload(Bucket="master.mpbad", Key="y", UploadId=up2)
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket="master.mpbad", Key="y", UploadId=up2, PartNumber=1, Body=b"z")
    assert code_of(exc) == "NoSuchUpload"
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket="master.mpbad", Key="y", UploadId="0" * 32, PartNumber=1, Body=b"z")
    assert code_of(exc) == "NoSuchUpload"


def test_upload_part_copy_takes_a_range(s3: Any, sdk: tusk.Client) -> None:
    s3.create_bucket(Bucket="master.upc")
    data = os.urandom(6 * MiB)
    s3.put_object(Bucket="master.upc", Key="src", Body=data)
    up = s3.create_multipart_upload(Bucket="master.upc", Key="dst")["UploadId"]
    src = {"Bucket": "master.upc", "Key": "src"}
    p1 = s3.upload_part_copy(
        Bucket="master.upc", Key="dst", UploadId=up, PartNumber=1, CopySource=src
    )
    p2 = s3.upload_part_copy(
        Bucket="master.upc", Key="dst", UploadId=up, PartNumber=2, CopySource=src,
        CopySourceRange="bytes=10-19",
    )  # fmt: skip
    parts = [
        {"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]},
    ]
    s3.complete_multipart_upload(
        Bucket="master.upc", Key="dst", UploadId=up, MultipartUpload={"Parts": parts}
    )
    assert sdk.get_file("upc@master:/dst") == data + data[10:20]


def test_an_open_commit_gathers_many_writes_into_one(
    gw: Gateway, s3: Any, sdk: tusk.Client
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def packs() -> int:  # each write transaction of the gateway writes one pack
        return sum(1 for p in (gw.home / "objects" / "packs").rglob("*") if p.is_file())

    s3.create_bucket(Bucket="master.batch")
    s3.put_object(Bucket="master.batch", Key="seed", Body=b"0")

    def put(i: int) -> str:
        return str(
            s3.put_object(Bucket="master.batch", Key=f"objs/{i}", Body=str(i).encode())["ETag"]
        )

    sdk.start_commit("batch@master")
    before = packs()
    with ThreadPoolExecutor(8) as pool:  # concurrent small puts are written together
        etags = list(pool.map(put, range(80)))
    # Puts that arrive while one is being written wait and go into the next write together:
    # fewer writes (packs) than puts, where one put a write would make 80.
    assert packs() - before < 60
    s3.delete_object(Bucket="master.batch", Key="seed")
    sdk.finish_commit("batch@master")
    commits = sdk.list_commits("batch@master")
    assert len(commits) == 2 and commits[0].files == 80
    assert etags == [f'"{hashlib.md5(str(i).encode()).hexdigest()}"' for i in range(80)]
    head = s3.head_object(Bucket="master.batch", Key="objs/7")
    assert head["ETag"] == etags[7]
    # With no open commit, each PutObject is a commit of its own, concurrent or not.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(100, 116)))
    assert len(sdk.list_commits("batch@master")) == 2 + 16


def test_versions_and_commit_buckets(s3: Any, sdk: tusk.Client) -> None:
    s3.create_bucket(Bucket="master.ver")
    v1 = s3.put_object(Bucket="master.ver", Key="f", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket="master.ver", Key="f", Body=b"two")["VersionId"]
    s3.put_object(Bucket="master.ver", Key="g", Body=b"g")
    v4 = s3.delete_object(Bucket="master.ver", Key="g")
    assert v4["ResponseMetadata"]["HTTPStatusCode"] == 204
    old = s3.get_object(Bucket="master.ver", Key="f", VersionId=v1)["Body"].read()
    assert old == b"one"
    assert s3.get_object(Bucket=f"{v1}.master.ver", Key="f")["Body"].read() == b"one"
    assert s3.get_object(Bucket="master.ver", Key="f")["Body"].read() == b"two"
    versions = s3.list_object_versions(Bucket="master.ver")
    fv = [(v["VersionId"], v["IsLatest"]) for v in versions["Versions"] if v["Key"] == "f"]
    assert fv == [(v2, True), (v1, False)]
    assert [m["Key"] for m in versions["DeleteMarkers"]] == ["g"]
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=f"{v1}.master.ver", Key="f", Body=b"no")
    assert code_of(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="master.ver", Key="f", VersionId="0" * 32)
    assert code_of(exc) == "NoSuchVersion"
    # Written through S3: in the lineage of commits and in diff like any other write.
    diff = sdk.diff_file(f"ver@{v2}")
    assert [(d.path, d.change) for d in diff] == [("/f", "changed")]


def test_presigned_urls_work_with_plain_http(s3: Any) -> None:
    s3.create_bucket(Bucket="master.pre")
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": "master.pre", "Key": "p.txt"}, ExpiresIn=60
    )
    assert httpx.put(put_url, content=b"presigned").status_code == 200
    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "master.pre", "Key": "p.txt"}, ExpiresIn=60
    )
    assert httpx.get(get_url).content == b"presigned"


@contextmanager
def raw_put(gw: Gateway, path: str, length: int, body: bytes) -> Iterator[socket.socket]:
    """A PUT that announces ``length`` bytes and sends ``body`` (a client no SDK would be)."""
    host, port = gw.s3.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {length}\r\n\r\n"
        sock.sendall(head.encode() + body)
        yield sock


def test_a_body_over_5_gib_is_refused_before_it_is_read(gw: Gateway, s3: Any) -> None:
    s3.create_bucket(Bucket="master.huge")
    with raw_put(gw, "/master.huge/big", 6 << 30, b"x" * 1000) as sock:
        sock.settimeout(30)
        answer = b""
        while piece := sock.recv(4096):  # the server closes the connection after it
            answer += piece
    assert answer.startswith(b"HTTP/1.1 400") and b"<Code>EntityTooLarge</Code>" in answer


def test_bad_names_and_bodies_get_s3_errors(s3: Any, gw: Gateway, sdk: tusk.Client) -> None:
    s3.create_bucket(Bucket="master.bad")
    for name in ("Master.bad", "master..bad", "a.b.c.d.e", "x"):
        r = httpx.put(f"{gw.s3}/{name}")
        assert r.status_code == 400 and b"<Code>InvalidBucketName</Code>" in r.content, name
    # (dot segments percent-encoded: httpx, like browsers, would resolve them before sending)
    for key in ("a/%2E%2E/b", "a/%2E/b", "a//b", "x" * 1025):
        r = httpx.put(f"{gw.s3}/master.bad/{key}", content=b"x")
        assert r.status_code == 400, key
        assert b"<Code>InvalidArgument</Code>" in r.content or b"KeyTooLong" in r.content, key
    r = httpx.put(f"{gw.s3}/master.bad/nul%00byte", content=b"x")
    assert r.status_code == 400
    r = httpx.post(f"{gw.s3}/master.bad?delete", content=b"<Delete><Object><Key>a</Key>")
    assert r.status_code == 400 and b"<Code>MalformedXML</Code>" in r.content
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Delete><Object><Key>&b;</Key>'
        b"</Object></Delete>"
    )
    r = httpx.post(f"{gw.s3}/master.bad?delete", content=bomb)
    assert r.status_code == 400 and b"<Code>MalformedXML</Code>" in r.content
    r = httpx.get(f"{gw.s3}/master.bad?acl")
    assert r.status_code == 501 and b"<Code>NotImplemented</Code>" in r.content
    assert b"acl" in r.content
    assert sdk.list_commits("bad@master") == []


def test_a_client_gone_mid_put_commits_nothing(gw: Gateway, s3: Any, sdk: tusk.Client) -> None:
    s3.create_bucket(Bucket="master.gone")
    with raw_put(gw, "/master.gone/half", 10 * MiB, os.urandom(3 * MiB)):
        pass  # closed with 7 MiB of the body unsent
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.2)
        s3.list_objects_v2(Bucket="master.gone")  # the server is fine
    assert sdk.list_commits("gone@master") == []
    with pytest.raises(ClientError):
        s3.head_object(Bucket="master.gone", Key="half")


def test_pipeline_output_repos_are_written_only_by_their_pipeline(
    s3: Any, sdk: tusk.Client
) -> None:
    s3.create_bucket(Bucket="master.pin")
    version = s3.put_object(Bucket="master.pin", Key="a.txt", Body=b"a")["VersionId"]
    copy = 'pfs="${TUSK_PFS:-/pfs}"; cp "$pfs"/pin/* "$pfs"/out/'
    sdk.create_pipeline(
        {
            "pipeline": {"name": "pout"},
            "input": {"pfs": {"repo": "pin", "glob": "/*"}},
            "transform": {"cmd": ["sh", "-c", copy]},
        }
    )
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="master.pout", Key="x", Body=b"x")
    assert code_of(exc) == "AccessDenied"
    # What a pipeline makes of an S3 write leads back to it: lineage names the S3 commit.
    sdk.wait_commit("pout@master", timeout=120)
    assert s3.get_object(Bucket="master.pout", Key="a.txt")["Body"].read() == b"a"
    step = sdk.lineage("pout@master:/a.txt")
    assert step.pipeline == "pout"
    assert [(i.repo, i.commit) for i in step.inputs] == [("pin", version)]


def test_an_abandoned_multipart_upload_is_reclaimed_by_gc(s3: Any, sdk: tusk.Client) -> None:
    s3.create_bucket(Bucket="master.abandon")
    up = s3.create_multipart_upload(Bucket="master.abandon", Key="never")["UploadId"]
    s3.upload_part(
        Bucket="master.abandon", Key="never", UploadId=up, PartNumber=1, Body=os.urandom(3 * MiB)
    )
    kept = sdk.gc(grace=3600)  # a young upload's parts are live
    assert kept.uploads_expired == 0
    assert len(s3.list_parts(Bucket="master.abandon", Key="never", UploadId=up)["Parts"]) == 1
    time.sleep(0.05)
    first = sdk.gc(grace=0)
    assert first.uploads_expired == 1
    second = sdk.gc(grace=0)
    assert first.chunks_deleted + second.chunks_deleted > 0  # its chunks went with it
    assert s3.list_multipart_uploads(Bucket="master.abandon").get("Uploads", []) == []
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket="master.abandon", Key="never", UploadId=up)
    assert code_of(exc) == "NoSuchUpload"
    assert sdk.list_commits("abandon@master") == []
    assert sdk.fsck().ok


def test_virtual_host_addressing_under_the_s3_domain(s3: Any, gw: Gateway) -> None:
    s3.create_bucket(Bucket="master.vhost")
    port = gw.s3.rsplit(":", 1)[1]
    host = {"host": f"master.vhost.s3.tusk.test:{port}"}
    assert httpx.put(f"{gw.s3}/dir/k.txt", content=b"v", headers=host).status_code == 200
    assert httpx.get(f"{gw.s3}/dir/k.txt", headers=host).content == b"v"
    listing = httpx.get(f"{gw.s3}/?list-type=2", headers=host)
    assert b"<Key>dir/k.txt</Key>" in listing.content
    # Path style keeps working beside it.
    assert s3.get_object(Bucket="master.vhost", Key="dir/k.txt")["Body"].read() == b"v"
