"""A writer killed with SIGKILL at any moment leaves the branch as before or fully committed.

Real subprocesses write through the SDK (and through the CLI when it is installed); the test
kills them at several moments, then a fresh client checks that the branch head is either the
previous commit with its content unchanged, or a new finished commit whose files read back
exactly; that fsck is clean; and that after ``gc(grace=0)`` fsck is still clean, nothing is
left over, and the data still reads. Either outcome is valid at every kill moment, so the
fixed delays below never make the test flaky.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from tusk import Client

BIG = 64 * 1024 * 1024
SMALL_FILES = 2_000

SDK_PUT_FILE = """
import sys
from pathlib import Path
from tusk import Client
home, src = sys.argv[1], sys.argv[2]
c = Client(home)
print("ready", flush=True)
c.put_file("r@master:/big.bin", Path(src))
print("done", flush=True)
"""

SDK_PUT_DIR = """
import sys
from tusk import Client
home, src = sys.argv[1], sys.argv[2]
c = Client(home)
print("ready", flush=True)
c.put_dir("r@master:/many", src)
print("done", flush=True)
"""


def rand(n: int, seed: bytes) -> bytes:
    return blake3.blake3(seed).digest(length=n)


def small_content(i: int) -> bytes:
    return b"small file %d " % i * (1 + i % 20)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "big.bin"
    path.write_bytes(rand(BIG, b"seed"))
    return path


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("src") / "many"
    for i in range(SMALL_FILES):
        d = root / f"d{i % 20:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:04d}.txt").write_bytes(small_content(i))
    return root


def cli_path() -> Path | None:
    """The installed ``tusk`` command, if the CLI is there to run."""
    exe = Path(sys.executable).parent / "tusk"
    if exe.exists() and importlib.util.find_spec("tusk.cli.main") is not None:
        return exe
    return None


def object_files(home: Path) -> set[Path]:
    root = home / "objects"
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def tmp_leftovers(home: Path) -> list[Path]:
    return [p for p in object_files(home) if p.name.startswith(".tmp-")]


def prepare_home(home: Path) -> tuple[str, dict[str, bytes]]:
    """A repo with one finished commit on master; return its id and its files."""
    old = {"/big.bin": rand(1024 * 1024, b"old"), "/keep.txt": b"keep me"}
    with Client(home) as c:
        c.create_repo("r")
        head = c.put_files("r@master:/", list(old.items())).commit.id
    return head, old


def run_and_kill(
    args: list[str], env: dict[str, str], when: str, delay: float, home: Path
) -> tuple[int | None, str]:
    """Start a writer; kill it ``delay`` seconds after ``when``; return (exit code, output).

    ``when`` is "ready" (the script printed ready: the client is open, the put starts now),
    "start" (process start), "write" (a new object file appeared under home/objects) or
    "never" (let it finish).
    """
    before = object_files(home)
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        if when == "ready":
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == b"ready", (line, proc.stderr.read() if proc.stderr else b"")
        elif when == "write":
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                if object_files(home) - before:
                    break
                time.sleep(0.002)
        if when != "never":
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if when == "never":
        assert proc.returncode == 0, err.decode()
    return proc.returncode, (out + err).decode(errors="replace")


def check_files(c: Client, ref: str, expected: dict[str, bytes], read_small: int = 50) -> None:
    """Paths, sizes and content hashes of every file; bytes of big ones and a sample of small."""
    listed = {f.path: f for f in c.glob_files(f"r@{ref}:/**") if f.type == "file"}
    assert set(listed) == set(expected)
    for i, (path, data) in enumerate(sorted(expected.items())):
        info = listed[path]
        assert info.size == len(data), path
        if len(data) > 32 * 1024 or i % max(1, len(expected) // read_small) == 0:
            assert c.get_file(f"r@{ref}:{path}") == data, path
        else:
            # A one-chunk file's hash is the BLAKE3 of its bytes.
            assert info.chunks == 1
            assert info.hash == blake3.blake3(data).hexdigest(), path


def check_recovered(home: Path, prev: str, old: dict[str, bytes], new: dict[str, bytes]) -> str:
    """The branch is exactly as before, or has exactly the one new commit. Returns which."""
    with Client(home) as c:
        head = c.inspect_branch("r@master").head
        assert head is not None
        info = c.inspect_commit(f"r@{head}")
        assert info.finished
        if head == prev:
            outcome, expected = "before", old
            assert [x.id for x in c.list_commits("r@master")] == [prev]
        else:
            outcome, expected = "after", {**old, **new}
            assert info.parent == prev
            assert [x.id for x in c.list_commits("r@master")] == [head, prev]
        assert len(c.list_commits("r")) == len(c.list_commits("r@master"))
        assert (info.files, info.size) == (len(expected), sum(map(len, expected.values())))
        check_files(c, "master", expected)
        if outcome == "after":
            check_files(c, prev, old)

        report = c.fsck()
        assert report.ok, report.problems
        c.gc(grace=0)
        report = c.fsck()
        assert report.ok, report.problems
        assert report.notes == [], report.notes  # no orphan packs, no dead chunks remain
        assert tmp_leftovers(home) == []
        check_files(c, "master", expected)
    return outcome


def retry_put(home: Path, put: Callable[[Client], object], expected: dict[str, bytes]) -> None:
    """After a crash the same write simply works."""
    with Client(home) as c:
        put(c)
        check_files(c, "master", expected)
        assert c.fsck().ok


def sdk_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TUSK_HOME"] = str(home)
    env.pop("COVERAGE_PROCESS_START", None)
    return env


KILL_POINTS = [
    ("ready", 0.0),
    ("ready", 0.05),
    ("ready", 0.15),
    ("ready", 0.3),
    ("ready", 0.6),
    ("write", 0.0),
    ("write", 0.02),
    ("never", 0.0),
]


@pytest.mark.parametrize(("when", "delay"), KILL_POINTS)
def test_kill_put_file(tmp_path: Path, big_file: Path, when: str, delay: float) -> None:
    home = tmp_path / "home"
    prev, old = prepare_home(home)
    new = {"/big.bin": big_file.read_bytes()}
    args = [sys.executable, "-c", SDK_PUT_FILE, str(home), str(big_file)]
    run_and_kill(args, sdk_env(home), when, delay, home)
    outcome = check_recovered(home, prev, old, new)
    if when == "never":
        assert outcome == "after"
    retry_put(home, lambda c: c.put_file("r@master:/big.bin", big_file), {**old, **new})


@pytest.mark.parametrize(
    ("when", "delay"), [("start", 1.0), ("start", 1.6), ("write", 0.0), ("write", 0.1)]
)
def test_kill_cli_put_file(tmp_path: Path, big_file: Path, when: str, delay: float) -> None:
    """Through ``tusk put file`` when the CLI is installed, else through the SDK."""
    home = tmp_path / "home"
    prev, old = prepare_home(home)
    new = {"/big.bin": big_file.read_bytes()}
    exe = cli_path()
    if exe is not None:
        args = [str(exe), "put", "file", "r@master:/big.bin", "-f", str(big_file)]
    else:
        args = [sys.executable, "-c", SDK_PUT_FILE, str(home), str(big_file)]
    run_and_kill(args, sdk_env(home), when, delay, home)
    check_recovered(home, prev, old, new)


@pytest.mark.parametrize(
    ("when", "delay"),
    [
        ("ready", 0.0),
        ("ready", 0.05),
        ("ready", 0.2),
        ("ready", 0.35),
        ("ready", 0.5),
        ("write", 0.0),
        ("never", 0.0),
    ],
)
def test_kill_put_dir(tmp_path: Path, small_dir: Path, when: str, delay: float) -> None:
    home = tmp_path / "home"
    prev, old = prepare_home(home)
    new = {f"/many/d{i % 20:02d}/f{i:04d}.txt": small_content(i) for i in range(SMALL_FILES)}
    args = [sys.executable, "-c", SDK_PUT_DIR, str(home), str(small_dir)]
    run_and_kill(args, sdk_env(home), when, delay, home)
    outcome = check_recovered(home, prev, old, new)
    if when == "never":
        assert outcome == "after"
    retry_put(home, lambda c: c.put_dir("r@master:/many", small_dir), {**old, **new})
