#!/usr/bin/env python3
"""Benchmark Tusk against DVC on the same generated data, in the same run.

Datasets (fixed seed, sizes shrink with ``--scale``):

* D1: 20,000 files of 4 KiB in nested folders (20 top dirs x 10 subdirs x 100).
* D2: one 1 GiB file of pseudo-random bytes.
* D3: D2 with 1 MiB overwritten at 500 MiB and 1 MiB inserted at 100 MiB.

Tusk runs through its CLI (a subprocess per command, fresh ``TUSK_HOME``) and
through its SDK in this process; DVC runs from its own venv (created once in
``bench/.cache/dvc-venv``).  The script prints a table, the Tusk/DVC ratios and
PASS/FAIL for each target.  It exits 0 whether targets pass or not, and
non-zero only when something breaks.

Run it with the interpreter that has Tusk installed::

    .venv/bin/python bench/bench_store.py            # full size
    .venv/bin/python bench/bench_store.py --scale 0.01  # smoke run
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import operator
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MB = 1_000_000

SEED = b"tusk-bench-v1"
PIECE = 64 * MiB
DVC_VERSION = "3.67.1"
BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_DVC_VENV = BENCH_DIR / ".cache" / "dvc-venv"
MARKER = ".tusk-bench"


class BenchError(RuntimeError):
    """A step of the benchmark failed (not a missed target)."""


# --------------------------------------------------------------------------
# Deterministic data
# --------------------------------------------------------------------------


class ByteSource:
    """Pseudo-random bytes from a fixed seed, addressed by stream and offset.

    Uses the BLAKE3 XOF when the ``blake3`` module is importable (Tusk brings
    it), otherwise ``random.Random.randbytes`` seeded per call.  The bytes
    differ between the two, so the generator's name goes into the report.
    """

    def __init__(self, seed: bytes) -> None:
        self.seed = seed
        try:
            import blake3
        except ImportError:
            self._blake3: Any = None
            self.name = "random.randbytes"
        else:
            self._blake3 = blake3.blake3
            self.name = "blake3-xof"

    def read(self, stream: str, offset: int, length: int) -> bytes:
        if self._blake3 is not None:
            hasher = self._blake3(self.seed + b"/" + stream.encode())
            return bytes(hasher.digest(length=length, seek=offset))
        rng = random.Random(f"{self.seed.hex()}/{stream}/{offset}")
        return rng.randbytes(length)


@dataclass(frozen=True)
class Sizes:
    """Dataset sizes for one scale factor."""

    scale: float
    d1_files: int
    d1_file_size: int
    d2_size: int
    insert_at: int
    overwrite_at: int
    edit_size: int

    @classmethod
    def from_scale(cls, scale: float) -> Sizes:
        def mib(n: float) -> int:
            return max(1, round(n * scale)) * MiB

        edit = 1 * MiB
        d2_size = max(4 * MiB, mib(1024))
        overwrite_at = min(mib(500), d2_size - edit)
        insert_at = min(mib(100), overwrite_at)
        return cls(
            scale=scale,
            d1_files=max(1, round(20_000 * scale)),
            d1_file_size=4 * KiB,
            d2_size=d2_size,
            insert_at=insert_at,
            overwrite_at=overwrite_at,
            edit_size=edit,
        )


@dataclass(frozen=True)
class Layout:
    """Where everything lives inside the work dir."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def d1(self) -> Path:
        return self.data / "d1"

    @property
    def d2(self) -> Path:
        return self.data / "d2.bin"

    @property
    def d3(self) -> Path:
        return self.data / "d3.bin"

    @property
    def d1_modified(self) -> Path:
        return self.data / "d1-modified.bin"

    @property
    def tusk_home_d1(self) -> Path:
        return self.root / "tusk-home-d1"

    @property
    def tusk_home_d2(self) -> Path:
        return self.root / "tusk-home-d2"

    @property
    def dvc_d1(self) -> Path:
        return self.root / "dvc-d1"

    @property
    def dvc_d2(self) -> Path:
        return self.root / "dvc-d2"

    @property
    def dvc_site_cache(self) -> Path:
        return self.root / "dvc-site-cache"


def d1_relpath(index: int) -> str:
    """Path of D1 file ``index``: 20 top dirs x 10 subdirs x 100 files at full size."""
    return f"d{index // 1000:02d}/s{index // 100 % 10:02d}/f{index % 100:03d}.bin"


def write_d1(src: ByteSource, sizes: Sizes, root: Path) -> None:
    batch = 1000
    for start in range(0, sizes.d1_files, batch):
        count = min(batch, sizes.d1_files - start)
        blob = src.read("d1", start * sizes.d1_file_size, count * sizes.d1_file_size)
        for i in range(count):
            path = root / d1_relpath(start + i)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob[i * sizes.d1_file_size : (i + 1) * sizes.d1_file_size])


