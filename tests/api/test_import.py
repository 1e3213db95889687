"""Import by reference (issue 23): ``tusk import`` commits one file per object of a prefix of a
real S3 endpoint (moto in server mode, started here) without reading them; reads, diff, glob,
lineage and a pipeline work on them; a source object that changes or vanishes makes each read
of it fail with an error naming the file, the URL and what changed, and ``fsck --references``
list it; ``tusk materialize`` makes them independent. In-process and through the REST API of a
real ``tusk up`` (the server reads the bucket), and through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fusehelpers import need_fuse
from gateway import Gateway, start_gateway
from s3server import CREDENTIALS, REGION, S3Server
from tusk import Client
from tusk.errors import InvalidArgument, ReferenceBroken, SourceError
from tusk.storage.backends.objects import SMALL_OBJECT

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
    "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    server = S3Server()
    yield server
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, s3: S3Server) -> Iterator[Gateway]:
    g = start_gateway(tmp_path_factory.mktemp("import") / "home", env=AWS_ENV)
    yield g
    g.stop()


def _bucket(s3: S3Server, objects: dict[str, bytes]) -> tuple[str, Any]:
    client = s3.client()
    name = s3.new_bucket()
    for key, data in objects.items():
        client.put_object(Bucket=name, Key=key, Body=data)
    return name, client


def test_import_read_change_check_and_materialize(client: Client, s3: S3Server) -> None:
    c = client
    big = os.urandom(9 * 1024 * 1024 + 123)  # three pieces: a read fetches only its own
    bucket, s3c = _bucket(s3, {
        "raw/a/1.csv": b"id\n1\n", "raw/a/2.csv": b"id\n2\n", "raw/b/3.csv": b"id\n3\n",
        "raw/big.bin": big, "raw/skip.tmp": b"x", "other/z.csv": b"z",
    })  # fmt: skip
    repo = f"r{bucket[-8:]}"
    c.create_repo(repo)
    r = c.import_objects(f"{repo}@master:/raw", f"s3://{bucket}/raw", exclude=["*.tmp"],
                         endpoint_url=s3.endpoint)  # fmt: skip
    assert r.files == 4 and r.commit is not None
    files = {f.path: f.size for f in c.glob_files(f"{repo}@master:/raw/**") if f.type == "file"}
    assert files == {"/raw/a/1.csv": 5, "/raw/a/2.csv": 5, "/raw/b/3.csv": 5,
                     "/raw/big.bin": len(big)}  # fmt: skip
    assert c.get_file(f"{repo}@master:/raw/a/2.csv") == b"id\n2\n"
    assert c.get_file(f"{repo}@master:/raw/big.bin") == big
    reader = c.file_reader(f"{repo}@master:/raw/big.bin")  # ranges, as tusk sql and the mount
    for lo, hi in ((0, 10), (4 * 2**20 - 5, 4 * 2**20 + 5), (len(big) - 100, len(big))):
        assert reader.read(lo, hi) == big[lo:hi]
    reader.close()
    first = c.inspect_commit(f"{repo}@master").id

    # Importing the same unchanged objects again changes nothing (same content ids).
    c.import_objects(f"{repo}@master:/raw", f"s3://{bucket}/raw", exclude=["*.tmp"],
                     endpoint_url=s3.endpoint)  # fmt: skip
    assert c.diff_file(f"{repo}@master", f"{repo}@{first}") == []
    assert c.fsck(references=True).ok

    # The source changes: every read of the changed or vanished object fails, by name.
    s3c.put_object(Bucket=bucket, Key="raw/a/1.csv", Body=b"id\n100\n")
    s3c.delete_object(Bucket=bucket, Key="raw/b/3.csv")
    with pytest.raises(ReferenceBroken) as e:
        c.get_file(f"{repo}@master:/raw/a/1.csv")
    assert "/raw/a/1.csv" in str(e.value) and f"s3://{bucket}/raw/a/1.csv" in str(e.value)
    assert "changed at its source" in str(e.value)
    with pytest.raises(ReferenceBroken, match="no longer exists at its source"):
        c.get_file(f"{repo}@master:/raw/b/3.csv")
    assert c.get_file(f"{repo}@master:/raw/a/2.csv") == b"id\n2\n"  # the others still read
    report = c.fsck(references=True)
    assert not report.ok and report.counts["references"] == 4
    assert sorted(p.split(": ", 1)[0] for p in report.problems) == [
        f"reference s3://{bucket}/raw/a/1.csv", f"reference s3://{bucket}/raw/b/3.csv"
    ]  # fmt: skip
    assert c.fsck().ok  # the store itself is fine

    # Materialize: copies what still reads as imported; then the source can go.
    with pytest.raises(ReferenceBroken):
        c.materialize(f"{repo}@master:/raw")  # one is broken: nothing is committed
    head = c.inspect_commit(f"{repo}@master").id
    c.delete_file(f"{repo}@master:/raw/a/1.csv")
    c.delete_file(f"{repo}@master:/raw/b/3.csv")
    m = c.materialize(f"{repo}@master:/raw")
    assert m.files == 2 and m.commit is not None and m.commit.id != head
    for key in ("raw/a/2.csv", "raw/big.bin"):
        s3c.delete_object(Bucket=bucket, Key=key)
    assert c.get_file(f"{repo}@master:/raw/big.bin") == big  # no longer from the source
    assert c.materialize(f"{repo}@master:/raw").commit is None  # nothing left to copy
    # The history still refers to them: its commits cannot be read any more, and say so.
    assert len(c.fsck(references=True).problems) == 4
    with pytest.raises(ReferenceBroken, match="no longer exists"):
        c.get_file(f"{repo}@{first}:/raw/big.bin")


def test_a_pipeline_reads_referenced_files(tmp_path: Path, s3: S3Server) -> None:
    bucket, _ = _bucket(s3, {f"in/{i}.txt": f"line {i}\n".encode() for i in range(3)})
    with Client(tmp_path / "home") as c:
        c.create_repo("data")
        c.import_objects("data@master:/", f"s3://{bucket}/in", endpoint_url=s3.endpoint)
        c.create_pipeline({
            "pipeline": {"name": "upper"},
            "input": {"pfs": {"repo": "data", "glob": "/*"}},
            "transform": {"cmd": ["sh", "-c", 'for f in "$TUSK_PFS"/data/*; do '
                                  'tr a-z A-Z < "$f" > "$TUSK_PFS/out/$(basename "$f")"; done']},
        })  # fmt: skip
        c.wait_commit("upper@master")
        assert c.get_file("upper@master:/2.txt") == b"LINE 2\n"
        step = c.lineage("upper@master:/2.txt")
        assert [(i.repo, i.path) for i in step.inputs] == [("data", "/2.txt")]


def test_bad_imports_are_refused_and_change_nothing(tmp_path: Path, s3: S3Server) -> None:
    bucket, _ = _bucket(s3, {
        "ok/a.txt": b"a", "evil/../x": b"x", "evil/fine.txt": b"f", "ctl/a\x01b": b"y",
    })  # fmt: skip
    with Client(tmp_path / "home") as c:
        c.create_repo("d")
        for url, expected, kind in (
            (f"s3://{bucket}/evil", "cannot be a file path", InvalidArgument),
            (f"s3://{bucket}/ctl", "cannot be a file path", InvalidArgument),
            (f"s3://{bucket}/nothing", "no objects to import", SourceError),
            ("s3://no-such-bucket-here/x", "bucket no-such-bucket-here does not exist",
             SourceError),
            ("gs://b/x", "gs:// sources are not supported", InvalidArgument),
            ("ftp://b/x", "not an S3 URL", InvalidArgument),
        ):  # fmt: skip
            with pytest.raises(kind, match=expected):
                c.import_objects("d@master:/in", url, endpoint_url=s3.endpoint)
        with pytest.raises(SourceError, match="all 1 excluded"):
            c.import_objects("d@master:/", f"s3://{bucket}/ok", exclude=["*"],
                             endpoint_url=s3.endpoint)  # fmt: skip
        assert c.list_commits("d") == []
        assert c.fsck().ok
        # What the error says to do: --exclude the key, and the rest imports.
        r = c.import_objects("d@master:/in", f"s3://{bucket}/evil", exclude=["../*"],
                             endpoint_url=s3.endpoint)  # fmt: skip
        assert r.files == 1 and c.get_file("d@master:/in/fine.txt") == b"f"


def test_the_cli_imports_checks_and_materializes(gw: Gateway, s3: S3Server) -> None:
    bucket, s3c = _bucket(s3, {"p/x.csv": b"x\n", "p/y.csv": b"y\n"})
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}, **AWS_ENV}
    cli = [sys.executable, "-m", "tusk.cli.main", "--address", gw.api]

    def tusk(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, env=env, timeout=60)

    assert tusk("create", "repo", "clirefs").returncode == 0
    r = tusk("import", "clirefs@master:/p", f"s3://{bucket}/p", "--endpoint-url", s3.endpoint)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"imported 2 object(s) from s3://{bucket}/p by reference")
    assert tusk("get", "file", "clirefs@master:/p/y.csv").stdout == "y\n"
    s3c.delete_object(Bucket=bucket, Key="p/x.csv")
    got = tusk("get", "file", "clirefs@master:/p/x.csv")
    assert got.returncode == 4 and "no longer exists at its source" in got.stderr
    checked = tusk("fsck", "--references")
    assert checked.returncode == 1
    assert f"problem: reference s3://{bucket}/p/x.csv: gone: no such object" in checked.stdout
    assert tusk("delete", "file", "clirefs@master:/p/x.csv").returncode == 0
    m = tusk("materialize", "clirefs@master")
    assert m.returncode == 0 and m.stdout.startswith("materialized 1 file(s): commit ")
    s3c.delete_object(Bucket=bucket, Key="p/y.csv")
    assert tusk("get", "file", "clirefs@master:/p/y.csv").stdout == "y\n"


def test_put_file_copies_s3_objects(client: Client, s3: S3Server, tmp_path: Path) -> None:
    """``put file -f s3://...`` and ``-r -f s3://prefix`` copy the bytes in (here: the client
    reads the bucket, in-process or before sending them to a server)."""
    c = client
    # Many small objects are fetched several at a time ahead of the writer, a big one
    # (more than SMALL_OBJECT) is streamed in its turn: every file must still get its bytes.
    many = {f"set/many/k{i:02}.bin": b"%d," % i * (i + 1) for i in range(40)}
    big = os.urandom(SMALL_OBJECT + 4096)
    bucket, s3c = _bucket(s3, {"set/a.txt": b"a", "set/sub/b.txt": b"bb", "set/c.tmp": b"c",
                               "set/m/big.bin": big, **many})  # fmt: skip
    repo = f"copy{bucket[-8:]}"
    c.create_repo(repo)
    saved = os.environ.get("AWS_ENDPOINT_URL_S3")
    os.environ["AWS_ENDPOINT_URL_S3"] = s3.endpoint
    try:
        c.put_file(f"{repo}@master:/one.txt", f"s3://{bucket}/set/a.txt")
    finally:
        if saved is None:
            os.environ.pop("AWS_ENDPOINT_URL_S3", None)
        else:
            os.environ["AWS_ENDPOINT_URL_S3"] = saved
    r = c.copy_objects(f"{repo}@master:/all", f"s3://{bucket}/set", exclude=["*.tmp"],
                       endpoint_url=s3.endpoint)  # fmt: skip
    assert r.files == 2 + 1 + len(many)
    for key in ("set/a.txt", "set/sub/b.txt", "set/m/big.bin", *many):
        s3c.delete_object(Bucket=bucket, Key=key)  # copies: they do not need the source
    assert c.get_file(f"{repo}@master:/one.txt") == b"a"
    assert c.get_file(f"{repo}@master:/all/sub/b.txt") == b"bb"
    assert c.get_file(f"{repo}@master:/all/m/big.bin") == big
    for key, data in many.items():
        assert c.get_file(f"{repo}@master:/all/{key[4:]}") == data, key
    assert sorted(f.path for f in c.list_files(f"{repo}@master:/all")) == [
        "/all/a.txt", "/all/m", "/all/many", "/all/sub"
    ]  # fmt: skip
    problems = c.fsck(references=True).problems  # nothing refers to this bucket
    assert not [p for p in problems if bucket in p], problems


def test_the_cli_copies_a_prefix(tmp_path: Path, s3: S3Server) -> None:
    bucket, _ = _bucket(s3, {"in/x.csv": b"x\n", "in/y/z.csv": b"z\n"})
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}, **AWS_ENV}
    cli = [sys.executable, "-m", "tusk.cli.main", "--home", str(tmp_path / "home")]
    assert subprocess.run([*cli, "create", "repo", "d"], env=env).returncode == 0
    r = subprocess.run(
        [*cli, "put", "file", "d@master:/raw", "-r", "-f", f"s3://{bucket}/in",
         "--endpoint-url", s3.endpoint],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = subprocess.run([*cli, "get", "file", "d@master:/raw/y/z.csv"], capture_output=True,
                         env=env, timeout=60)  # fmt: skip
    assert got.stdout == b"z\n"


def test_only_a_cluster_admin_imports_through_a_server(tmp_path: Path, s3: S3Server) -> None:
    """The server lists the bucket with its own credentials: a repo writer may not make it."""
    from apihelpers import start_live, stop_live

    from tusk.errors import PermissionDenied

    bucket, _ = _bucket(s3, {"k/a.txt": b"a"})
    live = start_live(tmp_path / "home")
    try:
        with Client(address=live.url) as anon:
            root = anon.auth_activate()
        with Client(address=live.url, token=root) as admin:
            admin.create_repo("w")
            _info, token = admin.create_token("user:writer")
            admin.set_repo_roles("w", "user:writer", ["repoWriter"])
            with Client(address=live.url, token=token) as writer:
                with pytest.raises(PermissionDenied, match="clusterAdmin"):
                    writer.import_objects("w@master:/", f"s3://{bucket}/k",
                                          endpoint_url=s3.endpoint)  # fmt: skip
                writer.put_file("w@master:/own.txt", b"mine")  # writing is still allowed
            r = admin.import_objects("w@master:/in", f"s3://{bucket}/k", endpoint_url=s3.endpoint)
            assert r.files == 1 and admin.get_file("w@master:/in/a.txt") == b"a"
    finally:
        stop_live(live)


def test_a_mount_reads_referenced_files(tmp_path: Path, s3: S3Server) -> None:
    """tusk mount reads a referenced file lazily, from its source (issue 23)."""
    need_fuse()
    data = os.urandom(5 * 1024 * 1024)
    bucket, _ = _bucket(s3, {"m/big.bin": data, "m/small.txt": b"small\n"})
    home = tmp_path / "home"
    with Client(home) as c:
        c.create_repo("refs")
        c.import_objects("refs@master:/", f"s3://{bucket}/m", endpoint_url=s3.endpoint)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}, **AWS_ENV}
    cli = [sys.executable, "-m", "tusk.cli.main", "--home", str(home)]
    root = tmp_path / "mnt"
    root.mkdir()
    proc = subprocess.Popen(
        [*cli, "mount", "refs@master", str(root)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(root):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert (root / "refs" / "small.txt").read_bytes() == b"small\n"
        with open(root / "refs" / "big.bin", "rb") as f:
            f.seek(len(data) - 4096)
            assert f.read() == data[-4096:]
    finally:
        subprocess.run([*cli, "unmount", str(root)], env=env, capture_output=True, timeout=30)
        proc.wait(30)


def test_import_from_another_s3_implementation_and_wrong_credentials(tmp_path: Path) -> None:
    """Tusk's own S3 gateway, with auth on, as the source: the right keys import (listing,
    ranged reads with If-Match), wrong ones are one clear error and nothing is committed."""
    from gateway import start_gateway as start

    gw = start(tmp_path / "source")
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    try:
        with Client(address=gw.api) as anon:
            token = anon.auth_activate()
        with Client(address=gw.api, token=token) as admin:
            admin.create_repo("src")
            admin.put_files("src@master", [("/a/1.txt", b"one"), ("/b.txt", b"two")])
            info, _ = admin.create_token(None, s3=True)
        key, secret = info["s3"]["access_key_id"], info["s3"]["secret_access_key"]
        os.environ.update({**AWS_ENV, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret})
        with Client(tmp_path / "home") as c:
            c.create_repo("d")
            r = c.import_objects("d@master:/", "s3://master.src", endpoint_url=gw.s3)
            assert r.files == 2 and c.get_file("d@master:/a/1.txt") == b"one"
            os.environ["AWS_ACCESS_KEY_ID"] = "0123456789abcdef"
            with pytest.raises(SourceError, match="access denied"):
                c.import_objects("d@master:/again", "s3://master.src", endpoint_url=gw.s3)
            assert len(c.list_commits("d")) == 1
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        gw.stop()
