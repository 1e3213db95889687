"""S3 inputs and outputs (issue 21): ``input.pfs.s3`` and ``s3_out``, as Pachyderm's.

A real ``tusk up`` (scheduler, REST API and S3 gateway in one process) runs a pipeline whose
code speaks only boto3: it finds its input as the bucket named for the input and writes its
output into the bucket ``out`` (one object at a time and by multipart upload), and may reach
nothing else. Then the same with auth on, where the datum's keys are a token of the pipeline
that is revoked when the datum ends.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

import tusk
from gateway import Gateway, s3_client, start_gateway
from tusk.polling import poll_until

# The datum's code: boto3 and the environment its datum is given, nothing of Tusk's.
PROGRAM = r"""
import json, os, sys
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"])
names = sorted(b["Name"] for b in s3.list_buckets()["Buckets"])
assert names == ["in", "out"], names
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="in").get("Contents", [])]
for key in keys:
    body = s3.get_object(Bucket="in", Key=key)["Body"].read()
    s3.put_object(Bucket="out", Key="upper/" + key, Body=body.upper())
# The transfer manager's multipart upload: 3 parts of 5 MiB and a last one.
big = os.path.join(os.environ.get("TMPDIR", "/tmp"), "big.bin")
with open(big, "wb") as f:
    f.write(bytes(range(256)) * (4096 * 66))
cfg = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
s3.upload_file(big, "out", "big.bin", Config=cfg)
s3.put_object(Bucket="out", Key="scratch", Body=b"gone soon")
s3.delete_object(Bucket="out", Key="scratch")
# What the datum may not do: reach other buckets, write its input, make buckets.
refused = {}
for what, call in [
    ("branch bucket", lambda: s3.list_objects_v2(Bucket="master.in")),
    ("other repo", lambda: s3.list_objects_v2(Bucket="other")),
    ("write input", lambda: s3.put_object(Bucket="in", Key="x", Body=b"x")),
    ("make bucket", lambda: s3.create_bucket(Bucket="mine")),
]:
    try:
        call()
        refused[what] = "allowed"
    except ClientError as exc:
        refused[what] = exc.response["Error"]["Code"]
listing = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="out")["Contents"])
report = {"keys": keys, "refused": refused, "out": listing,
          "key": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
          "pfs_in": os.path.exists(os.path.join(os.environ["TUSK_PFS"], "in"))}
s3.put_object(Bucket="out", Key="report.json", Body=json.dumps(report).encode())
# Files under /pfs/out are not the output of an s3_out pipeline (as Pachyderm).
open(os.path.join(os.environ["TUSK_PFS"], "out", "ignored.txt"), "w").write("no")
"""


def spec(program: Path) -> dict[str, Any]:
    return {
        "pipeline": {"name": "s3job"},
        "input": {"pfs": {"repo": "data", "name": "in", "glob": "/", "s3": True}},
        "s3_out": True,
        "transform": {"cmd": [sys.executable, str(program)]},
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("s3pipes") / "home")
    yield gw
    gw.stop()


def next_report(c: tusk.Client, seen: set[str]) -> dict[str, Any]:
    """Wait for the pipeline's next job (not in ``seen``) to succeed; the datum's report."""

    def done() -> tuple[bool, Any]:
        new = [j for j in c.list_jobs("s3job") if j.id not in seen and j.done]
        return bool(new), new[0] if new else None

    job = poll_until(done, 120, lambda _j: "a new job of s3job")
    seen.add(job.id)
    assert job.state == "success", job.reason
    report: dict[str, Any] = json.loads(c.get_file("s3job@master:/report.json"))
    return report


def test_a_boto3_pipeline_reads_its_input_and_writes_out_through_the_gateway(
    server: Gateway, tmp_path: Path
) -> None:
    program = tmp_path / "job.py"
    program.write_text(PROGRAM)
    with tusk.Client(address=server.api) as c:
        c.create_repo("data")
        c.create_repo("other")
        c.put_files("data@master", [("/a.txt", b"alpha"), ("/dir/b.txt", b"beta")])
        c.create_pipeline(spec(program))
        seen: set[str] = set()
        report = next_report(c, seen)
        assert report["keys"] == ["a.txt", "dir/b.txt"]
        assert report["refused"] == {
            "branch bucket": "NoSuchBucket",
            "other repo": "NoSuchBucket",
            "write input": "AccessDenied",
            "make bucket": "AccessDenied",
        }
        assert report["out"] == ["big.bin", "upper/a.txt", "upper/dir/b.txt"]
        assert report["pfs_in"] is False  # an s3 input is not written under /pfs
        files = {f.path: f.size for f in c.glob_files("s3job@master:/**") if f.type == "file"}
        assert files == {
            "/big.bin": 256 * 4096 * 66,
            "/report.json": files["/report.json"],
            "/upper/a.txt": 5,
            "/upper/dir/b.txt": 4,
        }
        assert c.get_file("s3job@master:/upper/dir/b.txt") == b"BETA"
        assert c.get_file("s3job@master:/big.bin") == bytes(range(256)) * (4096 * 66)
        # The datum's staging commit is gone: every commit of the output repo is finished.
        assert all(ci.finished for ci in c.list_commits("s3job"))
        first = c.inspect_commit("s3job@master").id
        # A new input commit: the one datum (glob "/") runs again on the new commit.
        c.put_files("data@master", [("/c.txt", b"gamma")])
        report = next_report(c, seen)
        assert report["keys"] == ["a.txt", "c.txt", "dir/b.txt"]
        assert c.get_file("s3job@master:/upper/c.txt") == b"GAMMA"
        assert c.inspect_commit("s3job@master").id != first
        # With auth off the key selected the datum's buckets only; that view has ended.
        done = s3_client(server, report["key"], report["secret"])
        names = {b["Name"] for b in done.list_buckets()["Buckets"]}
        assert "master.data" in names and "out" not in names and "in" not in names

        # Auth on: the datum's keys are a token of the pipeline, revoked when it ends.
        root = c.auth_activate()
    with tusk.Client(address=server.api, token=root) as c:
        # (made before auth was on, the pipeline was given no roles: give them as tusk auth set)
        c.set_repo_roles("data", "pipeline:s3job", ["repoReader"])
        c.set_repo_roles("s3job", "pipeline:s3job", ["repoWriter"])
        c.put_files("data@master", [("/d.txt", b"delta")])
        report = next_report(c, seen)
        assert report["keys"] == ["a.txt", "c.txt", "d.txt", "dir/b.txt"]
        assert report["refused"]["other repo"] == "NoSuchBucket"
        assert c.get_file("s3job@master:/upper/d.txt") == b"DELTA"
        revoked = s3_client(server, report["key"], report["secret"])
        with pytest.raises(ClientError) as err:
            revoked.list_buckets()
        assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"
        c.auth_deactivate()


def test_without_a_gateway_the_job_fails_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUSK_SANDBOX", "none")
    monkeypatch.delenv("TUSK_METADATA_URL", raising=False)
    program = tmp_path / "job.py"
    program.write_text(PROGRAM)
    with tusk.Client(tmp_path / "home") as c:
        c.create_repo("data")
        c.put_files("data@master", [("/a.txt", b"alpha")])
        c.create_pipeline(spec(program))
        c.run_scheduler(once=True)
        job = c.list_jobs("s3job")[0]
        assert job.state == "failure"
        assert "through the S3 gateway" in job.reason and "tusk up" in job.reason
        assert all(ci.finished for ci in c.list_commits("s3job"))