def write_d2(src: ByteSource, sizes: Sizes, path: Path) -> None:
    with path.open("wb") as out:
        for offset in range(0, sizes.d2_size, PIECE):
            out.write(src.read("d2", offset, min(PIECE, sizes.d2_size - offset)))


def copy_range(fin: Any, out: Any, start: int, end: int) -> None:
    fin.seek(start)
    remaining = end - start
    while remaining > 0:
        piece = fin.read(min(PIECE, remaining))
        if not piece:
            raise BenchError("D2 is shorter than expected")
        out.write(piece)
        remaining -= len(piece)


def write_d3(src: ByteSource, sizes: Sizes, d2: Path, path: Path) -> None:
    """D2 with ``edit_size`` bytes inserted at ``insert_at`` and overwritten at
    ``overwrite_at`` (both offsets in D2's coordinates)."""
    end_of_overwrite = sizes.overwrite_at + sizes.edit_size
    with d2.open("rb") as fin, path.open("wb") as out:
        copy_range(fin, out, 0, sizes.insert_at)
        out.write(src.read("d3-insert", 0, sizes.edit_size))
        copy_range(fin, out, sizes.insert_at, sizes.overwrite_at)
        out.write(src.read("d3-overwrite", 0, sizes.edit_size))
        copy_range(fin, out, end_of_overwrite, sizes.d2_size)


