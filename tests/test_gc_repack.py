"""gc repacks mostly dead packs, crash-safely, alongside writers and pipelines; and prunes
old webhook checkouts and scratch folders.

The data: many small random files put in one upload (so each pack holds many of them), then
90% of them deleted with their history (the repo that held them all is deleted; a second
repo keeps every tenth file, deduplicated against the same chunks). Nearly every pack is
then about 10% live, and only repacking gives the space back.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

import s3server
from tusk import Client
from tusk.config import StoreConfig
from tusk.errors import InvalidArgument, StorageError
from tusk.pps.gitcache import GitCache
from tusk.storage.backends import ObjectBackend, open_backend
from tusk.storage.meta.store_gc import GcTxMixin

s3_server = s3server.s3_server
s3_url = s3server.s3_url

FILES = 200
CONFIG = StoreConfig(pack_target=256 * 1024)


def content(i: int) -> bytes:
    return blake3.blake3(b"file %d" % i).digest(length=16_000 + (i * 397) % 16_000)


def kept(i: int) -> bool:
    return i % 10 == 0


def make_sources(root: Path) -> tuple[Path, Path]:
    every, some = root / "all", root / "kept"
    for i in range(FILES):
        for d in (every, some) if kept(i) else (every,):
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i:04d}.bin").write_bytes(content(i))
    return every, some


def fill_and_delete_90(c: Client, root: Path) -> None:
    every, some = make_sources(root)
    c.create_repo("all")
    c.create_repo("keep")
    c.put_dir("all@master:/d", every)
    assert c.put_dir("keep@master:/d", some).stored_bytes == 0  # all deduplicated
    c.delete_repo("all")


def check_kept(c: Client) -> None:
    for i in range(0, FILES, 10):
        assert c.get_file(f"keep@master:/d/f{i:04d}.bin") == content(i)


def stored(backend: ObjectBackend) -> int:
    return sum(o.size for o in backend.list("packs/"))


@pytest.fixture(params=["local", "s3"])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    if request.param == "s3":
        url = request.getfixturevalue("s3_url")
        monkeypatch.setenv("TUSK_STORAGE_URL", url)
        yield url
    else:
        monkeypatch.delenv("TUSK_STORAGE_URL", raising=False)
        yield str(tmp_path / "home" / "objects")


def test_gc_returns_the_space_of_deleted_data(store_url: str, tmp_path: Path) -> None:
    backend = open_backend(store_url)
    with Client(tmp_path / "home", config=CONFIG) as c:
        fill_and_delete_90(c, tmp_path / "src")
        before = stored(backend)
        plan = c.gc(grace=0, dry_run=True)
        assert plan.packs_repacked > 0 and stored(backend) == before
        assert c.gc(grace=0, repack_threshold=0).packs_repacked == 0  # repack off: only rows
        after_sweep = stored(backend)
        assert after_sweep > 0.5 * before
        report = c.gc(grace=0)
        after = stored(backend)
        assert report.packs_repacked >= 0.8 * plan.packs_repacked
        assert report.bytes_rewritten > 0
        assert before - after >= 0.85 * 0.9 * before, (before, after)
        check_kept(c)
        fsck = c.fsck()
        assert fsck.ok, fsck.problems
        assert fsck.notes == []
        again = c.gc(grace=0)  # the new packs are all live: nothing more to do
        assert (again.packs_repacked, again.packs_deleted) == (0, 0)
    backend.close()


def test_repack_keeps_the_old_pack_for_the_grace_period(tmp_path: Path) -> None:
    """A reader that looked a chunk up before the move still finds the old object."""
    home = tmp_path / "home"
    with Client(home, config=CONFIG) as c:
        fill_and_delete_90(c, tmp_path / "src")
        _age(home, 7200)
        report = c.gc(grace=600)
        assert report.packs_repacked > 0
        # Retired, not deleted (the retirement was just now); only wholly dead packs went.
        assert report.packs_deleted < report.packs_repacked
        assert c.stats()["packs"] >= report.packs_repacked
        check_kept(c)
        assert c.fsck().ok
        assert c.gc(grace=0).packs_deleted >= report.packs_repacked
        check_kept(c)
        assert c.fsck().notes == []


def test_repack_interrupted_before_its_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = open_backend(str(tmp_path / "home" / "objects"))
    with Client(tmp_path / "home", config=CONFIG) as c:
        fill_and_delete_90(c, tmp_path / "src")
        before = stored(backend)

        def boom(*_: object) -> list[str]:
            raise KeyboardInterrupt("killed")

        monkeypatch.setattr(GcTxMixin, "move_chunks", boom)
        with pytest.raises(KeyboardInterrupt):
            c.gc(grace=0)
        monkeypatch.undo()
        fsck = c.fsck()
        assert fsck.ok, fsck.problems
        assert any("not indexed" in n for n in fsck.notes)  # the new pack: garbage
        check_kept(c)
        c.gc(grace=0)
        assert before - stored(backend) >= 0.85 * 0.9 * before
        assert c.fsck().notes == []
        check_kept(c)


def test_repack_threshold_is_checked(tmp_path: Path) -> None:
    with Client(tmp_path / "home") as c, pytest.raises(InvalidArgument, match="between 0 and 1"):
        c.gc(grace=0, repack_threshold=1.5)


GC_SCRIPT = """
import sys, time
from tusk import Client
from tusk.config import StoreConfig
from tusk.storage.backends.local import LocalBackend

