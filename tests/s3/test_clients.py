"""Real S3 clients against an S3 endpoint: the aws CLI, pandas (s3fs), polars and DuckDB.

Each test drives one client the way a user would, over plain http and path-style URLs, and
checks the result through boto3 (or the other way round). The endpoint is the S3 gateway of
a real ``tusk up`` with auth on (the clients sign with a Tusk token's S3 key pair). Buckets
are the gateway's, ``branch.repo``: dotted names, which only path style can serve.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import clients
import pytest
from clients import (
    aws_cli,
    boto3_client,
    duckdb_connect,
    polars_options,
    require,
    s3fs_options,
)

import tusk
from gateway import start_gateway

FILES = "master.data"  # what the aws CLI tests copy, sync, list and delete
TABLES = "master.tables"  # the Parquet files the dataframe tests write and read
BUCKETS = (FILES, TABLES)
MiB = 1 << 20


class Endpoint(NamedTuple):
    """An S3 endpoint and the key pair to sign with: ``boto3_client(*endpoint)``."""

    url: str
    key: str
    secret: str


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """A real ``tusk up`` with auth on, and the key pair of ``create_token(s3=True)`` (what
    ``tusk auth create-token --s3`` prints): every client signs its requests."""
    home = tmp_path_factory.mktemp("s3clients") / "home"
    gw = start_gateway(home)
    try:
        with tusk.Client(address=gw.api) as anon:
            root = anon.auth_activate()
        with tusk.Client(address=gw.api, token=root) as admin:
            info, _token = admin.create_token(s3=True, description="S3 client tests")
        keys = info["s3"]
        endpoint = Endpoint(gw.s3, keys["access_key_id"], keys["secret_access_key"])
        s3 = boto3_client(*endpoint)
        for bucket in BUCKETS:
            s3.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        gw.stop()


def _aws(endpoint: Endpoint, *args: str, cwd: Path | None = None) -> str:
    return aws_cli(*endpoint, *args, cwd=cwd).stdout


def _keys(endpoint: Endpoint, bucket: str, prefix: str) -> dict[str, bytes]:
    s3 = boto3_client(*endpoint)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def _folder(root: Path) -> dict[str, bytes]:
    """A small local folder: text, a nested folder, a binary file, a key with a space."""
    files = {
        "a.txt": b"hello\n",
        "sub/b.txt": b"world\n",
        "sub/deeper/c.bin": bytes(range(256)) * 40,
        "with space.txt": b"spaced\n",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_a_missing_client_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(clients, "AWS_CLI", tmp_path / "no-aws")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="not installed"):
        require("tusk_no_such_client")
    with pytest.raises(pytest.fail.Exception, match="not installed"):
        aws_cli("http://127.0.0.1:9", "k", "s", "s3", "ls")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require("tusk_no_such_client")


# -- the aws CLI -----------------------------------------------------------------------------


def test_aws_cli_cp_recursive_up_and_down(s3_endpoint: Endpoint, tmp_path: Path) -> None:
    files = _folder(tmp_path / "up")
    out = _aws(
        s3_endpoint,
        "s3",
        "cp",
        "--recursive",
        "--no-progress",
        "up",
        f"s3://{FILES}/cp/",
        cwd=tmp_path,
    )
    assert out.count("upload: ") == len(files)
    assert _keys(s3_endpoint, FILES, "cp/") == {f"cp/{k}": v for k, v in files.items()}

    _aws(
        s3_endpoint,
        "s3",
        "cp",
        "--recursive",
        "--no-progress",
        f"s3://{FILES}/cp/",
        "down",
        cwd=tmp_path,
    )
    down = tmp_path / "down"
    got = {p.relative_to(down).as_posix(): p.read_bytes() for p in down.rglob("*") if p.is_file()}
    assert got == files


def test_aws_cli_cp_over_the_multipart_threshold(s3_endpoint: Endpoint, tmp_path: Path) -> None:
    # Past 8 MiB the CLI uploads in 8 MiB parts (with CRC32 checksums in the completion) and
    # downloads with HeadObject and ranged, If-Match GETs.
    data = bytes(range(256)) * (9 * MiB // 256)
    (tmp_path / "big.bin").write_bytes(data)
    url = f"s3://{FILES}/big/big.bin"
    _aws(s3_endpoint, "s3", "cp", "--no-progress", "big.bin", url, cwd=tmp_path)
    head = boto3_client(*s3_endpoint).head_object(Bucket=FILES, Key="big/big.bin")
    assert head["ContentLength"] == len(data)
    _aws(s3_endpoint, "s3", "cp", "--no-progress", url, "back.bin", cwd=tmp_path)
    assert (tmp_path / "back.bin").read_bytes() == data


def test_aws_cli_sync_twice_transfers_nothing_the_second_time(
    s3_endpoint: Endpoint, tmp_path: Path
) -> None:
    files = _folder(tmp_path / "src")
    # sync uploads a file whose size differs from the listing's Size, or whose mtime is later
    # than its LastModified. LastModified has whole seconds (S3's too): a file written in the
    # same second as its upload would look newer, so the files are dated an hour back.
    an_hour_ago = time.time() - 3600
    for rel in files:
        os.utime(tmp_path / "src" / rel, (an_hour_ago, an_hour_ago))
    target = f"s3://{FILES}/sync/"
    first = _aws(s3_endpoint, "s3", "sync", "--no-progress", "src", target, cwd=tmp_path)
    assert first.count("upload: ") == len(files)
    assert _aws(s3_endpoint, "s3", "sync", "--no-progress", "src", target, cwd=tmp_path) == ""
    (tmp_path / "src" / "a.txt").write_bytes(b"hello again\n")  # another size
    third = _aws(s3_endpoint, "s3", "sync", "--no-progress", "src", target, cwd=tmp_path)
    assert third.strip() == f"upload: src/a.txt to {target}a.txt"


def test_aws_cli_ls(s3_endpoint: Endpoint) -> None:
    s3 = boto3_client(*s3_endpoint)
    objects = {"ls/one.txt": b"1", "ls/dir/two.txt": b"22", "ls/dir/sub/three.txt": b"333"}
    for key, data in objects.items():
        s3.put_object(Bucket=FILES, Key=key, Body=data)

    out = _aws(s3_endpoint, "s3", "ls", "--recursive", f"s3://{FILES}/ls/")
    # 2026-01-02 03:04:05          3 ls/dir/sub/three.txt
    listed = {m[2]: int(m[1]) for m in re.finditer(r"^\S+ \S+ +(\d+) (.+)$", out, re.M)}
    assert listed == {k: len(v) for k, v in objects.items()}, out

    # Without --recursive: one level, "folders" as PRE (ListObjectsV2 with a delimiter).
    top = _aws(s3_endpoint, "s3", "ls", f"s3://{FILES}/ls/").splitlines()
    assert [line.split()[-2:] for line in top] == [["PRE", "dir/"], ["1", "one.txt"]], top


def test_aws_cli_rm_recursive(s3_endpoint: Endpoint) -> None:
    s3 = boto3_client(*s3_endpoint)
    for key in ("rm/a", "rm/b/c", "rm/b/d", "rm-not/e"):
        s3.put_object(Bucket=FILES, Key=key, Body=key.encode())
    out = _aws(s3_endpoint, "s3", "rm", "--recursive", f"s3://{FILES}/rm/")
    assert out.count("delete: ") == 3, out
    assert list(_keys(s3_endpoint, FILES, "rm")) == ["rm-not/e"]


def test_aws_cli_s3api_multipart_upload(s3_endpoint: Endpoint, tmp_path: Path) -> None:
    bucket, key = FILES, "multipart/two-parts.bin"
    parts = [bytes(range(256)) * (5 * MiB // 256), b"the last part may be small\n"]
    for n, data in enumerate(parts, 1):
        (tmp_path / f"part{n}").write_bytes(data)

    def s3api(*args: str) -> Any:
        return json.loads(
            _aws(s3_endpoint, "s3api", *args, "--bucket", bucket, "--key", key, cwd=tmp_path)
        )

    upload_id = s3api("create-multipart-upload")["UploadId"]
    done = [
        {
            "PartNumber": n,
            "ETag": s3api(
                "upload-part",
                "--upload-id",
                upload_id,
                "--part-number",
                str(n),
                "--body",
                f"part{n}",
            )["ETag"],
        }
        for n in (1, 2)
    ]
    s3api(
        "complete-multipart-upload",
        "--upload-id",
        upload_id,
        "--multipart-upload",
        json.dumps({"Parts": done}),
    )

    head = s3api("head-object")
    assert head["ContentLength"] == sum(map(len, parts))
    assert head["ETag"].strip('"').endswith("-2")  # a multipart ETag: MD5 of the MD5s, "-N"
    got = boto3_client(*s3_endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
    assert got == b"".join(parts)


# -- dataframes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sales(s3_endpoint: Endpoint) -> tuple[str, Any]:
    """A Parquet file of 4 row groups written with boto3; (its s3:// URL, the pyarrow table)."""
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    n = 4000
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "region": pa.array([("north", "south", "east", "west")[i % 4] for i in range(n)]),
            "amount": pa.array([i * 0.25 for i in range(n)], pa.float64()),
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=n // 4)
    key = "sales.parquet"
    boto3_client(*s3_endpoint).put_object(Bucket=TABLES, Key=key, Body=sink.getvalue().to_pybytes())
    return f"s3://{TABLES}/{key}", table


def test_pandas_to_parquet_and_back(s3_endpoint: Endpoint) -> None:
    pd = require("pandas")
    options = s3fs_options(*s3_endpoint)
    df = pd.DataFrame(
        {"id": range(500), "name": [f"n{i}" for i in range(500)], "x": [i / 7 for i in range(500)]}
    )
    url = f"s3://{TABLES}/pandas/x.parquet"
    df.to_parquet(url, storage_options=options)
    pd.testing.assert_frame_equal(pd.read_parquet(url, storage_options=options), df)


def test_polars_scan_parquet_filter(s3_endpoint: Endpoint, sales: tuple[str, Any]) -> None:
    pl = require("polars")
    testing = require("polars.testing")
    url, table = sales
    got = (
        pl.scan_parquet(url, storage_options=polars_options(*s3_endpoint))
        .filter((pl.col("region") == "east") & (pl.col("id") >= 3000))
        .collect()
    )
    expected = pl.from_arrow(table).filter((pl.col("region") == "east") & (pl.col("id") >= 3000))
    assert got.height == 250
    testing.assert_frame_equal(got, expected)


def test_duckdb_reads_parquet_with_a_filter_by_ranges(
    s3_endpoint: Endpoint, sales: tuple[str, Any]
) -> None:
    url, _ = sales
    con = duckdb_connect(*s3_endpoint)
    try:
        _duckdb_reads(con, url)
    finally:
        # Closed here, on the test's thread: DuckDB's threads and buffers are not left to a
        # garbage collection that may run on any thread later in the session.
        con.close()


def _duckdb_reads(con: Any, url: str) -> None:
    con.execute("CALL enable_logging('HTTP')")
    rows = con.execute(
        f"SELECT id, amount FROM '{url}' WHERE region = 'west' AND id >= 3900 ORDER BY id"
    ).fetchall()
    assert rows == [(i, i * 0.25) for i in range(3903, 4000, 4)]

    requests = con.execute(
        "SELECT request.type, request.headers['Range'], response.status"
        " FROM duckdb_logs_parsed('HTTP')"
    ).fetchall()
    gets = [r for r in requests if r[0] == "GET"]
    assert gets and all(r[1] and r[1].startswith("bytes=") for r in gets), requests
    assert {r[2] for r in gets} == {"PartialContent_206"}, requests
