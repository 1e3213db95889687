"""Retention (issue 18): rules that expire old commits, applied by gc, with tags, branches and
pipelines, on the embedded store and on PostgreSQL + S3; what goes, what stays for lineage,
the space that comes back; bad rules refused; kill -9 during retention leaves fsck clean."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

import s3server
from tusk import Client
from tusk.errors import InvalidArgument, NotFound, RepoNotFound
from tusk.storage.backends import open_backend

s3_server = s3server.s3_server
s3_url = s3server.s3_url
MiB = 1 << 20


def blob(i: int) -> bytes:
    return blake3.blake3(b"retention %d" % i).digest(length=MiB)  # incompressible, unique


@pytest.fixture(params=["embedded", "postgresql+s3"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The objects' URL; the metadata on SQLite in the home, or on PostgreSQL."""
    if request.param == "embedded":
        monkeypatch.delenv("TUSK_METADATA_URL", raising=False)
        monkeypatch.delenv("TUSK_STORAGE_URL", raising=False)
        yield str(tmp_path / "home" / "objects")
        return
    monkeypatch.setenv("TUSK_METADATA_URL", request.getfixturevalue("pg_server").new_database())
    url = request.getfixturevalue("s3_url")
    monkeypatch.setenv("TUSK_STORAGE_URL", url)
    yield url


def _packs(url: str) -> int:
    backend = open_backend(url)
    try:
        return sum(o.size for o in backend.list("packs/"))
    finally:
        backend.close()


def test_retention_with_tags_branches_and_a_pipeline(store: str, tmp_path: Path) -> None:
    with Client(tmp_path / "home") as c:
        c.create_repo("raw")
        c.create_pipeline({
            "pipeline": {"name": "up"},
            "input": {"pfs": {"repo": "raw", "glob": "/*"}},
            "transform": {"cmd": ["sh", "-c", "cp /pfs/raw/* /pfs/out/"]},
        })  # fmt: skip
        ids = []
        for i in range(1, 7):  # /data.bin changes every commit, /stable.txt never
            items = [("/data.bin", blob(i))] + ([("/stable.txt", b"s")] if i == 1 else [])
            ids.append(c.put_files("raw@master", items).commit.id)
            c.wait_commit("up@master", timeout=60)
        c1, c2, c3, c4, c5, c6 = ids
        c.create_tag(f"raw@{c2}", "v1")
        outs = {x.provenance[0].split("@")[1]: x.id for x in c.list_commits("up@master")}
        assert set(outs) == set(ids)

        rule = c.set_retention("raw", keep_last=2)
        assert (rule.keep_last, rule.keep_within, rule.keep_tagged) == (2, None, True)
        assert [r.repo for r in c.list_retention()] == ["raw"]
        before = _packs(store)
        plan = c.gc(grace=0, dry_run=True)
        # c5, c6: the newest two; c2: tagged; c1: /stable.txt's output was computed there and
        # every later job carried it forward, so lineage needs it. The outputs of c3 and c4
        # go with them, and their jobs' records.
        want = sorted([f"raw@{c3}", f"raw@{c4}", f"up@{outs[c3]}", f"up@{outs[c4]}"])
        assert plan.expired == want and plan.dry_run
        assert (plan.jobs_expired, plan.kept_for_lineage) == (2, 1)
        assert plan.bytes_freed >= 2 * MiB  # data.bin v3 and v4 (twice: raw and up share)
        assert _packs(store) == before and len(c.list_commits("raw")) == 6  # nothing changed

        done = c.gc(grace=0)
        assert done.expired == want and not done.dry_run
        assert before - _packs(store) >= 2 * MiB, (before, _packs(store))
        assert [x.id for x in c.list_commits("raw@master")] == [c6, c5, c2, c1]
        assert c.inspect_commit(f"raw@{c5}").parent == c2  # re-parented
        assert c.get_file("raw@v1:/data.bin") == blob(2)
        assert len(c.list_jobs("up")) == 4
        step = c.lineage("up@master:/stable.txt")  # complete: back to the original data
        assert (step.inputs[0].repo, step.inputs[0].commit) == ("raw", c1)
        assert c.get_file(f"raw@{step.inputs[0].commit}:/stable.txt") == b"s"
        assert c.lineage("up@master:/data.bin").inputs[0].commit == c6
        fsck = c.fsck()
        assert fsck.ok, fsck.problems

        # The pipeline goes on as before; a second pass has nothing to do.
        c.put_file("raw@master:/data.bin", blob(7))
        assert c.get_file("up@master:/data.bin") == blob(7) or c.wait_commit("up@master", 60)
        assert c.get_file("up@master:/data.bin") == blob(7)
        assert c.gc(grace=0, retention=False).expired == []
        c.set_retention("raw", keep_within=3600)  # everything is newer: nothing expires
        assert c.gc(grace=0, dry_run=True).expired == []
        c.delete_retention("raw")
        assert c.list_retention() == []


