"""Lazy inputs (``input.pfs.lazy: true``, issue 23): a datum reads its input through a FUSE
view and only the chunks it reads are fetched; it sees its own files only, read-only; where
FUSE is missing the files are copied instead; a killed process's view is unmounted by gc.

Jobs run through the SDK on an embedded home (the scheduler in this process, as ``tusk wait``
runs them), and in a ``tusk wait`` process for the kill."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fusehelpers import need_fuse
from tusk import Client
from tusk.errors import ToolMissing

BIG = 64 * 1024 * 1024


@pytest.fixture(scope="module", autouse=True)
def _fuse() -> None:
    need_fuse()


def spec(name: str, cmd: str, glob: str = "/*") -> dict:
    return {"pipeline": {"name": name},
            "input": {"pfs": {"repo": "d", "glob": glob, "lazy": True}},
            "transform": {"cmd": ["sh", "-c", cmd]}}  # fmt: skip


def lazy_lines(c: Client, pipeline: str) -> list[str]:
    return [line.line for line in c.logs(pipeline) if line.line.startswith("lazy inputs")]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    home = tmp_path_factory.mktemp("lazy") / "home"
    big = hashlib.shake_256(b"lazy").digest(BIG)
    with Client(home) as c:
        c.create_repo("d")
        c.put_file("d@master:/big.bin", big)
        c.put_file("d@master:/sub/a.txt", b"alpha\n")
        c.put_file("d@master:/sub/b.txt", b"beta\n")
    return home, big


def test_a_datum_reading_1_kib_of_a_big_file_fetches_about_that(
    data: tuple[Path, bytes],
) -> None:
    home, big = data
    with Client(home) as c:
        c.apply([spec("tail", "tail -c 1024 /pfs/d/big.bin > /pfs/out/tail", glob="/big.bin")])
        c.wait_commit("tail@master", timeout=120)
        assert c.get_file("tail@master:/tail") == big[-1024:]
        [line] = lazy_lines(c, "tail")
        shape = r"lazy inputs: read ([\d,]+) bytes; fetched (\d+) chunks \(([\d,]+) bytes\)"
        m = re.fullmatch(shape, line)
        assert m, line
        read, chunks, fetched = (int(g.replace(",", "")) for g in m.groups())
        assert 1024 <= read <= 64 * 1024
        # The default chunks are 128 KiB on average, 512 KiB at most: one or two of them,
        # not the 64 MiB file.
        assert 1 <= chunks <= 2 and fetched <= 1024 * 1024, line


def test_each_datum_sees_its_own_files_whole_and_read_only(data: tuple[Path, bytes]) -> None:
    home, big = data
    look = ('cd /pfs/d && find . | sort > /pfs/out/"$(ls | head -1)".list; '
            'find . -type f | sort | xargs md5sum > /pfs/out/"$(ls | head -1)".md5; '
            'if touch /pfs/d/new 2>/dev/null; then echo yes > /pfs/out/WRITABLE; fi')  # fmt: skip
    with Client(home) as c:
        c.apply([spec("look", look)])
        c.wait_commit("look@master", timeout=120)
        files = {f.path for f in c.list_files("look@master:/")}
        assert "/WRITABLE" not in files
        assert c.get_file("look@master:/big.bin.list") == b".\n./big.bin\n"
        assert c.get_file("look@master:/sub.list") == b".\n./sub\n./sub/a.txt\n./sub/b.txt\n"
        md5 = hashlib.md5(big).hexdigest()
        assert c.get_file("look@master:/big.bin.md5") == f"{md5}  ./big.bin\n".encode()
        sums = c.get_file("look@master:/sub.md5").decode().splitlines()
        a, b = hashlib.md5(b"alpha\n").hexdigest(), hashlib.md5(b"beta\n").hexdigest()
        assert sums == [f"{a}  ./sub/a.txt", f"{b}  ./sub/b.txt"]
        assert len(lazy_lines(c, "look")) == 2  # one per datum


def test_without_fuse_lazy_inputs_are_copied_and_the_log_says_so(
    data: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, _ = data

    def missing() -> None:
        raise ToolMissing("FUSE is not available: fusermount3 is not on PATH")

    monkeypatch.setattr("tusk.fuse.load_fuse", missing)
    with Client(home) as c:
        c.apply([spec("copied", "cat /pfs/d/sub/a.txt > /pfs/out/a", glob="/sub")])
        c.wait_commit("copied@master", timeout=120)
        assert c.get_file("copied@master:/a") == b"alpha\n"
        notes = [x.line for x in c.logs("copied") if "copied instead" in x.line]
        assert notes == ["lazy inputs copied instead: FUSE is not available: fusermount3 is not "
                         "on PATH"]  # fmt: skip


def _mounts(marker: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split(" ")[4] for line in f if marker in line.split(" ")[4]]


def test_a_killed_workers_view_is_unmounted_and_removed_by_gc(tmp_path: Path) -> None:
    home = tmp_path / "home"
    scratch = tmp_path / "scratch"
    with Client(home) as c:
        c.create_repo("d")
        c.put_file("d@master:/x", b"x")
        c.apply([spec("hang", "cat /pfs/d/x; sleep 60")])
    env = {**os.environ, "TUSK_SCRATCH": str(scratch)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tusk.cli.main", "--home", str(home), "wait", "commit",
         "hang@master"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        end = time.monotonic() + 60
        while not _mounts(str(scratch)):
            assert time.monotonic() < end, "the view never came up"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert _mounts(str(scratch))  # left mounted, dead
    done = subprocess.run(
        [sys.executable, "-m", "tusk.cli.main", "--home", str(home), "gc", "--grace", "0"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _mounts(str(scratch)) == []
    assert not [p for p in scratch.iterdir() if p.is_dir()], list(scratch.iterdir())
