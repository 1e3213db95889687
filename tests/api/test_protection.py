"""Protected branches (issue 22, first part): a protected branch refuses every direct write,
move and delete through the SDK in-process, the REST API (remote SDK), the CLI and the S3
gateway of a real ``tusk up`` (gRPC: tests/grpcapi), each with one error naming the rule, and
nothing changes; ``tusk merge`` from another branch moves it, and a pipeline reading it runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from gateway import Gateway, s3_client, start_gateway
from tusk import Client
from tusk.errors import AlreadyExists, BranchNotFound, BranchProtected, NotFound, PermissionDenied


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = start_gateway(tmp_path_factory.mktemp("protect") / "home")
    yield g
    g.stop()


def _setup(c: Client, repo: str) -> str:
    c.create_repo(repo)
    c.put_files(f"{repo}@master", [("/a.txt", b"a"), ("/d/b.txt", b"b")])
    c.create_branch(f"{repo}@feature", head="master")
    c.put_file(f"{repo}@feature:/c.txt", b"c")
    c.protect_branch(f"{repo}@master")
    return c.inspect_branch(f"{repo}@master").head or ""


def _refusals(c: Client, repo: str) -> dict[str, Callable[[], Any]]:
    m = f"{repo}@master"
    return {
        "put file": lambda: c.put_file(f"{m}:/x", b"x"),
        "put files": lambda: c.put_files(m, [("/x", b"x"), ("/y", b"y")]),
        "append": lambda: c.put_file(f"{m}:/a.txt", b"more", append=True),
        "delete file": lambda: c.delete_file(f"{m}:/a.txt"),
        "copy file": lambda: c.copy_file(f"{repo}@feature:/c.txt", f"{m}:/c.txt"),
        "start commit": lambda: c.start_commit(m),
        "move head": lambda: c.create_branch(m, head="feature"),
        "delete branch": lambda: c.delete_branch(m),
        "delete commit": lambda: c.delete_commit(m),
    }


@pytest.mark.parametrize("transport", ["in-process", "http"])
def test_a_protected_branch_moves_only_by_merge(
    transport: str, gw: Gateway, tmp_path: Path
) -> None:
    c = Client(tmp_path / "home") if transport == "in-process" else Client(address=gw.api)
    repo = f"p{transport.replace('-', '')}"
    with c:
        head = _setup(c, repo)
        assert [(p.repo, p.branch) for p in c.list_protections(repo)] == [(repo, "master")]
        for what, call in _refusals(c, repo).items():
            with pytest.raises(BranchProtected, match=f"branch {repo}@master is protected") as e:
                call()
            assert "\n" not in str(e.value), what
            assert c.inspect_branch(f"{repo}@master").head == head, what
        assert c.put_file(f"{repo}@feature:/d.txt", b"d")  # other branches take writes
        r = c.merge(f"{repo}@feature", "master")  # the way in
        assert r.commit is not None and c.get_file(f"{repo}@master:/c.txt") == b"c"

        # Bad input: one clear error each, nothing changed.
        with pytest.raises(BranchNotFound):
            c.protect_branch(f"{repo}@nope")
        with pytest.raises(AlreadyExists, match="already protected"):
            c.protect_branch(f"{repo}@master")
        c.unprotect_branch(f"{repo}@master")
        with pytest.raises(NotFound, match="is not protected"):
            c.unprotect_branch(f"{repo}@master")
        assert c.list_protections(repo) == []
        c.put_file(f"{repo}@master:/x", b"x")  # writable again
        assert c.fsck().ok


def test_the_cli_and_the_s3_gateway_refuse_too(gw: Gateway, tmp_path: Path) -> None:
    with Client(address=gw.api) as c:
        head = _setup(c, "viaedges")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    cli = [sys.executable, "-m", "tusk.cli.main", "--address", gw.api]
    local = tmp_path / "x.txt"
    local.write_bytes(b"x")
    r = subprocess.run([*cli, "put", "file", "viaedges@master:/x.txt", "-f", str(local)],
                       capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert r.returncode == 9, r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: branch viaedges@master is protected and cannot be written to: it moves only by "
        "tusk merge from another branch (tusk unprotect branch viaedges@master lifts the rule)"
    ]
    listed = subprocess.run([*cli, "list", "protection", "viaedges"], capture_output=True,
                            text=True, env=env, timeout=60)  # fmt: skip
    assert listed.returncode == 0 and "master" in listed.stdout.splitlines()[1]

    s3 = s3_client(gw, "anonymous", "anonymous")
    calls: dict[str, Callable[[], Any]] = {
        "PutObject": lambda: s3.put_object(Bucket="master.viaedges", Key="x.txt", Body=b"x"),
        "DeleteObject": lambda: s3.delete_object(Bucket="master.viaedges", Key="a.txt"),
        "DeleteObjects": lambda: s3.delete_objects(
            Bucket="master.viaedges", Delete={"Objects": [{"Key": "a.txt"}]}
        ),
        "CopyObject": lambda: s3.copy_object(
            Bucket="master.viaedges",
            Key="c.txt",
            CopySource={"Bucket": "feature.viaedges", "Key": "c.txt"},
        ),
        "multipart": lambda: _multipart(s3),
    }
    for what, call in calls.items():
        with pytest.raises(ClientError) as e:
            call()
        err = e.value.response["Error"]  # DeleteObjects: refused as a whole
        assert err["Code"] == "AccessDenied", (what, err)
        assert "is protected" in err["Message"], (what, err)
    assert s3.get_object(Bucket="master.viaedges", Key="a.txt")["Body"].read() == b"a"
    s3.put_object(Bucket="feature.viaedges", Key="e.txt", Body=b"e")  # not protected
    with Client(address=gw.api) as c:
        assert c.inspect_branch("viaedges@master").head == head
        assert c.fsck().ok


def _multipart(s3: Any) -> None:
    up = s3.create_multipart_upload(Bucket="master.viaedges", Key="big.bin")
    part = s3.upload_part(Bucket="master.viaedges", Key="big.bin", UploadId=up["UploadId"],
                          PartNumber=1, Body=b"z" * 1024)  # fmt: skip
    s3.complete_multipart_upload(
        Bucket="master.viaedges", Key="big.bin", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )  # fmt: skip


def test_a_cluster_admin_may_force_a_write_and_the_audit_log_records_it(tmp_path: Path) -> None:
    from apihelpers import start_live, stop_live

    with Client(tmp_path / "embedded") as local:  # no identities: anyone may
        _setup(local, "e")
        with local.force_protected():
            local.put_file("e@master:/forced", b"f")
        assert local.get_file("e@master:/forced") == b"f"
        with pytest.raises(BranchProtected):  # only within
            local.put_file("e@master:/again", b"g")

    live = start_live(tmp_path / "home")
    try:
        with Client(address=live.url) as anon:
            root = anon.auth_activate()
        with Client(address=live.url, token=root) as admin:
            head = _setup(admin, "f")
            _info, owner_token = admin.create_token("user:owner")
            admin.set_repo_roles("f", "user:owner", ["repoOwner"])
            owner = Client(address=live.url, token=owner_token)
            with owner, owner.force_protected(), pytest.raises(PermissionDenied, match="Admin"):
                owner.put_file("f@master:/x", b"x")
            assert admin.inspect_branch("f@master").head == head
            with admin.force_protected():
                admin.put_file("f@master:/x", b"x")
            assert admin.get_file("f@master:/x") == b"x"
            entries = admin.audit(user="user:root")
            forced = [e for e in entries if "protected branch (forced)" in str(e.get("detail"))]
            assert [(e["operation"], e["resource"]) for e in forced] == [("put_file", "f@master")]
            with pytest.raises(BranchProtected):  # the header went with the block
                admin.put_file("f@master:/y", b"y")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
        env["TUSK_TOKEN"] = root
        cli = [sys.executable, "-m", "tusk.cli.main", "--address", live.url]
        r = subprocess.run([*cli, "--force-protected", "delete", "file", "f@master:/x"],
                           capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
        assert r.returncode == 0, r.stderr
    finally:
        stop_live(live)