def test_bad_rules_are_refused(tmp_path: Path) -> None:
    with Client(tmp_path / "home") as c:
        c.create_repo("r")
        c.put_file("r@master:/a", b"a")
        with pytest.raises(InvalidArgument, match="would expire every commit"):
            c.set_retention("r")
        with pytest.raises(InvalidArgument, match="--keep-last 0 would expire every commit"):
            c.set_retention("r", keep_last=0)
        with pytest.raises(InvalidArgument, match="positive duration"):
            c.set_retention("r", keep_within=0)
        with pytest.raises(RepoNotFound):
            c.set_retention("nope", keep_last=1)
        with pytest.raises(NotFound, match="has no retention rule"):
            c.delete_retention("r")
        assert c.list_retention() == []


def test_the_cli_and_kill_9_during_retention(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    cmd = [sys.executable, "-m", "tusk.cli.main", "--home", str(home)]

    def tusk(*args: str, code: int = 0) -> str:
        r = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == code, (r.stdout, r.stderr)
        return r.stdout if code == 0 else r.stderr

    with Client(home) as c:
        c.create_repo("r")
        for i in range(40):
            c.put_file(f"r@master:/f{i % 3}", blob(100 + i)[: 64 * 1024])
        kept = [x.id for x in c.list_commits("r@master", number=3)]
    out = tusk("retention", "set", "r", "--keep-last", "3", "--keep-within", "30d")
    assert out.splitlines()[1].split()[:4] == ["r", "3", "30d", "yes"]
    assert "r " in tusk("retention", "show")
    assert "would expire" in tusk("retention", "set", "r", code=2).lower()
    tusk("retention", "set", "r", "--keep-last", "3")
    dry = json.loads(tusk("gc", "--dry-run", "--grace", "0", "-o", "json"))
    assert len(dry["expired"]) == 37 and dry["bytes_freed"] > 0
    assert "Would expire:" in tusk("gc", "--dry-run")

    # kill -9 at a few moments of a gc with retention: each time fsck stays clean and the
    # kept commits read back; in the end the run completes.
    for delay in (0.3, 0.6, 0.9):
        p = subprocess.Popen([*cmd, "gc", "--grace", "0"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        with Client(home) as c:
            fsck = c.fsck()
            assert fsck.ok, fsck.problems
            for cid in kept:
                assert c.inspect_commit(f"r@{cid}").id == cid
    tusk("gc", "--grace", "0")
    with Client(home) as c:
        assert [x.id for x in c.list_commits("r@master")] == kept
        assert c.fsck().ok
    tusk("retention", "unset", "r")
    assert "no retention rule" in tusk("retention", "unset", "r", code=3)


def test_a_tagged_output_of_expired_inputs_stays_with_its_inputs(tmp_path: Path) -> None:
    """A commit computed from expired commits goes with them unless it is tagged: a tag in a
    repo without a rule keeps its commit, and so (for lineage) what it was computed from."""
    with Client(tmp_path / "home") as c:
        c.create_repo("raw")
        c.create_repo("out")
        first, second, third = (c.put_file("raw@master:/x", b"%d" % i).commit.id for i in range(3))
        for src in (first, third):
            made = c.start_commit("out@master", provenance=[f"raw@{src}"]).id
            c.put_file(f"out@{made}:/y", b"from " + src.encode())
            c.finish_commit(f"out@{made}")
        tagged = c.list_commits("out@master")[1].id  # the one computed from `first`
        c.create_tag(f"out@{tagged}", "keep")
        c.set_retention("raw", keep_last=1)
        plan = c.gc(grace=0, dry_run=True)
        assert plan.expired == [f"raw@{second}"]
        assert plan.kept_for_lineage == 1  # `first`: the tagged output needs it
