"""Several processes writing to one home at once: nothing is lost, history stays a line.

Each worker is a real subprocess with its own client. Workers open their client, report
"ready", and wait for a go file, so their writes overlap as much as possible.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import blake3
import pytest

from tusk import Client
from tusk.errors import StorageError
from tusk.pfs.service import PfsService

N = 20

WORKER = """
import sys, time
from pathlib import Path
import blake3
from tusk import Client

def content(who, i):
    if i % 5 == 4:  # now and then a file of several chunks, so pack writes overlap too
        return blake3.blake3(f"{who}:{i}".encode()).digest(length=300_000)
    return f"{who}:{i};".encode() * (i + 1)

home, mode, who, n, go = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5])
c = Client(home)
if mode == "fresh":
    c.create_repo(f"repo{who}")
print("ready", flush=True)
deadline = time.monotonic() + 60
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.001)
if mode == "put":
    for i in range(n):
        c.put_file(f"r@master:/{who}/f{i:03d}", content(who, i))
elif mode == "commits":
    for i in range(n):
        c.start_commit(f"r@{who}", description=f"{who} {i}")
        for j in range(3):
            c.put_file(f"r@{who}:/c{i:03d}/p{j}", content(who, i * 3 + j))
        c.delete_file(f"r@{who}:/c{i:03d}/p0")
        c.finish_commit(f"r@{who}")
elif mode == "fresh":
    for i in range(n):
        c.put_file(f"repo{who}@master:/f{i:03d}", content(who, i))
c.close()
print("done", flush=True)
"""


def content(who: str, i: int) -> bytes:
    if i % 5 == 4:
        return blake3.blake3(f"{who}:{i}".encode()).digest(length=300_000)
    return f"{who}:{i};".encode() * (i + 1)


def run_workers(home: Path, mode: str, names: list[str], n: int, tmp_path: Path) -> None:
    go = tmp_path / "go"
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(home), mode, who, str(n), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for who in names
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line.strip() == b"ready", (line, p.stderr.read() if p.stderr else b"")
        go.touch()
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err.decode()
            assert out.strip() == b"done"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def check_line(c: Client, address: str, expected_len: int) -> list[str]:
    """The branch history is one line of finished commits; return ids oldest first."""
    history = c.list_commits(address)
    assert len(history) == expected_len
    for newer, older in pairwise(history):
        assert newer.parent == older.id
    assert history[-1].parent is None
    assert all(x.finished for x in history)
    return [x.id for x in reversed(history)]


@pytest.mark.parametrize("procs", [2, 4])
def test_parallel_auto_commits_on_one_branch(home: Path, tmp_path: Path, procs: int) -> None:
    with Client(home) as c:
        c.create_repo("r")
    names = [f"w{k}" for k in range(procs)]
    run_workers(home, "put", names, N, tmp_path)

    with Client(home) as c:
        ids = check_line(c, "r@master", procs * N)
        assert sorted(x.id for x in c.list_commits("r")) == sorted(ids)
        expected = {f"/{w}/f{i:03d}": content(w, i) for w in names for i in range(N)}
        listed = {f.path: f.size for f in c.glob_files("r@master:/**") if f.type == "file"}
        assert listed == {p: len(v) for p, v in expected.items()}
        for path, data in expected.items():
            assert c.get_file(f"r@master:{path}") == data
        # Every commit added exactly its own file on top of its parent: no lost update.
        order: dict[str, list[int]] = {w: [] for w in names}
        for k, cid in enumerate(ids):
            diff = c.diff_file(f"r@{cid}")
            assert len(diff) == 1
            assert diff[0].change == "added"
            who, name = diff[0].path.strip("/").split("/")
            order[who].append(int(name[1:]))
            assert c.inspect_commit(f"r@{cid}").files == k + 1
        # Each worker's puts landed in the order it made them.
        assert all(seq == list(range(N)) for seq in order.values())
        report = c.fsck()
        assert report.ok, report.problems


def test_parallel_open_commits_on_two_branches(home: Path, tmp_path: Path) -> None:
    n = 10
    with Client(home) as c:
        c.create_repo("r")
        c.put_file("r@master:/base", b"base")
        c.create_branch("r@left", head="master")
        c.create_branch("r@right", head="master")
        base = c.inspect_branch("r@master").head
    run_workers(home, "commits", ["left", "right"], n, tmp_path)

    with Client(home) as c:
        for who in ("left", "right"):
            ids = check_line(c, f"r@{who}", n + 1)
            assert ids[0] == base
            expected = {"/base": b"base"}
            for i in range(n):
                for j in (1, 2):
                    expected[f"/c{i:03d}/p{j}"] = content(who, i * 3 + j)
            listed = {f.path for f in c.glob_files(f"r@{who}:/**") if f.type == "file"}
            assert listed == set(expected)
            for path, data in expected.items():
                assert c.get_file(f"r@{who}:{path}") == data
            for i, cid in enumerate(ids[1:]):
                info = c.inspect_commit(f"r@{cid}")
                assert info.description == f"{who} {i}"
                assert sorted(d.path for d in c.diff_file(f"r@{cid}")) == [
                    f"/c{i:03d}/p1",
                    f"/c{i:03d}/p2",
                ]
        assert c.inspect_branch("r@master").head == base
        assert len(c.list_commits("r")) == 2 * n + 1
        report = c.fsck()
        assert report.ok, report.problems


def test_parallel_first_use_of_a_fresh_home(home: Path, tmp_path: Path) -> None:
    """Several processes creating the same new home at once (schema migration included)."""
    names = [str(k) for k in range(4)]
    run_workers(home, "fresh", names, 5, tmp_path)
    with Client(home) as c:
        assert sorted(r.name for r in c.list_repos()) == [f"repo{k}" for k in names]
        for k in names:
            check_line(c, f"repo{k}@master", 5)
            for i in range(5):
                assert c.get_file(f"repo{k}@master:/f{i:03d}") == content(k, i)
        assert c.fsck().ok


def test_gc_racing_an_upload_never_commits_missing_chunks(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gc that runs while an upload is between storing its chunks and committing.

    ``gc(grace=0)`` stands for any gc whose grace period is shorter than the upload (a long
    upload under the default grace). The put may fail (and must then change nothing) but must
    never commit a tree naming chunks the gc removed.
    """
    with Client(home) as c:
        c.create_repo("r")
        c.put_file("r@master:/old", b"old")
        before = c.inspect_branch("r@master").head

        original = PfsService.modify
        ran: list[int] = []

        def modify_after_gc(self: PfsService, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            if not ran:
                time.sleep(0.01)
                with Client(home) as other:
                    ran.append(other.gc(grace=0).chunks_deleted)
            return original(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(PfsService, "modify", modify_after_gc)
        data = blake3.blake3(b"race").digest(length=2_000_000)
        try:
            c.put_file("r@master:/new.bin", data)
        except StorageError:
            assert c.inspect_branch("r@master").head == before
        else:
            assert c.get_file("r@master:/new.bin") == data
        monkeypatch.undo()
        assert ran
        report = c.fsck()
        assert report.ok, report.problems
