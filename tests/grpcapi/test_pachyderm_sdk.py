"""Pachyderm's gRPC API (issue 17): pachyderm-sdk, unchanged, against a real ``tusk up``.

The client runs in a venv of its own (.venv/pachsdk, made by ./dev.sh: it pins packages the
test extra needs newer), as a user's script: tests/grpcapi/sdk_story.py prints what it saw.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tusk
from gateway import Gateway, start_gateway
from tusk.auth.permissions import RULES

HERE = Path(__file__).resolve().parent
SDK_PYTHON = HERE.parents[1] / ".venv" / "pachsdk" / "bin" / "python"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str, int]]:
    if not SDK_PYTHON.exists():
        pytest.fail("pachyderm-sdk's venv is missing: ./dev.sh makes .venv/pachsdk")
    gw = start_gateway(tmp_path_factory.mktemp("grpc") / "home", "--grpc-port", "0")
    deadline = time.monotonic() + 30
    found = None
    while found is None and time.monotonic() < deadline:
        found = next(
            (m for line in list(gw.log) if (m := re.search(r"gRPC API on (\S+):(\d+)", line))),
            None,
        )
        time.sleep(0.05)
    assert found is not None, "".join(gw.log)
    yield gw, found.group(1), int(found.group(2))
    gw.stop()


def run_sdk(script: Path, host: str, port: int, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PACH", "TUSK_"))}
    r = subprocess.run(
        [str(SDK_PYTHON), str(script), host, str(port), *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def test_every_served_rpc_has_a_permission_rule() -> None:
    from tusk.grpcapi.server import served_rpcs

    served = set(served_rpcs())
    rules = {name.split(".", 1)[1] for name in RULES if name.startswith("grpc.")}
    assert served == rules


def test_pachyderm_sdk_story(server: tuple[Gateway, str, int]) -> None:
    gw, host, port = server
    out = run_sdk(HERE / "sdk_story.py", host, port)
    assert out["version"][:2] == [2, 12] and out["version"][2].startswith("tusk-")
    assert out["repos"] == [["images", "default", "pictures"]]
    assert out["first"][1] is True
    assert out["walk"] == [
        ["/", "DIR", 5 + 5 + 256 * 20000 + 251 * (160 << 10)],
        ["/a.txt", "FILE", 5],
        ["/big.bin", "FILE", 256 * 20000],
        ["/dir", "DIR", 5],
        ["/dir/b.txt", "FILE", 5],
        ["/huge.bin", "FILE", 251 * (160 << 10)],
    ]
    assert out["a"] == "hello" and out["big_ok"] is True and out["huge_ok"] is True
    assert out["list"] == ["/a.txt", "/big.bin", "/c.txt", "/huge.bin"]
    assert out["a2"] == "hello again"
    assert out["glob"] == ["/a.txt", "/c.txt"]
    assert out["old_b"] == "world"
    first, second = out["first"][0], out["second"]
    assert out["commits"] == [[second, first], [first, ""]]
    assert out["branches"] == [["dev", first], ["master", second]]
    codes = {what: code for what, (code, _message) in out["errors"].items()}
    assert codes == {
        "no repo": "NOT_FOUND",
        "twice": "ALREADY_EXISTS",
        "no file": "NOT_FOUND",
        "bad name": "INVALID_ARGUMENT",
        "finished": "FAILED_PRECONDITION",
    }
    assert out["errors"]["no repo"][1].startswith("repo nope not found")
    assert "already" in out["errors"]["twice"][1] and "\n" not in out["errors"]["twice"][1]
    assert out["exists"] == [True, False]
    assert out["copy"] == ["hello again", "from far"]
    assert out["waited set"] == ["images"] and out["branch head"] is True
    assert out["commit sets"] == [True, True]
    assert out["sets"] == {
        "head squash": "FAILED_PRECONDITION",
        "history": True,
        "files": ["/one", "/three", "/two"],
        "after drop": True,
    }
    assert out["projects"] == [["default", out["projects"][0][1]], ["research", "lab"]]
    assert out["in research"] == ["scans"]
    assert out["project busy"][0] == "FAILED_PRECONDITION"
    assert out["projects after"] == ["default"]
    assert out["not served"] == [
        "UNIMPLEMENTED",
        "pfs_v2.API/ClearCommit is not served by Tusk (docs/grpc.md lists what is)",
    ]
    assert out["who"] == ["AuthServiceNotActivated", "the auth service is not activated"]
    assert out["tar"] == ["a.txt", "big.bin", "c.txt", "huge.bin"]
    # the second commit against its parent: /a.txt changed, /c.txt added, /dir/b.txt removed
    assert out["diff"] == [["", "/dir/b.txt"], ["/a.txt", "/a.txt"], ["/c.txt", ""]]
    assert out["subscribed"] == [first, second]
    # What the SDK wrote is Tusk's data like any other: read back through Tusk's own client.
    with tusk.Client(address=gw.api) as c:
        assert c.get_file("images@master:/a.txt") == b"hello again"
        assert [ci.id for ci in c.list_commits("images@master")][1:] == [second, first]
        report = c.fsck()  # squashed and dropped commit sets left the store whole
        assert report.ok, report.problems


def test_the_same_permission_check_with_auth_on(server: tuple[Gateway, str, int]) -> None:
    gw, host, port = server
    with tusk.Client(address=gw.api) as c:
        root = c.auth_activate()
    try:
        with tusk.Client(address=gw.api, token=root) as c:
            _info, bob = c.create_token("user:bob")
            out = run_sdk(HERE / "sdk_auth.py", host, port, root, bob)
            assert out == {
                "anonymous list": "UNAUTHENTICATED",
                "anonymous version": "OK",
                "bob inspect": "PERMISSION_DENIED",
                "bob list": [],
                "bob create": "OK",
                "bob writes own": "OK",
                "bob writes images": "PERMISSION_DENIED",
                "root inspect": "OK",
                "root list": ["bobs", "hist", "images"],
                "root is": "user:root",
                "bob is": "user:bob",
                "anonymous is": "UNAUTHENTICATED",
                "bob binds": "PERMISSION_DENIED",
                "binding": {"user:bob": ["repoReader"]},  # made while auth was off: no owner
                "bob reads now": "OK",
                "authorize": [False, ["REPO_READ"], ["REPO_WRITE"], "user:bob"],
                "permissions": [["repoReader"], True, False],
                "bob robot": "PERMISSION_DENIED",
                "robot is": "robot:ci",
                "revoked": 1,
                "robot after": "UNAUTHENTICATED",
                "activate again": "FAILED_PRECONDITION",
                "cluster binding": "PERMISSION_DENIED",
            }
            assert c.get_file("bobs@master:/x") == b"x"
            # The audit log names the identity and the RPC, as for every edge.
            denied = [e for e in c.audit(user="user:bob") if not e["allowed"]]
            assert any(e["operation"] == "pfs_v2.API/InspectRepo" for e in denied), denied
    finally:
        with tusk.Client(address=gw.api, token=root) as c:
            c.auth_deactivate()


def test_the_generated_messages_are_those_of_the_proto_files(tmp_path: Path) -> None:
    """gen/*_pb2.py is protoc's output of gen/*.proto (./dev.sh protos): edited by hand, or
    left behind a .proto edit, it fails here."""
    src = HERE.parents[1] / "src"
    gen = src / "tusk" / "grpcapi" / "gen"
    protos = sorted(gen.glob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{src}", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", *map(str, protos)],
        check=True,
    )  # fmt: skip
    made = tmp_path / "tusk" / "grpcapi" / "gen"
    names = sorted(p.name for p in made.iterdir())
    assert names == sorted(p.name for p in gen.iterdir() if p.name.endswith(("_pb2.py", ".pyi")))
    for name in names:
        assert (made / name).read_text() == (gen / name).read_text(), name


def test_a_pipeline_through_pps(server: tuple[Gateway, str, int]) -> None:
    _gw, host, port = server
    out = run_sdk(HERE / "sdk_pipeline.py", host, port)
    assert out["effective"] == {"name": "shout"}
    assert out["job"] == ["JOB_SUCCESS", 2, 2, ""]
    assert out["output"] == "BETA"
    assert out["datums"] == [["SUCCESS", ["/a"]], ["SUCCESS", ["/b"]]]
    assert out["datum"] is True
    assert out["pipeline"] == ["PIPELINE_RUNNING", 1, "/*"]
    assert out["logs"] == ["a", "b"] and out["log job"] is True
    assert out["subscribed job"] == [True]
    assert out["commit set"] == ["shout"]  # made by creating the pipeline, as in Pachyderm
    assert out["stopped"] is True
    assert out["listed"] == ["shout"]
    assert out["again"] == "ALREADY_EXISTS"
    assert out["bad"][0] == "INVALID_ARGUMENT" and "transform.cmd" in out["bad"][1]
    assert out["after delete"] == []
    assert out["count"] == ["JOB_SUCCESS", "2"] and out["count spec"] == 2
    assert out["details"] == ["sh", "words", "/", 2, "master"]
    assert out["tf"][0] == "INVALID_ARGUMENT" and "tf_job: not supported by Tusk" in out["tf"][1]


def test_transactions_stop_job_and_restart_datum(
    server: tuple[Gateway, str, int], tmp_path: Path
) -> None:
    _gw, host, port = server
    out = run_sdk(HERE / "sdk_transactions.py", host, port, str(tmp_path))
    assert out["inside"] == "NOT_FOUND"  # the transaction's repo does not exist before it runs
    assert out["requests"] == ["startCommit", "startCommit", "createRepo"]
    assert out["listed"] is True
    assert out["made"] == "made"
    assert out["commit set"] == ["left", "right"]  # the transaction's id is their commit set
    assert out["same ids"] == [True, True]  # the ids promised when the requests were added
    assert out["jobs"] == 2  # the first, then one for both inputs changed together
    assert out["joined"][1:3] == ["0", "1"] and out["joined"][4:] == ["0", "1"], out["joined"]
    code, message = out["finish"]
    assert code == "ALREADY_EXISTS" and "request 2 of 2 of transaction" in message, message
    assert out["first"] == "NOT_FOUND"  # all or nothing
    assert out["kept"] is True and out["deleted"] is False
    assert out["refused"][0] == "NOT_FOUND" and "nowhere" in out["refused"][1]
    assert out["pipeline in txn"] == "INVALID_ARGUMENT"
    assert out["left"] == 1 and out["dev"] is True
    assert out["batch"] == [True, True]
    assert out["unknown txn"] == "NOT_FOUND"
    assert out["restarted"] == ["JOB_SUCCESS", True]
    assert out["restarted output"] == "f"
    assert out["restart done job"] == "FAILED_PRECONDITION"
    assert out["stopped"] == "JOB_KILLED"


def test_a_taken_grpc_port_given_fails_the_start(
    server: tuple[Gateway, str, int], tmp_path: Path
) -> None:
    _gw, _host, port = server
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    r = subprocess.run(
        [sys.executable, "-m", "tusk.cli.main", "--home", str(tmp_path / "h"), "up", "--port",
         "0", "--s3-port", "0", "--grpc-port", str(port)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert r.returncode != 0
    assert f"gRPC port {port} on 127.0.0.1 is taken" in r.stderr, r.stderr


def test_bad_input_is_refused_and_the_server_stays_fine(server: tuple[Gateway, str, int]) -> None:
    """What no SDK sends, sent raw: bytes that are no message, a 100 MiB message, a ModifyFile
    stream that breaks off. Each gets its status; nothing is committed; the server answers."""
    import grpc

    from tusk.grpcapi.gen import pfs_pb2

    gw, host, port = server
    with tusk.Client(address=gw.api) as c:
        c.create_repo("raw")
        c.put_file("raw@master:/kept", b"kept")
        before = c.inspect_commit("raw@master").id
    options = [("grpc.max_send_message_length", 200 << 20)]
    with grpc.insecure_channel(f"{host}:{port}", options=options) as channel:
        inspect = channel.unary_unary("/pfs_v2.API/InspectRepo")
        with pytest.raises(grpc.RpcError) as err:
            inspect(b"\xff\xff\xff\xff", timeout=10)
        assert err.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
        with pytest.raises(grpc.RpcError) as err:
            inspect(b"\x0a" + b"\x00" * (100 << 20), timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        modify = channel.stream_unary(
            "/pfs_v2.API/ModifyFile", request_serializer=pfs_pb2.ModifyFileRequest.SerializeToString
        )
        commit = pfs_pb2.Commit(branch=pfs_pb2.Branch(repo=pfs_pb2.Repo(name="raw"), name="master"))

        def broken() -> Iterator[Any]:
            yield pfs_pb2.ModifyFileRequest(set_commit=commit)
            add = pfs_pb2.AddFile(path="/half")
            add.raw.value = b"x" * (1 << 20)
            for _ in range(12):  # past 8 MiB: streamed into the store while it arrives
                yield pfs_pb2.ModifyFileRequest(add_file=add)
            raise ConnectionError("the client went away")

        with pytest.raises(grpc.RpcError):
            modify(broken(), timeout=30)
        version = channel.unary_unary("/versionpb_v2.API/GetVersion")(b"", timeout=10)
        assert version  # the server answers as before
        # A stream to a branch that does not exist yet makes it, with one commit.
        fresh = pfs_pb2.Commit(branch=pfs_pb2.Branch(repo=pfs_pb2.Repo(name="raw"), name="fresh"))
        add = pfs_pb2.AddFile(path="/x")
        add.raw.value = b"new branch"
        modify(iter([pfs_pb2.ModifyFileRequest(set_commit=fresh),
                     pfs_pb2.ModifyFileRequest(add_file=add)]), timeout=30)  # fmt: skip

        # Messages in Pachyderm's words where its clients match on them.
        def details(rpc: str, request: Any) -> str:
            with pytest.raises(grpc.RpcError) as err:
                channel.unary_unary(
                    f"/pfs_v2.API/{rpc}", request_serializer=type(request).SerializeToString
                )(request, timeout=10)
            return str(err.value.details())

        raw = pfs_pb2.Repo(name="raw")
        assert details("InspectRepo", pfs_pb2.InspectRepoRequest(repo=pfs_pb2.Repo(name="no")))\
            .startswith("repo no not found")  # fmt: skip
        assert details("InspectBranch", pfs_pb2.InspectBranchRequest(
            branch=pfs_pb2.Branch(repo=raw, name="nope"))).startswith(
            "branch nope not found in repo raw")  # fmt: skip
        gone = pfs_pb2.Commit(id="0" * 32, repo=raw)
        assert details("InspectCommit", pfs_pb2.InspectCommitRequest(commit=gone)) == (
            f"commit raw@{'0' * 32} not found"
        )
        start = channel.unary_unary(
            "/pfs_v2.API/StartCommit",
            request_serializer=pfs_pb2.StartCommitRequest.SerializeToString,
            response_deserializer=pfs_pb2.Commit.FromString,
        )
        opened = start(pfs_pb2.StartCommitRequest(branch=pfs_pb2.Branch(repo=raw, name="w")))
        again = details("StartCommit", pfs_pb2.StartCommitRequest(
            branch=pfs_pb2.Branch(repo=raw, name="w")))  # fmt: skip
        assert again.startswith(f"parent commit raw@{opened.id} has not been finished"), again
        finish = pfs_pb2.FinishCommitRequest(commit=pfs_pb2.Commit(id=opened.id, repo=raw))
        finisher = channel.unary_unary(
            "/pfs_v2.API/FinishCommit",
            request_serializer=pfs_pb2.FinishCommitRequest.SerializeToString,
        )
        finisher(finish)
        assert "has already finished" in details("FinishCommit", finish)
    with tusk.Client(address=gw.api) as c:
        time.sleep(0.5)  # (the server sees the broken stream end just after the client)
        assert c.inspect_commit("raw@master").id == before  # no partial commit
        assert [f.path for f in c.list_files("raw@master:/")] == ["/kept"]
        assert c.get_file("raw@fresh:/x") == b"new branch"
        assert len(c.list_commits("raw@fresh")) == 1


def test_pipeline_details_carry_the_whole_spec() -> None:
    """``PipelineInfo.details`` from a spec using most fields (none lost to a shape mismatch)."""
    from tusk.grpcapi.pps import details
    from tusk.pps.models import PipelineInfo
    from tusk.pps.spec import load_spec

    spec = load_spec({
        "pipeline": {"name": "p", "project": {"name": "lab"}},
        "transform": {"cmd": ["sh"], "image": "busybox", "env": {"A": "1"},
                      "secrets": [{"name": "s", "env_var": "S", "key": "k"}]},
        "input": {"cross": [
            {"pfs": {"repo": "in", "glob": "/*", "project": {"name": "lab"}, "s3": False}},
            {"cron": {"name": "tick", "spec": "@every 1h", "start": "2026-01-01T00:00:00Z"}},
        ]},
        "datum_timeout": "1m", "job_timeout": "2h", "datum_tries": 4,
        "resource_limits": {"memory": "64Mi", "cpu": 1}, "egress": {"URL": "s3://b/p"},
        "metadata": {"labels": {"team": "x"}}, "parallelism_spec": {"constant": 2},
    }).canonical()  # fmt: skip
    info = PipelineInfo("lab/p", 1, "running", "", "", "master", 1.0, 2.0, spec)
    d = details(info)
    assert list(d.transform.cmd) == ["sh"] and d.transform.env["A"] == "1"
    assert d.transform.secrets[0].env_var == "S"
    assert d.input.cross[0].pfs.project == "lab" and d.input.cross[1].cron.spec == "@every 1h"
    assert d.datum_timeout.seconds == 60 and d.job_timeout.seconds == 7200
    assert d.datum_tries == 4 and d.parallelism_spec.constant == 2
    assert d.resource_limits.memory == "64Mi" and d.egress.URL == "s3://b/p"
    assert d.metadata.labels["team"] == "x" and d.updated_at.seconds == 2


def test_a_protected_branch_refuses_writes_through_pachyderm_sdk(
    server: tuple[Gateway, str, int],
) -> None:
    """Issue 22: each write FAILED_PRECONDITION naming the rule; the branch stays. A check
    that refuses a commit is FAILED_PRECONDITION too."""
    from tusk import Client

    gw, host, port = server
    with Client(address=gw.api) as c:
        c.create_repo("guarded")
        c.put_file("guarded@master:/a", b"a")
        c.create_branch("guarded@side", head="master")
        c.put_file("guarded@side:/b", b"b")
        c.protect_branch("guarded@master")
        head = c.inspect_branch("guarded@master").head
        c.create_repo("gated")
        c.put_file("gated@master:/a", b"a")
        gated = c.inspect_branch("gated@master").head
        c.apply([{"kind": "check", "name": "no-bad", "repo": "gated", "on": ["commit"],
                  "cmd": ["sh", "-c", 'test ! -e "$TUSK_PFS/gated/bad"']}])  # fmt: skip
        out = run_sdk(HERE / "sdk_protect.py", host, port)
        for what in ("put", "start", "move", "delete"):
            assert out[what][0] == "FAILED_PRECONDITION", (what, out[what])
            assert "guarded@master is protected" in out[what][1]
        assert out["side"] == "ok"  # other branches take writes
        assert c.inspect_branch("guarded@master").head == head
        # Issue 22's checks: FinishCommit of a commit a check refuses is FAILED_PRECONDITION
        # naming the check; the open commit is deleted, and a good one lands.
        assert out["checked"][0] == "FAILED_PRECONDITION", out["checked"]
        assert "check no-bad (failed, exit code 1)" in out["checked"][1]
        assert out["dropped"] == "ok" and out["passes"] == "ok", out
        assert [f.path for f in c.list_files("gated@master:/")] == ["/a", "/good"]
        assert c.inspect_commit("gated@master").parent == gated
        c.finish_commit("guarded@side")
        assert c.fsck().ok