put, delete = LocalBackend.put_parts, LocalBackend.delete

def slow_put(self, *a, **k):
    time.sleep(0.05)
    put(self, *a, **k)
    time.sleep(0.05)

def slow_delete(self, *a, **k):
    time.sleep(0.02)
    delete(self, *a, **k)

LocalBackend.put_parts, LocalBackend.delete = slow_put, slow_delete
c = Client(sys.argv[1], config=StoreConfig(pack_target=64 * 1024))
print("ready", flush=True)
c.gc(grace=0)
print("done", flush=True)
"""


def test_gc_killed_at_random_points(tmp_path: Path) -> None:
    home = tmp_path / "home"
    backend = open_backend(str(home / "objects"))
    with Client(home, config=CONFIG) as c:
        fill_and_delete_90(c, tmp_path / "src")
    before = stored(backend)
    rng = random.Random(7)
    outcomes = []
    for k in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", GC_SCRIPT, str(home)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3 * k + rng.uniform(0.0, 0.4))  # a full run takes about 2 s here
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        outcomes.append(proc.returncode)
        with Client(home, config=CONFIG) as c:
            fsck = c.fsck()
            assert fsck.ok, fsck.problems
            check_kept(c)
    assert -signal.SIGKILL in outcomes  # at least one run was killed mid-way
    with Client(home, config=CONFIG) as c:
        c.gc(grace=0)
        fsck = c.fsck()
        assert fsck.ok and fsck.notes == [], (fsck.problems, fsck.notes)
        check_kept(c)
    assert before - stored(backend) >= 0.85 * 0.9 * before


def _age(home: Path, seconds: float) -> None:
    """Make everything stored so far look ``seconds`` older (chunks, nodes, pack objects)."""
    db = sqlite3.connect(home / "tusk.db")
    with db:
        db.execute("UPDATE chunks SET touched_at = touched_at - ?", (seconds,))
        db.execute("UPDATE nodes SET touched_at = touched_at - ?", (seconds,))
        db.execute("UPDATE packs SET created_at = created_at - ?", (seconds,))
    db.close()
    then = time.time() - seconds
    for p in (home / "objects").rglob("*"):
        if p.is_file():
            os.utime(p, (then, then))


COPY = 'for f in "$TUSK_PFS"/in/*; do cp "$f" "$TUSK_PFS/out/"; done'


def test_gc_loop_beside_writers_and_a_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gc with a real grace period, over and over, while writers put files (new ones, and
    copies of both kept and deleted old ones, which deduplicate against chunks that are
    being repacked or swept) and a pipeline copies its input: nothing is lost."""
    monkeypatch.setenv("TUSK_SANDBOX", "none")
    home = tmp_path / "home"
    with Client(home, config=CONFIG) as c:
        fill_and_delete_90(c, tmp_path / "src")
        c.create_repo("in")
        c.create_pipeline(
            {
                "pipeline": {"name": "copy"},
                "input": {"pfs": {"repo": "in", "glob": "/*", "name": "in"}},
                "transform": {"cmd": ["sh", "-c", COPY]},
            }
        )
    _age(home, 7200)

    stop = threading.Event()
    written: dict[str, bytes] = {}
    errors: list[BaseException] = []
    repacked: list[int] = []

    def writer() -> None:
        rng = random.Random(1)
        with Client(home, config=CONFIG) as w:
            for n in range(30):
                i = rng.randrange(FILES)  # an old file's bytes: kept (live) or deleted (dead)
                data = content(i) if n % 3 else content(i) + b"new %d" % n
                path = f"/w{n:03d}.bin"
                for attempt in range(5):
                    try:
                        w.put_file(f"in@master:{path}", data)
                        break
                    except StorageError as exc:  # a deleted chunk revived too late: retry
                        assert "vanished" in str(exc) and attempt < 4
                written[path] = data

    def collector() -> None:
        with Client(home, config=CONFIG) as g:
            while not stop.is_set():
                repacked.append(g.gc(grace=60).packs_repacked)

    def scheduler() -> None:
        with Client(home, config=CONFIG) as s:
            s.run_scheduler(stop=stop)

    def guarded(fn: object) -> threading.Thread:
        def run() -> None:
            try:
                fn()  # type: ignore[operator]
            except BaseException as exc:
                errors.append(exc)

        return threading.Thread(target=run)

    threads = [guarded(writer), guarded(collector), guarded(scheduler)]
    for t in threads:
        t.start()
    threads[0].join()
    time.sleep(0.5)
    stop.set()
    for t in threads[1:]:
        t.join()
    assert not errors, errors
    assert sum(repacked) > 0

    with Client(home, config=CONFIG) as c:
        c.run_scheduler(once=True)
        for path, data in written.items():
            assert c.get_file(f"in@master:{path}") == data
            assert c.get_file(f"copy@master:{path}") == data
        check_kept(c)
        c.gc(grace=0)
        fsck = c.fsck()
        assert fsck.ok and fsck.notes == [], (fsck.problems, fsck.notes)
        for path, data in written.items():
            assert c.get_file(f"copy@master:{path}") == data
        check_kept(c)


