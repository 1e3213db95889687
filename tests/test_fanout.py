"""Puts of many local files run in forked helper processes (tusk.pfs.fanout).

The result must be exactly what one process would commit (same file hashes, same order of
precedence for a path given twice), an error in a helper's share must fail the whole put
and change nothing, and a killed put must take its helpers with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import blake3
import pytest

from tusk import Client
from tusk.errors import BranchNotFound

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="helpers fork on Linux only")
ENGINES = ("sqlite", "postgresql")  # helpers open their own connections on either engine

FILES = 1_500


def content(i: int) -> bytes:
    if i % 100 == 7:  # a few files larger than one chunk take the chunking pipeline
        return blake3.blake3(b"%d" % i).digest(length=300_000)
    if i % 10 == 3:  # repeated contents: the same new chunk meets several helpers
        return b"repeated content"
    return b"file %d " % i * (1 + i % 30)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("many")
    for i in range(FILES):
        path = root / f"d{i % 7}" / f"f{i:05d}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content(i))
    return root


# Helpers fork only in a process that runs one thread, and earlier tests of a session (Dask's
# client, servers) leave threads behind: each put runs in a fresh interpreter.
PUT = """
import json, os, sys
from pathlib import Path
from tusk import Client
from tusk.errors import TuskError
home, address, items = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
try:
    r = Client(home).put_files(address, [(dest, Path(src)) for dest, src in items])
    out = {"files": r.files, "bytes": r.bytes}
except TuskError as exc:
    out = {"error": type(exc).__name__, "message": exc.message}
try:
    os.waitpid(-1, os.WNOHANG)
    out["children"] = "left"
except ChildProcessError:
    out["children"] = "none"
print(json.dumps(out))
"""


def put(home: Path, address: str, items: list[tuple[str, Path]], processes: int) -> Any:
    env = {**os.environ, "TUSK_PUT_PROCESSES": str(processes)}
    pairs = json.dumps([(dest, str(src)) for dest, src in items])
    done = subprocess.run(
        [sys.executable, "-c", PUT, str(home), address, pairs],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def tree_items(tree: Path) -> list[tuple[str, Path]]:
    return sorted(("/" + str(p.relative_to(tree)), p) for p in tree.rglob("*") if p.is_file())


def test_helpers_commit_what_one_process_commits(
    tree: Path, tmp_path: Path, home: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone_home = tmp_path / "alone"  # a store of its own, so nothing dedups across
    with monkeypatch.context() as m:
        m.delenv("TUSK_METADATA_URL", raising=False)
        Client(alone_home).create_repo("r")
        single = put(alone_home, "r@master:/", tree_items(tree), 1)
        alone = Client(alone_home)
    client.create_repo("r")
    multi = put(home, "r@master:/", tree_items(tree), 3)

    assert single["files"] == multi["files"] == FILES
    assert multi["bytes"] == single["bytes"] == sum(len(content(i)) for i in range(FILES))
    assert multi["children"] == "none"
    # Three processes each wrote packs of their own.
    assert client.fsck().counts["packs"] >= 3 > alone.fsck().counts["packs"]
    one = {f.path: f.hash for f in alone.glob_files("r@master:/**")}
    three = {f.path: f.hash for f in client.glob_files("r@master:/**")}
    assert one == three and len(one) == FILES + 7
    for i in range(0, FILES, 37):
        path = f"/d{i % 7}/f{i:05d}.bin"
        assert client.get_file(f"r@master:{path}") == content(i)
    report = client.fsck()
    assert report.ok, report.problems


def test_a_path_given_twice_keeps_the_last(tmp_path: Path, home: Path, client: Client) -> None:
    client.create_repo("r")
    sources = []
    for i in range(600):
        path = tmp_path / f"s{i}"
        path.write_bytes(b"source %d" % i)
        sources.append(path)
    # Positions 0 and 1 land in different processes; the later one must win, as in one.
    items = [("/same", sources[0]), ("/same", sources[1])]
    items += [(f"/f{i}", sources[i]) for i in range(2, 600)]
    assert put(home, "r@master:/", items, 2)["files"] == 600
    assert client.get_file("r@master:/same") == b"source 1"
    assert client.get_file("r@master:/f599") == b"source 599"
    assert client.fsck().counts["packs"] >= 2  # both processes wrote


def test_an_unreadable_file_in_a_helpers_share_changes_nothing(
    tmp_path: Path, home: Path, client: Client
) -> None:
    client.create_repo("r")
    client.put_file("r@master:/keep", b"kept")
    head = client.inspect_branch("r@master").head
    items = []
    for i in range(800):
        path = tmp_path / f"s{i}"
        path.write_bytes(b"x%d" % i)
        items.append((f"/f{i}", path))
    items[301] = ("/missing", tmp_path / "no-such-file")  # odd position: the helper's share
    result = put(home, "r@master:/", items, 2)
    assert result["error"] == "SourceError" and "no-such-file" in result["message"]
    assert result["children"] == "none"  # every helper was reaped
    assert client.inspect_branch("r@master").head == head
    assert [f.path for f in client.list_files("r@master:/")] == ["/keep"]
    assert client.fsck().ok


PUT_DIR = """
import sys
from tusk import Client
Client(sys.argv[1]).put_dir("r@master:/many", sys.argv[2])
"""


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(p) for p in text)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_helpers_die_with_a_killed_put(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(6_000):
        d = src / f"d{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i}").write_bytes(b"data %d " % i * 50)
    home = tmp_path / "home"
    Client(home).create_repo("r")
    env = {**os.environ, "TUSK_PUT_PROCESSES": "2"}
    proc = subprocess.Popen([sys.executable, "-c", PUT_DIR, str(home), str(src)], env=env)
    helpers: list[int] = []
    deadline = time.monotonic() + 60
    while not helpers and proc.poll() is None and time.monotonic() < deadline:
        helpers = _children(proc.pid)
        time.sleep(0.005)
    assert helpers, "the put finished before a helper was seen; make the tree larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(h) for h in helpers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(h) for h in helpers)
    client = Client(home)
    with pytest.raises(BranchNotFound):  # nothing was committed
        client.inspect_branch("r@master")
    report = client.fsck()
    assert report.ok, report.problems
