"""``tusk mount --write``: real tools (cp -r, mv, rm, dd, a shell's redirection) change a
mounted branch, and ``tusk unmount`` turns the changes into exactly one commit; a killed
mount commits nothing and leaves the store clean.

Each test has its own store (small) and mount process. Skipped where FUSE is missing, except
under CI=true (the ``fuse`` fixture of test_mount.py's kind).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fusehelpers import need_fuse
from gateway import start_gateway
from tusk import Client
from tusk.sdk.mount import is_mounted

TUSK = [sys.executable, "-m", "tusk.cli.main"]

BASE = {
    "/a.txt": b"alpha\n",
    "/keep.txt": b"kept as it was\n",
    "/dir/b.bin": bytes(range(256)) * 400,
    "/dir/sub/c.txt": b"c" * 70_000,
    "/old/x.txt": b"0123456789",
    "/old/deep/y.txt": b"y\n",
    "/gone/z.txt": b"z\n",
}


@pytest.fixture(scope="module")
def fuse() -> None:
    need_fuse()


@dataclass
class Store:
    home: Path
    env: dict[str, str]  # XDG_CACHE_HOME in tmp: the default staging root and the registry
    head: str
    mounts: list[tuple[subprocess.Popen[str], Path]] = field(default_factory=list)

    def tusk(self, *args: str, home: bool = True) -> subprocess.CompletedProcess[str]:
        pre = ["--home", str(self.home)] if home else []
        return subprocess.run(
            [*TUSK, *pre, *args], capture_output=True, text=True, env=self.env, timeout=120
        )

    def client(self) -> Client:
        return Client(self.home)


@pytest.fixture
def store(tmp_path: Path, fuse: None) -> Iterator[Store]:
    home = tmp_path / "home"
    with Client(home) as c:
        c.create_repo("data")
        c.put_files("data@master", BASE.items())
        head = c.inspect_commit("data@master").id
        c.create_tag("data@master", "v1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env.pop("FUSE_LIBRARY_NAME", None)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    s = Store(home, env, head)
    yield s
    for proc, root in s.mounts:  # a test that failed half way: end its mount
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        if is_mounted(root):
            subprocess.run(["fusermount3", "-u", str(root)], check=False)


@dataclass
class Mount:
    proc: subprocess.Popen[str]
    root: Path
    staging: Path  # this mount's own staging folder, as it printed it

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


def start_mount(store: Store, root: Path, *args: str) -> Mount:
    root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [*TUSK, *args, str(root)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        text=True, env=store.env,
    )  # fmt: skip
    store.mounts.append((proc, root))
    assert proc.stderr is not None
    staging = None
    deadline = time.monotonic() + 30
    while staging is None:  # the mount says where it stages before it says how to stop it
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"tusk mount exited {proc.wait(30)} before it came up")
        if line.startswith("read-write: changes are staged in "):
            staging = Path(line.rsplit(" ", 1)[-1].strip())
        assert time.monotonic() < deadline
    while not os.path.ismount(root):
        assert proc.poll() is None and time.monotonic() < deadline, "the mount did not come up"
        time.sleep(0.02)
    return Mount(proc, root, staging)


def sh(script: str, cwd: Path) -> None:
    done = subprocess.run(["sh", "-ec", script], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def files_of(store: Store, ref: str, tmp: Path) -> dict[str, bytes]:
    """Every file of ``data@ref`` as ``tusk get file -r`` writes it."""
    out = tmp / f"get-{ref}-{time.monotonic_ns()}"
    got = store.tusk("get", "file", f"data@{ref}:/", "-r", "-o", str(out))
    assert got.returncode == 0, got.stderr
    return {"/" + str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def tree(root: Path) -> dict[str, bytes]:
    return {"/" + str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def new_commits(store: Store) -> list[str]:
    with store.client() as c:
        return [i.id for i in c.list_commits("data") if i.id != store.head]


def test_cp_rename_delete_overwrite_become_one_commit(store: Store, tmp_path: Path) -> None:
    local = tmp_path / "local/photos"
    (local / "2024").mkdir(parents=True)
    (local / "a.jpg").write_bytes(os.urandom(300_000))
    (local / "2024/b.jpg").write_bytes(b"b" * 5000)
    (local / "2024/empty.txt").write_bytes(b"")
    m = start_mount(store, tmp_path / "mnt", "--home", str(store.home), "mount", "--write",
                    "data@master", "--staging", str(tmp_path / "staging"))  # fmt: skip
    assert m.staging.parent == tmp_path / "staging"
    top = m.root / "data"
    sh(
        f"cp -r {local} photos\n"  # a folder from outside
        "mv a.txt renamed.txt\n"  # a file renamed, bytes never copied
        "rm gone/z.txt\n"  # the only file of a folder: the empty folder is not committed
        "echo overwritten > dir/sub/c.txt\n"  # truncated and written
        "printf XY | dd of=old/x.txt bs=1 seek=3 conv=notrunc 2>/dev/null\n"  # in place
        "mv old new\n"  # a folder renamed, with its changed file
        "mkdir -p made/inner && rmdir made/inner\n"  # made and removed
        "mkdir made/kept && echo k > made/kept/k.txt\n"
        "rm dir/b.bin && echo b > dir/b.bin\n",  # deleted, then made again
        cwd=top,
    )
    expected = dict(BASE)
    expected["/renamed.txt"] = expected.pop("/a.txt")
    del expected["/gone/z.txt"]
    expected["/dir/sub/c.txt"] = b"overwritten\n"
    expected["/new/x.txt"] = b"012XY56789"
    expected["/new/deep/y.txt"] = expected.pop("/old/deep/y.txt")
    del expected["/old/x.txt"]
    expected["/made/kept/k.txt"] = b"k\n"
    expected["/dir/b.bin"] = b"b\n"
    for path in tree(local):
        expected["/photos" + path] = (local / path.lstrip("/")).read_bytes()
    assert tree(top) == expected  # what programs see while it is mounted
    assert sorted(os.listdir(top)) == [
        "dir", "gone", "keep.txt", "made", "new", "photos", "renamed.txt"
    ]  # fmt: skip
    assert os.listdir(top / "gone") == [] and os.listdir(top / "made") == ["kept"]
    assert not (top / "old").exists()
    assert new_commits(store) == []  # nothing reaches the branch while mounted

    done = store.tusk("unmount", str(m.root), home=False)
    assert done.returncode == 0, done.stderr
    assert m.proc.wait(30) == 0, m.stderr()
    assert not is_mounted(m.root)
    added = new_commits(store)
    assert len(added) == 1
    assert done.stdout == f"data@master: committed {added[0]}\n"
    with store.client() as c:
        info = c.inspect_commit("data@master")
        assert info.id == added[0] and info.parent == store.head and info.state == "finished"
        assert [b.name for b in c.list_branches("data")] == ["master"]  # no scratch left
    assert files_of(store, "master", tmp_path) == expected
    assert not m.staging.exists()  # committed: the staging folder is gone
    fsck = store.tusk("fsck")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_no_changes_no_commit(store: Store, tmp_path: Path) -> None:
    m = start_mount(store, tmp_path / "mnt", "--home", str(store.home), "mount", "--write",
                    "data@master")  # fmt: skip
    assert m.staging.parent == tmp_path / "cache/tusk/mounts"  # the default staging root
    top = m.root / "data"
    assert (top / "a.txt").read_bytes() == BASE["/a.txt"]
    with open(top / "keep.txt", "r+b") as f:  # opened for writing, never written
        assert f.read() == BASE["/keep.txt"]
    (top / "tmpdir").mkdir()
    (top / "tmpdir").rmdir()
    (top / "scratch.txt").write_text("short-lived")
    (top / "scratch.txt").unlink()
    done = store.tusk("unmount", str(m.root), home=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "data@master: no changes, nothing committed\n"
    assert m.proc.wait(30) == 0
    assert new_commits(store) == []
    assert not m.staging.exists()


def test_kill_9_leaves_the_branch_and_the_store_clean(store: Store, tmp_path: Path) -> None:
    m = start_mount(store, tmp_path / "mnt", "--home", str(store.home), "mount", "--write",
                    "data@master")  # fmt: skip
    top = m.root / "data"
    (top / "new.bin").write_bytes(b"n" * 200_000)
    (top / "a.txt").unlink()
    (top / "old").rename(top / "older")
    m.proc.kill()
    m.proc.wait(30)
    with store.client() as c:
        assert c.inspect_commit("data@master").id == store.head
        assert [b.name for b in c.list_branches("data")] == ["master"]
    assert new_commits(store) == []
    fsck = store.tusk("fsck")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    # what was staged is left for the user: the bytes, and the deletes and renames
    assert (m.staging / "files/data/new.bin").read_bytes() == b"n" * 200_000
    changes = json.loads((m.staging / "changes.json").read_text())
    assert changes["deleted"] == ["/data/a.txt", "/data/old"]
    assert changes["renamed"] == {"/data/older": "/old"}
    assert is_mounted(m.root)
    done = store.tusk("unmount", str(m.root), home=False)
    assert done.returncode == 0, done.stderr
    assert "killed: nothing was committed" in done.stderr and str(m.staging) in done.stderr
    assert not is_mounted(m.root)
    # the branch takes writes as before, and a new write mount starts from the same head
    again = start_mount(store, m.root, "--home", str(store.home), "mount", "--write",
                        "data@master")  # fmt: skip
    assert (again.root / "data/a.txt").read_bytes() == BASE["/a.txt"]
    again.proc.send_signal(signal.SIGINT)  # Ctrl-C: unmounts, nothing to commit
    assert again.proc.wait(30) == 0
    assert new_commits(store) == []


def test_write_needs_a_branch(store: Store, tmp_path: Path) -> None:
    (tmp_path / "mp").mkdir()
    for ref in ("v1", store.head, "master^1", "master~1"):
        done = store.tusk("mount", "--write", f"data@{ref}", str(tmp_path / "mp"))
        if ref.startswith("master") and done.returncode == 3:
            continue  # master has one commit: its parent does not exist (a NotFound first)
        assert done.returncode == 2, (ref, done.stderr)
        assert done.stderr == (
            f"error: --write needs a branch, and data@{ref} is not one (a commit id, tag or "
            "ancestor ref cannot change): mount a branch, or mount this one without --write\n"
        )
    assert not is_mounted(tmp_path / "mp")
    with store.client() as c:
        c.start_commit("data@master")  # an open head: as a killed writer leaves it
    done = store.tusk("mount", "--write", "data@master", str(tmp_path / "mp"))
    assert done.returncode == 4 and "has an open commit" in done.stderr, done.stderr
    assert "tusk delete commit" in done.stderr
    assert list((tmp_path / "cache").rglob("files")) == []  # no staging folder was made


def test_the_top_folder_and_a_second_branch_are_not_a_free_for_all(
    store: Store, tmp_path: Path
) -> None:
    with store.client() as c:
        c.create_branch("data@dev", head="master")
    m = start_mount(store, tmp_path / "mnt", "--home", str(store.home), "mount", "--write",
                    "data@master", "data@dev")  # fmt: skip
    root = m.root
    with pytest.raises(OSError) as caught:
        (root / "x.txt").write_text("x")
    assert caught.value.errno == errno.EACCES
    with pytest.raises(OSError) as caught:
        (root / "data@master/a.txt").rename(root / "data@dev/a.txt")
    assert caught.value.errno == errno.EXDEV
    sh("mv data@master/a.txt data@dev/moved.txt", cwd=root)  # mv copies across, then deletes
    assert not (root / "data@master/a.txt").exists()
    done = store.tusk("unmount", str(root), home=False)
    assert done.returncode == 0, done.stderr
    assert m.proc.wait(30) == 0
    assert len(done.stdout.splitlines()) == 2
    master, dev = files_of(store, "master", tmp_path), files_of(store, "dev", tmp_path)
    assert "/a.txt" not in master and dev["/moved.txt"] == BASE["/a.txt"]


def test_a_branch_that_moved_meanwhile_gets_the_changes_on_top(
    store: Store, tmp_path: Path
) -> None:
    m = start_mount(store, tmp_path / "mnt", "--home", str(store.home), "mount", "--write",
                    "data@master")  # fmt: skip
    top = m.root / "data"
    (top / "keep.txt").write_bytes(b"from the mount\n")
    (top / "gone").rename(top / "went")
    with store.client() as c:  # another writer, while the mount runs
        moved = c.put_file("data@master:/other.txt", b"from elsewhere\n").commit.id
    assert not (top / "other.txt").exists()  # the mount stays on its base
    m.proc.send_signal(signal.SIGTERM)  # commits on the way out, as tusk unmount does
    assert m.proc.wait(30) == 0, m.stderr()
    with store.client() as c:
        head = c.inspect_commit("data@master")
    assert head.parent == moved
    files = files_of(store, "master", tmp_path)
    assert files["/other.txt"] == b"from elsewhere\n"
    assert files["/keep.txt"] == b"from the mount\n"
    assert files["/went/z.txt"] == b"z\n" and "/gone/z.txt" not in files


def test_a_failed_commit_keeps_the_staged_changes(store: Store, tmp_path: Path) -> None:
    m = start_mount(store, tmp_path / "mnt", "--home", str(store.home), "mount", "--write",
                    "data@master")  # fmt: skip
    (m.root / "data/new.txt").write_text("new\n")
    (m.root / "data/a.txt").unlink()
    with store.client() as c:
        c.protect_branch("data@master")  # writes are refused from now on
    done = store.tusk("unmount", str(m.root), home=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: unmounted, but not committed: ")
    assert str(m.staging) in done.stderr and done.stderr.count("\n") == 1
    assert m.proc.wait(30) != 0
    assert not is_mounted(m.root)
    assert new_commits(store) == []
    with store.client() as c:
        assert [b.name for b in c.list_branches("data")] == ["master"]
    assert (m.staging / "files/data/new.txt").read_text() == "new\n"
    fsck = store.tusk("fsck")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_write_mount_against_a_server(store: Store, tmp_path: Path) -> None:
    gw = start_gateway(store.home)
    try:
        local = tmp_path / "batch"
        local.mkdir()
        (local / "1.csv").write_text("a,b\n1,2\n")
        m = start_mount(store, tmp_path / "remote", "--address", gw.api, "mount", "--write",
                        "data@master")  # fmt: skip
        top = m.root / "data"
        sh(f"cp -r {local} batch && rm keep.txt && mv dir/sub dir/moved && "
           "printf Q | dd of=dir/b.bin bs=1 seek=10 conv=notrunc 2>/dev/null", cwd=top)  # fmt: skip
        done = store.tusk("unmount", str(m.root), home=False)
        assert done.returncode == 0, done.stderr
        assert m.proc.wait(30) == 0, m.stderr()
    finally:
        gw.stop()
    assert len(new_commits(store)) == 1
    files = files_of(store, "master", tmp_path)
    assert files["/batch/1.csv"] == b"a,b\n1,2\n"
    assert "/keep.txt" not in files and "/dir/sub/c.txt" not in files
    assert files["/dir/moved/c.txt"] == BASE["/dir/sub/c.txt"]
    b = bytearray(BASE["/dir/b.bin"])
    b[10] = ord("Q")
    assert files["/dir/b.bin"] == bytes(b)


def test_mount_commit_commits_while_mounted_and_goes_on(store: Store, tmp_path: Path) -> None:
    """``tusk mount --commit MOUNTPOINT``: what is staged becomes one commit now, the mount
    stays and shows the same files, and later changes make the next commit at unmount."""
    m = start_mount(store, tmp_path / "mnt", "--home", str(store.home), "mount", "--write",
                    "data@master")  # fmt: skip
    top = m.root / "data"
    sh("echo one > one.txt\nrm gone/z.txt\nmv old older\n", cwd=top)
    first = store.tusk("mount", "--commit", str(m.root), home=False)
    assert first.returncode == 0, first.stderr
    [c1] = new_commits(store)
    assert first.stdout == f"data@master: committed {c1}\n"
    expected = dict(BASE)
    expected["/one.txt"] = b"one\n"
    del expected["/gone/z.txt"]
    for path in ("/x.txt", "/deep/y.txt"):
        expected["/older" + path] = expected.pop("/old" + path)
    assert files_of(store, "master", tmp_path) == expected
    assert tree(top) == expected  # the mount shows the same, now on the new commit
    assert not (top / "old").exists()
    # Nothing staged: committing again changes nothing.
    again = store.tusk("mount", "--commit", str(m.root), home=False)
    assert again.returncode == 0 and again.stdout == "data@master: no changes, nothing committed\n"
    # A file open for writing: refused, nothing committed, the mount goes on.
    with open(top / "open.txt", "w") as f:
        f.write("half")
        f.flush()
        busy = store.tusk("mount", "--commit", str(m.root), home=False)
        assert busy.returncode == 4, busy.stderr
        assert "open for writing" in busy.stderr and len(busy.stderr.splitlines()) == 1
    assert new_commits(store) == [c1]
    sh("rm one.txt\necho more >> keep.txt\n", cwd=top)
    done = store.tusk("unmount", str(m.root), home=False)
    assert done.returncode == 0, done.stderr
    assert m.proc.wait(30) == 0
    c2 = next(c for c in new_commits(store) if c != c1)
    with store.client() as c:
        assert c.inspect_commit("data@master").id == c2
        assert c.inspect_commit(f"data@{c2}").parent == c1
    del expected["/one.txt"]
    expected["/keep.txt"] = BASE["/keep.txt"] + b"more\n"
    expected["/open.txt"] = b"half"
    assert files_of(store, "master", tmp_path) == expected


def test_mount_commit_needs_a_running_write_mount(store: Store, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    r = store.tusk("mount", "--commit", str(tmp_path / "empty"), home=False)
    assert r.returncode == 2 and "is not mounted" in r.stderr, r.stderr
    m = start_read_only(store, tmp_path / "ro")
    r = store.tusk("mount", "--commit", str(m), home=False)
    assert r.returncode == 2 and "not a --write mount" in r.stderr, r.stderr
    r = store.tusk("mount", "--commit", "data@master", str(m), home=False)
    assert r.returncode == 2 and "takes only the MOUNTPOINT" in r.stderr, r.stderr
    assert store.tusk("unmount", str(m), home=False).returncode == 0
    assert new_commits(store) == []


def start_read_only(store: Store, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [*TUSK, "--home", str(store.home), "mount", "data@master", str(root)],
        stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=store.env, text=True,
    )  # fmt: skip
    store.mounts.append((proc, root))
    deadline = time.monotonic() + 30
    while not os.path.ismount(root):
        assert proc.poll() is None and time.monotonic() < deadline, "the mount did not come up"
        time.sleep(0.02)
    return root