def test_gc_prunes_old_checkouts_and_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUSK_SCRATCH", str(tmp_path / "fast"))
    home = tmp_path / "home"
    cache = home / "webhooks"
    sha = {name: blake3.blake3(name.encode()).hexdigest()[:40] for name in "abc"}
    dead_pid = subprocess.Popen(["true"])  # its pid is free once it has ended
    dead_pid.wait()
    host = socket.gethostname()
    folders = {
        "unused": cache / "checkouts" / sha["a"],
        "pipeline": cache / "checkouts" / sha["b"],
        "recent": cache / "checkouts" / sha["c"],
        "partial": cache / "checkouts" / f".{sha['a']}-x1y2",
        "delivery tmp": cache / "tmp" / f"{sha['a'][:12]}-q9",
        "git tmp": cache / "git" / ".0123abcd-z",
        "dead worker": home / "scratch" / f"{host}-{dead_pid.pid}",
        "dead fast worker": tmp_path / "fast" / f"{host}-{dead_pid.pid}",
        "live worker": home / "scratch" / f"{host}-{os.getpid()}",
    }
    for path in folders.values():
        (path / "sub").mkdir(parents=True)
        (path / "sub" / "f").write_bytes(b"x")
    then = time.time() - 7200
    for name, path in folders.items():
        if name != "recent":
            os.utime(path, (then, then))
    with Client(home) as c:
        c.create_repo("in")
        c.create_pipeline(
            {
                "pipeline": {"name": "p"},
                "input": {"pfs": {"repo": "in", "glob": "/*"}},
                "transform": {"cmd": ["true"]},
            },
            working_dir=folders["pipeline"] / "sub",
        )
        # A delivery in progress holds the cache: its folders wait for a later gc.
        with GitCache(cache).in_use():
            assert c.gc().scratch_deleted == 2  # the dead workers' scratch only
        assert c.gc(dry_run=True).scratch_deleted == 4
        assert folders["unused"].exists()
        assert c.gc().scratch_deleted == 4
        gone = {name for name, path in folders.items() if not path.exists()}
        assert gone == {
            "unused",
            "partial",
            "delivery tmp",
            "git tmp",
            "dead worker",
            "dead fast worker",
        }
        assert not [p for p in (cache / "checkouts").iterdir() if p.name.startswith(".")]
        # Within the grace period a checkout stays; with none, only the pipeline's stays.
        assert c.gc(grace=0).scratch_deleted == 1
        assert folders["pipeline"].exists() and not folders["recent"].exists()
        assert folders["live worker"].exists()
