"""``tusk mount``: commits as a read-only FUSE folder, read by real tools (find, du, tar, rsync,
numpy's memmap) from this process while the mount runs as its own ``tusk`` process.

One store and one mount are shared by the module: ``data@master`` and ``data@<first commit>``
side by side. Skipped where FUSE (Debian ``fuse3``, /dev/fuse) or mfusepy is missing, except
under CI=true, where that is a failure.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fusehelpers import need_fuse
from gateway import start_gateway
from tusk import Client
from tusk.sdk.mount import BLOCK_SIZE, is_mounted

BIG = 200 * 1024 * 1024
TUSK = [sys.executable, "-m", "tusk.cli.main"]


@pytest.fixture(scope="module")
def fuse() -> None:
    need_fuse()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env.pop("FUSE_LIBRARY_NAME", None)
    return env


def tusk(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TUSK, *args], capture_output=True, text=True, env=env or _env(), timeout=120
    )


def big_bytes() -> bytes:
    return random.Random(23).randbytes(BIG)


SMALL = {
    "/a.txt": b"alpha\n",
    "/dir/b.bin": bytes(range(256)) * 1000,
    "/dir/sub/c.txt": b"c" * 70_000,
    "/dir/sub/deeper/d.txt": b"",
    "/with space.txt": b"spaced\n",
    "/gone.txt": b"deleted in the second commit\n",
}


MANY = {f"/many/file-number-{i:05}.txt": b"%d\n" % i for i in range(2500)}


@dataclass
class Store:
    home: Path
    first: str  # the first commit's id
    second: str
    big: bytes
    files: dict[str, bytes]  # data@master's files


@dataclass
class Mount:
    proc: subprocess.Popen[str]
    root: Path
    stats: Path

    def stop(self, sig: int | None = None) -> dict[str, int]:
        """Unmount with ``tusk unmount``, or with a signal to the mount process (which then
        unmounts by itself); the stats it wrote on the way out."""
        if sig is not None:
            self.proc.send_signal(sig)
        else:
            done = tusk("unmount", str(self.root))
            assert done.returncode == 0, done.stderr
        assert self.proc.wait(30) == 0, self._stderr()
        assert not is_mounted(self.root)
        return json.loads(self.stats.read_text())  # type: ignore[no-any-return]

    def _stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


def start_mount(root: Path, *args: str, env: dict[str, str] | None = None) -> Mount:
    root.mkdir(parents=True, exist_ok=True)
    stats = root.parent / f"{root.name}.stats.json"
    proc = subprocess.Popen(
        [*TUSK, *args, str(root), "--stats", str(stats)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env or _env(),
    )
    deadline = time.monotonic() + 30
    while not os.path.ismount(root):
        if proc.poll() is not None:
            assert proc.stderr is not None
            raise AssertionError(f"tusk mount exited {proc.returncode}: {proc.stderr.read()}")
        assert time.monotonic() < deadline, "the mount did not come up in 30 s"
        time.sleep(0.02)
    return Mount(proc, root, stats)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, fuse: None) -> Store:
    home = tmp_path_factory.mktemp("mount") / "home"
    big = big_bytes()
    with Client(home) as c:
        c.create_repo("data")
        with c.commit("data@master") as h:
            for path, data in SMALL.items():
                h.put_file(path, data)
            h.put_file("/big.bin", big)
        first = c.inspect_commit("data@master").id
        with c.commit("data@master") as h:
            h.put_file("/a.txt", b"alpha, second version\n")
            h.put_file("/dir/new.txt", b"new\n")
            h.delete_file("/gone.txt")
        c.put_files("data@master", MANY.items())  # a folder listed in many kernel pages
        second = c.inspect_commit("data@master").id
    files = {p: d for p, d in SMALL.items() if p != "/gone.txt"}
    files.update({"/a.txt": b"alpha, second version\n", "/dir/new.txt": b"new\n"})
    files.update(MANY)
    files["/big.bin"] = big
    return Store(home, first, second, big, files)


@pytest.fixture(scope="module")
def mounted(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("mnt") / "m"
    m = start_mount(root, "--home", str(store.home), "mount", "data@master", f"data@{store.first}")
    try:
        yield root
    finally:
        m.stop()


def _tree(root: Path) -> dict[str, Path]:
    return {"/" + str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


# Reads


def test_names_and_every_file_equal_tusk_get_file(
    store: Store, mounted: Path, tmp_path: Path
) -> None:
    assert sorted(os.listdir(mounted)) == sorted(["data@master", f"data@{store.first}"])
    got = tusk("--home", str(store.home), "get", "file", "data@master:/", "-r", "-o",
               str(tmp_path / "copy"))  # fmt: skip
    assert got.returncode == 0, got.stderr
    through_mount = _tree(mounted / "data@master")
    copied = _tree(tmp_path / "copy")
    assert sorted(through_mount) == sorted(copied) == sorted(store.files)
    for path, p in through_mount.items():
        assert p.read_bytes() == copied[path].read_bytes() == store.files[path], path
        assert p.stat().st_size == len(store.files[path])


def test_stat_times_and_modes_come_from_the_commit(store: Store, mounted: Path) -> None:
    with Client(store.home) as c:
        finished = c.inspect_commit(f"data@{store.second}").finished_at
    assert finished is not None
    st = (mounted / "data@master/a.txt").stat()
    assert abs(st.st_mtime - finished) < 1e-3
    assert oct(st.st_mode & 0o777) == "0o444"
    assert oct((mounted / "data@master/dir").stat().st_mode & 0o777) == "0o555"


def test_find_du_tar_and_rsync(store: Store, mounted: Path, tmp_path: Path) -> None:
    top = mounted / "data@master"
    found = subprocess.run(["find", ".", "-type", "f"], cwd=top, capture_output=True,
                           text=True, check=True).stdout.split("\n")  # fmt: skip
    assert sorted(f[1:] for f in found if f) == sorted(store.files)
    dirs = subprocess.run(["find", ".", "-type", "d"], cwd=top, capture_output=True,
                          text=True, check=True).stdout.split()  # fmt: skip
    assert sorted(dirs) == [".", "./dir", "./dir/sub", "./dir/sub/deeper", "./many"]

    du = subprocess.run(["du", "-sb", str(top)], capture_output=True, text=True, check=True)
    assert int(du.stdout.split()[0]) == sum(len(d) for d in store.files.values())

    archive = tmp_path / "t.tar"
    subprocess.run(["tar", "-cf", str(archive), "-C", str(top), "."], check=True)
    with tarfile.open(archive) as tar:
        members = {m.name[1:]: m for m in tar.getmembers() if m.isfile()}
        assert sorted(members) == sorted(store.files)
        for path, m in members.items():
            data = tar.extractfile(m)
            assert data is not None
            assert (
                hashlib.sha256(data.read()).digest() == hashlib.sha256(store.files[path]).digest()
            )

    assert shutil.which("rsync"), "rsync is needed (apt-get install rsync; dev.sh installs it)"
    listed = subprocess.run(["rsync", "-n", "-a", "--out-format=%n", f"{top}/",
                             str(tmp_path / "empty")], capture_output=True, text=True,
                            check=True).stdout.split("\n")  # fmt: skip
    assert sorted("/" + n for n in listed if n and not n.endswith("/")) == sorted(store.files)
    copy = tmp_path / "copy"
    copy.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(copy)], check=True)
    same = subprocess.run(["rsync", "-n", "-a", "-c", "-i", f"{top}/", f"{copy}/"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert [line for line in same.splitlines() if line.startswith(">f")] == []


def test_a_large_folder_is_listed_page_by_page(store: Store, mounted: Path) -> None:
    folder = mounted / "data@master/many"
    expected = sorted(p.rsplit("/", 1)[-1] for p in MANY)
    assert sorted(os.listdir(folder)) == expected
    with os.scandir(folder) as it:  # a second listing, entry types without a stat each
        entries = list(it)
    assert sorted(e.name for e in entries) == expected
    assert all(e.is_file() for e in entries)
    listed = subprocess.run(["ls", "-f", str(folder)], capture_output=True, text=True,
                            check=True).stdout.split()  # fmt: skip
    assert sorted(listed) == sorted([".", "..", *expected])


def test_memmap_and_random_seeks_over_a_200_mib_file(store: Store, mounted: Path) -> None:
    np = pytest.importorskip("numpy")
    path = mounted / "data@master/big.bin"
    assert path.stat().st_size == BIG
    arr = np.memmap(path, dtype=np.uint8, mode="r")
    assert arr.shape == (BIG,)
    rng = random.Random(5)
    src = memoryview(store.big)
    for _ in range(50):
        at = rng.randrange(BIG - 100_000)
        n = rng.randrange(1, 100_000)
        assert arr[at : at + n].tobytes() == src[at : at + n]
    assert arr[-4096:].tobytes() == src[-4096:]
    del arr
    with open(path, "rb", buffering=0) as f:
        for _ in range(300):
            at = rng.randrange(BIG)
            n = rng.choice([1, 4096, 65_536, 3 * BLOCK_SIZE + 7])
            f.seek(at)
            assert f.read(n) == src[at : at + n]
        f.seek(BIG - 10)
        assert f.read(100) == src[-10:]
        assert f.read(100) == b""


def test_two_commits_side_by_side(store: Store, mounted: Path) -> None:
    new, old = mounted / "data@master", mounted / f"data@{store.first}"
    assert (new / "a.txt").read_bytes() == b"alpha, second version\n"
    assert (old / "a.txt").read_bytes() == SMALL["/a.txt"]
    assert (old / "gone.txt").read_bytes() == SMALL["/gone.txt"]
    assert not (new / "gone.txt").exists()
    assert (new / "dir/new.txt").exists() and not (old / "dir/new.txt").exists()
    assert (old / "big.bin").stat().st_size == BIG


def test_writes_are_refused(mounted: Path) -> None:
    top = mounted / "data@master"

    def open_for(path: Path, mode: str) -> None:
        with open(path, mode):
            pass

    attempts = [
        lambda: open_for(top / "new.txt", "wb"),
        lambda: open_for(top / "a.txt", "r+b"),
        lambda: (top / "d2").mkdir(),
        lambda: (top / "a.txt").unlink(),
        lambda: (top / "a.txt").rename(top / "b.txt"),
        lambda: os.truncate(top / "a.txt", 0),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as caught:
            attempt()
        assert caught.value.errno == errno.EROFS
    assert (top / "a.txt").read_bytes() == b"alpha, second version\n"


def test_unmount_while_a_file_is_open_is_refused(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "busy"
    m = start_mount(root, "--home", str(store.home), "mount", "data@master")
    with open(root / "data/a.txt", "rb") as f:
        busy = tusk("unmount", str(root))
        assert busy.returncode == 4, busy.stderr
        assert "open" in busy.stderr and busy.stderr.count("\n") == 1
        assert f.read() == b"alpha, second version\n"
    assert m.stop()["bytes_read"] > 0


# Laziness: the cost of a read is counted by the mount (--stats)


def test_reading_the_last_4_kib_fetches_one_block(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "lazy"
    m = start_mount(root, "--home", str(store.home), "mount", "data@master")
    fd = os.open(root / "data/big.bin", os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, BIG - 4096) == store.big[-4096:]
    finally:
        os.close(fd)
    # Ctrl-C: libfuse unmounts, the process writes its stats and exits 0.
    stats = m.stop(signal.SIGINT)
    assert stats["blocks_fetched"] == 1, stats
    assert 4096 <= stats["bytes_fetched"] <= BLOCK_SIZE
    # a block of 1 MiB overlaps at most 1 MiB / 32 KiB (the smallest chunk) + 1 chunks of the
    # file's ~1,600: the read cost well under 1% of the file
    assert stats["bytes_fetched"] * 100 < BIG


def test_the_block_cache_serves_reads_the_page_cache_does_not_have(
    store: Store, tmp_path: Path
) -> None:
    root = tmp_path / "cached"
    m = start_mount(root, "--home", str(store.home), "mount", "data@master",
                    "--cache-size", "8MiB")  # fmt: skip
    fd = os.open(root / "data/big.bin", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead: each pread is asked
        base = 5 * BLOCK_SIZE
        for at in (base, base + 300_000, base + 700_000):  # other pages of one block
            assert os.pread(fd, 4096, at) == store.big[at : at + 4096]
    finally:
        os.close(fd)
    stats = m.stop(signal.SIGTERM)  # unmounts cleanly too
    assert stats["blocks_fetched"] == 1, stats
    assert stats["cache_hits"] >= 2, stats
    assert stats["cache_bytes"] <= 8 * 1024 * 1024


# Against a server


def test_mount_against_a_server(store: Store, tmp_path: Path) -> None:
    gw = start_gateway(store.home)
    try:
        root = tmp_path / "remote"
        m = start_mount(root, "--address", gw.api, "mount", "data@master")
        top = root / "data"
        assert sorted(_tree(top)) == sorted(store.files)
        assert (top / "dir/sub/c.txt").read_bytes() == SMALL["/dir/sub/c.txt"]
        with open(top / "big.bin", "rb", buffering=0) as f:
            f.seek(BIG - 4096)
            assert f.read(4096) == store.big[-4096:]
            f.seek(12_345_678)
            assert f.read(100_000) == store.big[12_345_678 : 12_345_678 + 100_000]
        stats = m.stop()
        assert stats["blocks_fetched"] <= 8, stats
        assert stats["errors"] == 0
    finally:
        gw.stop()


# Bad input


def test_mount_point_missing_or_not_empty(store: Store, tmp_path: Path) -> None:
    missing = tusk("--home", str(store.home), "mount", "data@master", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: mount point") and "does not exist" in missing.stderr
    assert missing.stderr.count("\n") == 1
    (tmp_path / "full").mkdir()
    (tmp_path / "full/x").write_text("x")
    full = tusk("--home", str(store.home), "mount", "data@master", str(tmp_path / "full"))
    assert full.returncode == 2 and "is not empty" in full.stderr, full.stderr
    assert full.stderr.count("\n") == 1


def test_a_ref_that_does_not_exist(store: Store, tmp_path: Path) -> None:
    (tmp_path / "mp").mkdir()
    done = tusk("--home", str(store.home), "mount", "data@nope", str(tmp_path / "mp"))
    assert done.returncode == 3
    assert done.stderr == (
        "error: branch nope not found in repo data (list branches with: tusk list branch data)\n"
    )
    done = tusk("--home", str(store.home), "mount", "data@master", "data@master",
                str(tmp_path / "mp"))  # fmt: skip
    assert done.returncode == 2 and "mounted twice" in done.stderr


def test_fuse_not_available_says_how_to_install_it(store: Store, tmp_path: Path) -> None:
    (tmp_path / "mp").mkdir()
    (tmp_path / "bin").mkdir()
    env = _env() | {"PATH": str(tmp_path / "bin")}
    done = tusk("--home", str(store.home), "mount", "data@master", str(tmp_path / "mp"), env=env)
    assert done.returncode == 1
    assert "FUSE is not available" in done.stderr
    assert "apt-get install fuse3" in done.stderr
    assert "pip install 'tusk-data[mount]'" in done.stderr
    assert done.stderr.count("\n") == 1


def test_unmount_of_something_not_mounted(tmp_path: Path) -> None:
    done = tusk("unmount", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr == f"error: {tmp_path} is not mounted\n"


def test_unmount_clears_the_mount_of_a_killed_process(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "killed"
    m = start_mount(root, "--home", str(store.home), "mount", "data@master")
    m.proc.kill()
    m.proc.wait(30)
    assert is_mounted(root)  # dead: "Transport endpoint is not connected"
    with pytest.raises(OSError) as caught:
        os.listdir(root)
    assert caught.value.errno == errno.ENOTCONN
    done = tusk("unmount", str(root))
    assert done.returncode == 0, done.stderr
    assert not is_mounted(root) and os.listdir(root) == []