def generate_data(src: ByteSource, sizes: Sizes, layout: Layout) -> str:
    """Write D1, D2, D3 and the modified D1 file; return the changed D1 path."""
    layout.d1.mkdir(parents=True)
    write_d1(src, sizes, layout.d1)
    write_d2(src, sizes, layout.d2)
    write_d3(src, sizes, layout.d2, layout.d3)
    changed = d1_relpath(sizes.d1_files // 2)
    layout.d1_modified.write_bytes(src.read("d1-modified", 0, sizes.d1_file_size))
    return changed


# --------------------------------------------------------------------------
# Processes and measurements
# --------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    stdout: str


def run(
    cmd: Sequence[str | Path], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Run:
    """Run a command, timing it; raise BenchError on a non-zero exit."""
    args = [str(c) for c in cmd]
    start = time.perf_counter()
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-3000:]
        raise BenchError(f"command failed with exit {proc.returncode}: {' '.join(args)}\n{tail}")
    return Run(elapsed, proc.stdout)


def settle(warm: Path | None = None) -> None:
    """Flush dirty pages so one step's writeback is not billed to the next; then read
    ``warm`` (a file, or every file under a folder) so the step starts with its source in
    the page cache, as DVC's steps do (their copy into the DVC repo has just written it).

    Without it the source may have to come from the disk: the reference VM runs DAMON with a
    ``pageout`` scheme (pages not touched for ~60 s are reclaimed), and D2, written at the
    start, was cold by the time its steps ran, so those rows measured the disk's reads."""
    os.sync()
    if warm is None:
        return
    for path in sorted(warm.rglob("*")) if warm.is_dir() else [warm]:
        if path.is_file():
            with path.open("rb", buffering=0) as f:
                while f.read(16 * MiB):
                    pass


def disk_write_rate(directory: Path, size: int) -> float:
    """MB/s of writing ``size`` bytes sequentially and fdatasync-ing them: the disk's ceiling
    for any tool that makes its data durable, measured in the same run for context."""
    block = os.urandom(16 * MiB)
    path = directory / "disk-baseline.bin"
    settle()
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        written = 0
        while written < size:
            written += os.write(fd, block[: min(len(block), size - written)])
        os.fdatasync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - start
    path.unlink()
    return size / seconds / MB


FLOOR = BENCH_DIR / "floor.py"
TMPFS = Path("/dev/shm")


@dataclass
class FloorRun:
    """One run of ``bench/floor.py`` as its own process."""

    wall: float  # the whole process, interpreter start-up included (as a tusk command's)
    work: float  # the floor's own timing of its work
    bytes: int


def floor_run(dataset: str, source: Path, out: Path, sync: str) -> FloorRun:
    """Run ``bench/floor.py DATASET SOURCE`` writing into ``out`` (removed afterwards)."""
    try:
        res = run([sys.executable, FLOOR, dataset, source, "--out", out, "--sync", sync])
    finally:
        shutil.rmtree(out, ignore_errors=True)
    data = json.loads(res.stdout.strip().splitlines()[-1])
    return FloorRun(res.seconds, float(data["seconds"]), int(data["bytes"]))


def tmpfs_room(size: int) -> Path | None:
    """``/dev/shm`` if it is a writable tmpfs with room for ``size`` bytes plus slack."""
    try:
        st = os.statvfs(TMPFS)
    except OSError:
        return None
    if not os.access(TMPFS, os.W_OK) or st.f_bavail * st.f_frsize < size * 1.5 + 256 * MiB:
        return None
    return TMPFS


_SDK_PUT = """
import json, sys, time
from tusk import Client
home, path = sys.argv[1], sys.argv[2]
with Client(home) as c:
    c.create_repo("d2")
    start = time.perf_counter()
    c.put_file("d2@master:/big.bin", path)
    print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def sdk_put_seconds(home: Path, path: Path, sync: str) -> float:
    """Seconds of one in-process ``Client.put_file`` (Python start-up and imports excluded)."""
    env = {**os.environ, "TUSK_SYNC": sync}
    out = subprocess.run(
        [sys.executable, "-c", _SDK_PUT, str(home), str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise BenchError(f"in-process put failed: {out.stderr.strip()[-500:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def tree_bytes(root: Path) -> int:
    """Apparent size of all regular files under ``root`` (hard links once)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_size
    return total


@dataclass
class Repeated:
    """Timings of a repeated measurement."""

    runs: list[float]

    @property
    def first(self) -> float:
        return self.runs[0]

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def summary(self) -> dict[str, Any]:
        return {"best": self.best, "median": self.median, "first": self.first, "runs": self.runs}


def repeat(fn: Callable[[], float], times: int) -> Repeated:
    return Repeated([fn() for _ in range(times)])


# --------------------------------------------------------------------------
# Tusk
# --------------------------------------------------------------------------


def find_tusk(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    beside = Path(sys.executable).parent / "tusk"
    if beside.exists():
        return beside
    found = shutil.which("tusk")
    return Path(found) if found else None


class TuskCli:
    """The ``tusk`` command with its own ``TUSK_HOME``."""

    def __init__(self, exe: Path, home: Path, sync: str = "full") -> None:
        self.exe = exe
        self.home = home
        self.env = {**os.environ, "TUSK_HOME": str(home), "TUSK_SYNC": sync}

    def __call__(self, *args: str | Path) -> Run:
        return run([self.exe, *args], env=self.env)


def tusk_version(cli: TuskCli) -> str:
    for dist in ("tusk-data", "tusk"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        return cli("--version").stdout.strip() or "unknown"
    except (BenchError, OSError):
        return "unknown"


@dataclass
class SdkDiff:
    """In-process timings of ``Client.diff_file``."""

    import_s: float
    open_and_diff: Repeated  # Client(home=...) + diff_file each time
    diff_only: Repeated  # diff_file on one open Client
    changes: list[tuple[str, str]]

    def summary(self) -> dict[str, Any]:
        return {
            "import_s": self.import_s,
            "open_and_diff_s": self.open_and_diff.summary(),
            "diff_only_s": self.diff_only.summary(),
            "n_changes": len(self.changes),
            "changes_head": self.changes[:10],
        }


def sdk_diff(home: Path, new: str, old: str | None, times: int) -> SdkDiff | None:
    """Time ``Client(home=...).diff_file(new, old)`` in this process.

    Returns None when the tusk package is not importable here.
    """
    start = time.perf_counter()
    try:
        from tusk import Client
    except ImportError:
        return None
    import_s = time.perf_counter() - start
    changes: list[Any] = []

    def open_and_diff() -> float:
        nonlocal changes
        t0 = time.perf_counter()
        client = Client(home=home)
        try:
            changes = list(client.diff_file(new, old))
            return time.perf_counter() - t0
        finally:
            client.close()

    both = repeat(open_and_diff, times)
    client = Client(home=home)
    try:
        client.diff_file(new, old)  # warm-up on this handle

        def diff_only() -> float:
            t0 = time.perf_counter()
            client.diff_file(new, old)
            return time.perf_counter() - t0

        only = repeat(diff_only, times)
    finally:
        client.close()
    listed = [(str(c.path), str(c.change)) for c in changes]
    return SdkDiff(import_s, both, only, listed)


def count_commits(cli: TuskCli, ref: str) -> int | None:
    """Number of commits ``tusk list commit REF -o json`` reports (None if unclear)."""
    try:
        data = json.loads(cli("list", "commit", ref, "-o", "json").stdout)
    except (BenchError, json.JSONDecodeError):
        return None
    if isinstance(data, dict):
        for key in ("commits", "items", "data"):
            if isinstance(data.get(key), list):
                return len(data[key])
        return None
    return len(data) if isinstance(data, list) else None


# --------------------------------------------------------------------------
# DVC
# --------------------------------------------------------------------------


def dvc_env() -> dict[str, str]:
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}


def ensure_dvc(venv: Path) -> Path:
    """Return the ``dvc`` executable of ``venv``, creating/installing if needed."""
    dvc = venv / "bin" / "dvc"
    if dvc.exists():
        try:
            if run([dvc, "--version"], env=dvc_env()).stdout.strip() == DVC_VERSION:
                return dvc
        except BenchError:
            pass
    print(f"Installing dvc=={DVC_VERSION} into {venv} (once) ...", flush=True)
    if not (venv / "bin" / "python").exists():
        run([sys.executable, "-m", "venv", venv])
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", f"dvc=={DVC_VERSION}"])
    version = run([dvc, "--version"], env=dvc_env()).stdout.strip()
    if version != DVC_VERSION:
        raise BenchError(f"expected dvc {DVC_VERSION}, got {version!r}")
    return dvc


class DvcRepo:
    """A git + DVC repository used for one series of datasets."""

    def __init__(self, dvc: Path, root: Path, site_cache: Path) -> None:
        self.dvc = dvc
        self.root = root
        self.site_cache = site_cache
        self.env = {**dvc_env(), "DVC_SITE_CACHE_DIR": str(site_cache)}

    def git(self, *args: str) -> Run:
        return run(["git", *args], cwd=self.root, env=self.env)

    def dvc_cmd(self, *args: str) -> Run:
        return run([self.dvc, *args], cwd=self.root, env=self.env)

    def init(self) -> None:
        self.root.mkdir(parents=True)
        self.git("init", "-q")
        self.git("config", "user.email", "bench@tusk.invalid")
        self.git("config", "user.name", "tusk bench")
        self.git("config", "commit.gpgsign", "false")
        self.dvc_cmd("init", "-q")
        self.dvc_cmd("config", "core.analytics", "false")
        self.dvc_cmd("config", "core.autostage", "false")
        self.dvc_cmd("config", "core.check_update", "false")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", "init dvc")

    def add_and_commit(self, target: str, message: str) -> dict[str, float]:
        """``dvc add`` + ``git add`` + ``git commit``; return the timings."""
        add = self.dvc_cmd("add", "-q", target).seconds
        stage = self.git("add", f"{target}.dvc", ".gitignore").seconds
        commit = self.git("commit", "-q", "-m", message).seconds
        return {
            "dvc_add": add,
            "git_add": stage,
            "git_commit": commit,
            "total": add + stage + commit,
        }

    def cache_bytes(self) -> int:
        return tree_bytes(self.root / ".dvc" / "cache")


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the report: a value for Tusk and/or DVC."""

    label: str
    unit: str
    tusk: float | None = None
    dvc: float | None = None
    note: str = ""
    floor: float | None = None  # bench/floor.py: the least work any Python tool does

    @property
    def ratio(self) -> float | None:
        if self.tusk is None or not self.dvc:
            return None
        return self.tusk / self.dvc

    @property
    def floor_ratio(self) -> float | None:
        if self.tusk is None or not self.floor:
            return None
        return self.tusk / self.floor


@dataclass
class Target:
    label: str
    goal: str
    value: float | None
    passed: bool | None
    shown: str


@dataclass(frozen=True)
class TargetSpec:
    label: str
    row: str  # key in Report.rows
    field: str  # "tusk", "ratio" (tusk/dvc) or "floor_ratio" (tusk/floor)
    op: str
    limit: float
    unit: str


OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
}
TARGETS = (
    TargetSpec("D1 ingest time, tusk/dvc", "d1_ingest", "ratio", "<=", 0.10, "x"),
    TargetSpec("D1 ingest time, tusk/floor", "d1_ingest", "floor_ratio", "<=", 2.0, "x"),
    TargetSpec("D2 tusk ingest, TUSK_HOME on tmpfs", "d2_rate_tmpfs", "tusk", ">=", 700.0, "MB/s"),
    TargetSpec("D2 tusk ingest on disk / fdatasync rate", "d2_vs_disk", "tusk", ">=", 0.8, "x"),
    TargetSpec("D3 tusk storage added", "d3_storage", "tusk", "<=", 4.0, "MiB"),
    TargetSpec("D1 SDK diff of 1 changed file (open+diff)", "d1_diff_sdk", "tusk", "<", 0.1, "s"),
)


@dataclass
class Report:
    config: dict[str, Any]
    rows: dict[str, Row] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def row(self, key: str, label: str, unit: str, note: str = "") -> Row:
        if key not in self.rows:
            self.rows[key] = Row(label, unit, note=note)
        return self.rows[key]


@dataclass
class Options:
    sizes: Sizes
    layout: Layout
    repeat: int
    tusk_exe: Path | None
    dvc_venv: Path
    skip_tusk: bool
    skip_dvc: bool
    tusk_sync: str = "full"


class Bench:
    def __init__(self, opts: Options, report: Report) -> None:
        self.opts = opts
        self.report = report
        self.layout = opts.layout
        self.sizes = opts.sizes
        self.changed_path = ""
        self.dvc: Path | None = None
        self.tusk_d1: TuskCli | None = None
        self.tusk_d2: TuskCli | None = None
        if opts.tusk_exe is not None and not opts.skip_tusk:
            self.tusk_d1 = TuskCli(opts.tusk_exe, self.layout.tusk_home_d1, opts.tusk_sync)
            self.tusk_d2 = TuskCli(opts.tusk_exe, self.layout.tusk_home_d2, opts.tusk_sync)

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    # -- setup -------------------------------------------------------------

    def prepare(self) -> None:
        src = ByteSource(SEED)
        self.report.config["generator"] = src.name
        self.log(f"generating data with {src.name} in {self.layout.data}")
        start = time.perf_counter()
        self.changed_path = generate_data(src, self.sizes, self.layout)
        settle()
        self.report.details["generate_s"] = time.perf_counter() - start
        self.report.config["d1_changed_file"] = self.changed_path
        if self.tusk_d1 is not None:
            self.report.config["tusk_version"] = tusk_version(self.tusk_d1)
        if not self.opts.skip_dvc:
            self.dvc = ensure_dvc(self.opts.dvc_venv)
            self.report.config["dvc_version"] = DVC_VERSION

    def dvc_repo(self, root: Path) -> DvcRepo:
        assert self.dvc is not None
        repo = DvcRepo(self.dvc, root, self.layout.dvc_site_cache)
        repo.init()
        return repo

    def startup(self) -> None:
        """CLI start-up cost (``--help``), which every CLI row below includes."""
        row = self.report.row("startup", "CLI start-up, --help (best)", "s")
        if self.tusk_d1 is not None:
            cli = self.tusk_d1
            row.tusk = repeat(lambda: cli("--help").seconds, self.opts.repeat).best
        if self.dvc is not None:
            dvc = self.dvc
            row.dvc = repeat(
                lambda: run([dvc, "--help"], env=dvc_env()).seconds, self.opts.repeat
            ).best

    # -- D1 ------------------------------------------------------------------

    def d1_ingest(self) -> DvcRepo | None:
        row = self.report.row("d1_ingest", f"D1 ingest ({self.sizes.d1_files} x 4 KiB files)", "s")
        if self.tusk_d1 is not None:
            self.log("D1: tusk put -r")
            self.tusk_d1("create", "repo", "d1")
            settle(self.layout.d1)
            row.tusk = self.tusk_d1(
                "put", "file", "d1@master:/", "-r", "-f", self.layout.d1
            ).seconds
        self.log("D1: Python floor (bench/floor.py d1)")
        settle(self.layout.d1)
        floor = floor_run("d1", self.layout.d1, self.layout.root / "floor-d1", self.opts.tusk_sync)
        row.floor = floor.wall
        self.report.details["floor_d1"] = asdict(floor)
        repo = None
        if self.dvc is not None:
            self.log("D1: dvc add + git commit")
            repo = self.dvc_repo(self.layout.dvc_d1)
            shutil.copytree(self.layout.d1, repo.root / "d1")
            settle()
            timings = repo.add_and_commit("d1", "add D1")
            row.dvc = timings["total"]
            self.report.details["dvc_d1_ingest"] = timings
        return repo

    def d1_unchanged(self, repo: DvcRepo | None) -> None:
        times = self.opts.repeat
        status = self.report.row("d1_status", "D1 unchanged: status/diff, CLI (best)", "s")
        sdk = self.report.row("d1_status_sdk", "D1 unchanged: SDK open+diff (best)", "s")
        if repo is not None:
            self.log("D1: dvc status (unchanged)")
            res = repeat(lambda: repo.dvc_cmd("status", "-q").seconds, times)
            status.dvc = res.best
            self.report.details["dvc_status_unchanged_s"] = res.summary()
        if self.tusk_d1 is not None:
            cli = self.tusk_d1
            self.log("D1: tusk diff file d1@master d1@master (CLI and SDK)")
            res = repeat(lambda: cli("diff", "file", "d1@master", "d1@master").seconds, times)
            status.tusk = res.best
            self.report.details["tusk_cli_diff_unchanged_s"] = res.summary()
            diff = sdk_diff(cli.home, "d1@master", "d1@master", times)
            if diff is None:
                self.report.warnings.append("tusk SDK not importable here: SDK timings skipped")
            else:
                sdk.tusk = diff.open_and_diff.best
                self.report.details["tusk_sdk_diff_unchanged"] = diff.summary()
                if diff.changes:
                    self.report.warnings.append(
                        f"unchanged diff reported {len(diff.changes)} changes"
                    )

    def d1_one_file(self) -> None:
        if self.tusk_d1 is None:
            return
        cli = self.tusk_d1
        times = self.opts.repeat
        self.log(f"D1: change /{self.changed_path}, diff d1@master vs d1@master^1")
        put = self.report.row("d1_put_one", "D1 put one changed file (2nd commit)", "s")
        settle()
        put.tusk = cli(
            "put", "file", f"d1@master:/{self.changed_path}", "-f", self.layout.d1_modified
        ).seconds
        cli_row = self.report.row("d1_diff_cli", "D1 diff 1 changed file: CLI (best)", "s")
        res = repeat(lambda: cli("diff", "file", "d1@master", "d1@master^1").seconds, times)
        cli_row.tusk = res.best
        self.report.details["tusk_cli_diff_one_file_s"] = res.summary()
        diff = sdk_diff(cli.home, "d1@master", "d1@master^1", times)
        if diff is None:
            return
        self.report.row(
            "d1_diff_sdk", "D1 diff 1 changed file: SDK open+diff (best)", "s"
        ).tusk = diff.open_and_diff.best
        self.report.row(
            "d1_diff_sdk_only", "D1 diff 1 changed file: SDK diff only (best)", "s"
        ).tusk = diff.diff_only.best
        self.report.details["tusk_sdk_diff_one_file"] = diff.summary()
        expected = [(self.changed_path, "changed")]
        if [(p.lstrip("/"), c) for p, c in diff.changes] != expected:
            self.report.warnings.append(
                f"one-file diff returned {diff.changes[:5]}, expected {expected}"
            )

    # -- D2 / D3 ---------------------------------------------------------------

    def d2_d3(self) -> None:
        size = self.sizes.d2_size
        d2 = self.report.row("d2_ingest", f"D2 ingest ({size / MiB:.0f} MiB file)", "s")
        d2_rate = self.report.row("d2_rate", "D2 ingest throughput", "MB/s")
        d3 = self.report.row("d3_ingest", "D3 ingest (same file, edited)", "s")
        d3_rate = self.report.row("d3_rate", "D3 ingest throughput", "MB/s")
        d3_bytes = self.report.row("d3_storage", "D3 storage added", "MiB")
        d3_size = self.layout.d3.stat().st_size
        if self.tusk_d2 is not None:
            cli = self.tusk_d2
            self.log("D2: tusk put big.bin")
            cli("create", "repo", "d2")
            settle(self.layout.d2)
            d2.tusk = cli("put", "file", "d2@master:/big.bin", "-f", self.layout.d2).seconds
            d2_rate.tusk = size / d2.tusk / MB
            self.log("D3: tusk put big.bin (second commit)")
            before = tree_bytes(cli.home)
            settle(self.layout.d3)
            d3.tusk = cli("put", "file", "d2@master:/big.bin", "-f", self.layout.d3).seconds
            settle()
            d3_rate.tusk = d3_size / d3.tusk / MB
            d3_bytes.tusk = (tree_bytes(cli.home) - before) / MiB
            self.report.details["tusk_home_d2_bytes"] = tree_bytes(cli.home)
            self.d2_floor_and_disk(d2_rate)
            self.d2_tmpfs()
            for sync in ("full", "none"):
                row = self.report.row(
                    f"d2_rate_sdk_{sync}", f"D2 ingest, SDK in-process, TUSK_SYNC={sync}", "MB/s"
                )
                home = self.layout.root / f"tusk-home-sdk-{sync}"
                self.log(f"D2: in-process put, TUSK_SYNC={sync}")
                settle(self.layout.d2)
                row.tusk = size / sdk_put_seconds(home, self.layout.d2, sync) / MB
                shutil.rmtree(home, ignore_errors=True)
        if self.dvc is not None:
            repo = self.dvc_repo(self.layout.dvc_d2)
            big = repo.root / "big.bin"
            self.log("D2: dvc add big.bin + git commit")
            shutil.copyfile(self.layout.d2, big)
            settle()
            timings = repo.add_and_commit("big.bin", "add D2")
            d2.dvc = timings["total"]
            d2_rate.dvc = size / d2.dvc / MB
            self.report.details["dvc_d2_ingest"] = timings
            self.log("D3: dvc add big.bin (edited) + git commit")
            before = repo.cache_bytes()
            big.unlink()
            shutil.copyfile(self.layout.d3, big)
            settle()
            timings = repo.add_and_commit("big.bin", "add D3")
            d3.dvc = timings["total"]
            d3_rate.dvc = d3_size / d3.dvc / MB
            d3_bytes.dvc = (repo.cache_bytes() - before) / MiB
            self.report.details["dvc_d3_ingest"] = timings

    def d2_floor_and_disk(self, d2_rate: Row) -> None:
        """The floor's D2 rate on disk, and Tusk's D2 rate against the disk's own, both
        measured now (the disk's rate drifts over a run on shared machines)."""
        size = self.sizes.d2_size
        self.log("D2: Python floor on disk (bench/floor.py d2)")
        settle(self.layout.d2)
        floor = floor_run("d2", self.layout.d2, self.layout.root / "floor-d2", self.opts.tusk_sync)
        d2_rate.floor = size / floor.wall / MB
        self.report.details["floor_d2_disk"] = asdict(floor)
        disk = disk_write_rate(self.layout.root, max(size, 16 * MiB))
        self.report.config["disk_write_MBps_at_d2"] = round(disk, 1)
        if d2_rate.tusk is not None:
            # The ceiling: the disk rate measured at the start and now, whichever is higher.
            ceiling = max(disk, float(self.report.config.get("disk_write_MBps") or 0))
            self.report.row(
                "d2_vs_disk", "D2 tusk ingest on disk / fdatasync write rate", "x"
            ).tusk = d2_rate.tusk / ceiling

    def d2_tmpfs(self) -> None:
        """D2 with ``TUSK_HOME`` (and the floor's output) on tmpfs: no disk in the way, so
        this is Tusk's own speed. Best of 3 runs, each on a fresh home."""
        assert self.opts.tusk_exe is not None
        size = self.sizes.d2_size
        row = self.report.row(
            "d2_rate_tmpfs", "D2 ingest throughput, TUSK_HOME on tmpfs (best of 3)", "MB/s"
        )
        shm = tmpfs_room(size)
        if shm is None:
            self.report.warnings.append(f"no room on {TMPFS} for D2: tmpfs rows skipped")
            return
        home = Path(tempfile.mkdtemp(prefix="tusk-bench-home-", dir=shm))
        runs: list[float] = []
        floors: list[float] = []
        try:
            for i in range(3):
                cli = TuskCli(self.opts.tusk_exe, home / f"h{i}", self.opts.tusk_sync)
                cli("create", "repo", "d2")
                self.log(f"D2: tusk put big.bin, TUSK_HOME on tmpfs ({i + 1}/3)")
                settle(self.layout.d2)
                runs.append(cli("put", "file", "d2@master:/big.bin", "-f", self.layout.d2).seconds)
                shutil.rmtree(cli.home)
                settle(self.layout.d2)
                floors.append(
                    floor_run("d2", self.layout.d2, home / "floor", self.opts.tusk_sync).wall
                )
        finally:
            shutil.rmtree(home, ignore_errors=True)
        row.tusk = size / min(runs) / MB
        row.floor = size / min(floors) / MB
        self.report.details["tusk_d2_tmpfs_s"] = runs
        self.report.details["floor_d2_tmpfs_s"] = floors

    def sanity(self) -> None:
        if self.tusk_d1 is None or self.tusk_d2 is None:
            return
        commits = {
            "d1@master": count_commits(self.tusk_d1, "d1@master"),
            "d2@master": count_commits(self.tusk_d2, "d2@master"),
        }
        self.report.details["tusk_commit_counts"] = commits
        for ref, count in commits.items():
            if count is None:
                self.report.warnings.append(
                    f"could not count commits of {ref} via 'tusk list commit'"
                )
            elif count < 2:
                self.report.warnings.append(f"{ref} has {count} commits, expected at least 2")

    def run(self) -> None:
        self.prepare()
        size = max(self.sizes.d2_size, 16 * MiB)
        self.log("disk baseline: sequential write + fdatasync")
        self.report.config["disk_write_MBps"] = round(disk_write_rate(self.layout.root, size), 1)
        self.startup()
        repo = self.d1_ingest()
        self.d1_unchanged(repo)
        self.d1_one_file()
        self.d2_d3()
        self.sanity()


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


def evaluate_targets(report: Report) -> list[Target]:
    targets: list[Target] = []
    for spec in TARGETS:
        row = report.rows.get(spec.row)
        value = None if row is None else getattr(row, spec.field)
        passed = None if value is None else OPS[spec.op](value, spec.limit)
        goal = f"{spec.op} {fmt(spec.limit, spec.unit)}"
        targets.append(Target(spec.label, goal, value, passed, fmt(value, spec.unit)))
    return targets


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "MB/s":
        return f"{value:,.0f} MB/s"
    if unit == "MiB":
        return f"{value:,.2f} MiB"
    return f"{value:.3f}{unit}"


def render(report: Report, targets: list[Target]) -> str:
    cfg = report.config
    lines = [
        "",
        "Tusk vs DVC storage benchmark",
        f"  scale {cfg['scale']}  generator {cfg.get('generator')}"
        f"  tusk {cfg.get('tusk_version', '-')}  dvc {cfg.get('dvc_version', '-')}"
        f"  python {cfg['python']}  cpus {cfg['cpus']}  TUSK_SYNC={cfg.get('tusk_sync')}",
        f"  disk: sequential write + fdatasync {cfg.get('disk_write_MBps', '-')} MB/s at start,"
        f" {cfg.get('disk_write_MBps_at_d2', '-')} MB/s before D2's ratio"
        " (the ceiling for durable ingest on this machine: the higher is used)",
        "  floor: bench/floor.py as its own process (read, BLAKE3, one pack, one SQLite"
        " write), wall time with start-up, as the tusk commands",
        "",
    ]
    header = ("metric", "tusk", "dvc", "tusk/dvc", "floor", "tusk/floor")
    table = [header]
    for row in report.rows.values():
        table.append(
            (
                row.label,
                fmt(row.tusk, row.unit),
                fmt(row.dvc, row.unit),
                fmt(row.ratio, "x"),
                fmt(row.floor, row.unit),
                fmt(row.floor_ratio, "x"),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, cells in enumerate(table):
        parts = [cells[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        lines.append("  " + "  ".join(parts))
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    lines += [
        "",
        "Targets" + ("" if cfg["scale"] == 1 else " (meant for --scale 1; indicative only)"),
    ]
    label_width = max((len(t.label) for t in targets), default=0)
    for t in targets:
        verdict = {True: "PASS", False: "FAIL", None: "N/A"}[t.passed]
        lines.append(f"  {verdict:<4}  {t.label:<{label_width}}  {t.shown:>12}  (target {t.goal})")
    for warning in report.warnings:
        lines.append(f"  WARNING: {warning}")
    lines.append("")
    return "\n".join(lines)


def to_json(report: Report, targets: list[Target]) -> dict[str, Any]:
    return {
        "config": report.config,
        "results": {
            key: {**asdict(row), "ratio_tusk_dvc": row.ratio, "ratio_tusk_floor": row.floor_ratio}
            for key, row in report.rows.items()
        },
        "targets": [asdict(t) for t in targets],
        "details": report.details,
        "warnings": report.warnings,
    }


# --------------------------------------------------------------------------
# Work dir and entry point
# --------------------------------------------------------------------------


def prepare_workdir(
    workdir: str | None, prefix: str = "tusk-bench-", made_by: str = "bench/bench_store.py"
) -> tuple[Path, bool]:
    """Return (root, created_by_us).  A given non-empty dir must be one of the benchmarks'."""
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix=prefix)), True
    root = Path(workdir).resolve()
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise BenchError(f"{root} is not empty and was not made by a Tusk benchmark")
        clear_dir(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(f"made by {made_by}; wiped on each run\n")
    return root, False


def clear_dir(root: Path) -> None:
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="work dir (default: a fresh temp dir)")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink dataset sizes (e.g. 0.01)")
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs for status/diff timings (best is kept)"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    parser.add_argument(
        "--keep", action="store_true", help="keep the generated data and repositories"
    )
    parser.add_argument(
        "--tusk", help="tusk executable (default: beside sys.executable, then PATH)"
    )
    parser.add_argument("--dvc-venv", type=Path, default=DEFAULT_DVC_VENV, help="venv for dvc")
    parser.add_argument("--skip-tusk", action="store_true", help="run only the DVC half")
    parser.add_argument("--skip-dvc", action="store_true", help="run only the Tusk half")
    parser.add_argument(
        "--tusk-sync",
        choices=["full", "none"],
        default="full",
        help="TUSK_SYNC for Tusk: full (default: packs flushed to disk before they are "
        "indexed) or none (the OS flushes later, as DVC does)",
    )
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tusk_exe = None if args.skip_tusk else find_tusk(args.tusk)
    if not args.skip_tusk and (tusk_exe is None or not tusk_exe.exists()):
        print("error: no tusk executable found (use --tusk PATH or --skip-tusk)", file=sys.stderr)
        return 2
    sizes = Sizes.from_scale(args.scale)
    if not args.skip_tusk:
        sys.path.insert(0, str(BENCH_DIR))
        from bytecode import compile_tusk

        compile_tusk()  # as installed: whole tusk processes are timed (bench/bytecode.py)
    try:
        root, temp = prepare_workdir(args.workdir)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = Report(
        config={
            "scale": args.scale,
            "sizes": asdict(sizes),
            "repeat": args.repeat,
            "workdir": str(root),
            "tusk_exe": str(tusk_exe) if tusk_exe else None,
            "tusk_sync": args.tusk_sync,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        }
    )
    opts = Options(
        sizes,
        Layout(root),
        args.repeat,
        tusk_exe,
        args.dvc_venv,
        args.skip_tusk,
        args.skip_dvc,
        args.tusk_sync,
    )
    try:
        Bench(opts, report).run()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept work dir {root}")
        elif temp:
            shutil.rmtree(root, ignore_errors=True)
        else:
            clear_dir(root)
    targets = evaluate_targets(report)
    print(render(report, targets))
    if args.json:
        args.json.write_text(json.dumps(to_json(report, targets), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
