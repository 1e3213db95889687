#!/usr/bin/env python3
"""Benchmark Tusk pipelines: an incremental job against DVC, and datum throughput.

Part 1, incremental (Tusk and DVC in the same run, on the same generated files):

* 1,000 text files of ~1 KiB (fixed seed); one small CPU step per file, the same shell text
  for both tools: ``sort FILE | sha256sum > OUT/NAME.sha256``.
* Tusk: a pipeline with input ``in`` and glob ``/*`` (one datum per file), run in this process
  with ``Client.run_scheduler(once=True, sandbox="none")``.  Job 1 is timed from the put of
  the 1,000 files to the job's end; then one file changes and job 2 is timed the same way.
  Job 2 must process exactly 1 datum (and skip the rest) and take at most 5% of job 1.
* DVC: a git + DVC repo whose ``dvc.yaml`` has one stage over the folder (the same step in a
  ``for`` loop); ``dvc repro`` for run 1, the same file changed, ``dvc repro`` for run 2.
  DVC has no per-file datums: any change reruns the whole stage.  (``foreach`` would need
  every file name written into ``dvc.yaml`` or ``params.yaml``, 1,000 stages, which is not
  how a folder is processed with DVC.)

Part 2, throughput: N trivial datums (``true``; and ``cp`` of the file to ``/pfs/out``) with
``parallelism_spec: {constant: 2}``, without a sandbox and in bubblewrap.  Reports datums per
second over the job's own wall time (``started_at`` to ``finished_at``) and from put to done,
the per-datum overhead (wall x parallelism / N) and the sandbox's cost per datum, next to the
cost of starting the same process from Python (the floor any executor pays).

The script prints tables and PASS/FAIL lines for the targets; it exits 0 whether targets pass
or not, and non-zero only when a step fails.  Run it with the interpreter that has Tusk::

    .venv/bin/python bench/bench_pipeline.py               # full size
    .venv/bin/python bench/bench_pipeline.py --scale 0.05  # smoke run (< 1 min)
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.metadata
import io
import json
import os
import platform
import pstats
import random
import shutil
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench_store import (
    DEFAULT_DVC_VENV,
    DVC_VERSION,
    BenchError,
    DvcRepo,
    clear_dir,
    ensure_dvc,
    prepare_workdir,
)

SEED = "tusk-bench-pipeline-v1"
FULL_DATUMS = 1000
LINES_PER_FILE = 64  # of 15 letters + newline: 1 KiB per file
PARALLELISM = 2

# The small CPU step, one file at a time: $1 = input file, $2 = output folder.
STEP = 'sort "$1" | sha256sum > "$2/${1##*/}.sha256"\n'
TUSK_STEP_CMD = ["sh", "-c", 'set -- "$in" "$TUSK_PFS/out"\n' + STEP]
DVC_STEP_CMD = 'mkdir -p out && for f in data/*; do sh step.sh "$f" out; done'
TRIVIAL_CMDS: dict[str, list[str]] = {
    "true": ["true"],
    "cp": ["sh", "-c", 'cp "$in" "$TUSK_PFS/out/"'],
}
# The root bubblewrap needs here (docs: shared ENVIRONMENT.md), for the process-start floor.
BWRAP_FLOOR = [
    "bwrap", "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
    "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
    "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev",
    "--tmpfs", "/tmp", "--dir", "/pfs", "--unshare-net", "--die-with-parent", "true",
]  # fmt: skip

TARGET_SECOND_RATIO = 0.05
TARGET_RATE = 200.0
TARGET_OVERHEAD_S = 0.010


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def file_name(index: int) -> str:
    return f"f{index:05d}.txt"


def file_text(rng: random.Random) -> bytes:
    letters = string.ascii_lowercase
    lines = ("".join(rng.choices(letters, k=15)) for _ in range(LINES_PER_FILE))
    return ("\n".join(lines) + "\n").encode()


def write_inputs(folder: Path, count: int) -> int:
    """``count`` files of seeded text in ``folder``; returns their total size."""
    rng = random.Random(SEED)
    folder.mkdir(parents=True)
    total = 0
    for i in range(count):
        data = file_text(rng)
        (folder / file_name(i)).write_bytes(data)
        total += len(data)
    return total


def changed_text() -> bytes:
    return file_text(random.Random(SEED + "/changed"))


# --------------------------------------------------------------------------
# Profiling (optional): this thread and every thread started meanwhile
# --------------------------------------------------------------------------


class _Snapshot:
    """What pstats.Stats needs from a profiler, taken without disabling it from another
    thread (``Profile.disable`` acts on the calling thread only)."""

    def __init__(self, prof: cProfile.Profile) -> None:
        prof.snapshot_stats()
        self.stats = prof.stats  # type: ignore[attr-defined]

    def create_stats(self) -> None:
        pass


class ThreadedProfile:
    """cProfile of the calling thread plus each thread started while it is active (the
    scheduler's datum workers and the chunk store's pools).  Wall-clock times: a thread's
    time blocked in a call (process start, a lock, the GIL) counts for that call."""

    def __init__(self) -> None:
        self.main = cProfile.Profile()
        self.threads: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _hook(self, _frame: FrameType, _event: str, _arg: Any) -> None:
        sys.setprofile(None)
        prof = cProfile.Profile()
        with self._lock:
            self.threads.append(prof)
        prof.enable()

    def __enter__(self) -> ThreadedProfile:
        threading.setprofile(self._hook)
        self.main.enable()
        return self

    def __exit__(self, *_: object) -> None:
        self.main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]

    def stats(self) -> pstats.Stats:
        out = pstats.Stats(self.main, stream=io.StringIO())
        with self._lock:
            for prof in self.threads:
                out.add(_Snapshot(prof))
        return out


def profile_summary(stats: pstats.Stats, top: int = 25) -> str:
    buf = io.StringIO()
    stats.stream = buf  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(r"tusk/|subprocess|shutil", top)
    return buf.getvalue()


# --------------------------------------------------------------------------
# Tusk
# --------------------------------------------------------------------------


def tusk_version() -> str:
    for dist in ("tusk-data", "tusk"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def source_state() -> dict[str, Any]:
    """Git commit of the Tusk checkout this script sits in, and whether src/ differs from it."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=repo, capture_output=True, text=True
        ).stdout.split("\n")
    except OSError:
        return {}
    return {"git_head": head, "src_changed_files": [d[3:] for d in dirty if d.strip()]}


def pipeline_spec(name: str, cmd: list[str], parallelism: int) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": "in", "glob": "/*", "name": "in"}},
        "transform": {"cmd": cmd},
        "parallelism_spec": {"constant": parallelism},
    }


@dataclass
class JobRun:
    """One job: from the put that caused it to the scheduler's return, and its own record."""

    put_s: float  # the put itself
    put_to_done_s: float  # start of the put -> the job's finished_at
    scheduler_return_s: float  # start of the put -> run_scheduler(once=True) returned
    job_s: float  # the job's started_at -> finished_at
    to_start_s: float  # end of the put -> the job's started_at (job created, datums computed)
    tail_s: float  # the job's finished_at -> run_scheduler returned (its last poll, ~0.1 s)
    cpu_s: float  # CPU time of this process (all threads), put to scheduler return
    children_cpu_s: float  # CPU time of the datums' processes
    state: str
    datums: int
    processed: int
    skipped: int
    failed: int
    reason: str = ""


def run_job(
    client: Any,
    pipeline: str,
    put: Callable[[], Any],
    sandbox: str,
    profile: ThreadedProfile | None = None,
    executor: str | None = None,
) -> JobRun:
    """Put, run the scheduler until idle, and return the newest job of ``pipeline``.

    ``executor``: as ``Client.run_scheduler`` takes it (``local``, ``dask://host:port``)."""
    before = {j.id for j in client.list_jobs(pipeline)}
    cpu0 = os.times()
    start_wall = time.time()
    start = time.perf_counter()
    with profile if profile is not None else contextlib.nullcontext():
        put()
        put_done = time.perf_counter()
        put_wall = time.time()
        client.run_scheduler(once=True, sandbox=sandbox, executor=executor)
        end = time.perf_counter()
        end_wall = time.time()
    cpu1 = os.times()
    new = [j for j in client.list_jobs(pipeline) if j.id not in before]
    if len(new) != 1:
        raise BenchError(f"expected one new job of {pipeline}, found {len(new)}")
    job = new[0]
    job_s = (job.finished_at or 0.0) - (job.started_at or 0.0)
    finished = job.finished_at or end_wall
    return JobRun(
        put_s=put_done - start,
        put_to_done_s=finished - start_wall,
        scheduler_return_s=end - start,
        job_s=job_s,
        to_start_s=(job.started_at or put_wall) - put_wall,
        tail_s=end_wall - finished,
        cpu_s=cpu1.user + cpu1.system - cpu0.user - cpu0.system,
        children_cpu_s=(
            cpu1.children_user + cpu1.children_system - cpu0.children_user - cpu0.children_system
        ),
        state=job.state,
        datums=job.datums_total,
        processed=job.processed,
        skipped=job.skipped,
        failed=job.failed,
        reason=job.reason,
    )


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass
class Incremental:
    datums: int
    changed_file: str
    tusk_first: JobRun | None = None
    tusk_second: JobRun | None = None
    dvc_first_s: float | None = None
    dvc_second_s: float | None = None
    dvc_noop_s: float | None = None
    outputs_match: bool | None = None

    @property
    def tusk_ratio(self) -> float | None:
        if self.tusk_first is None or self.tusk_second is None:
            return None
        return self.tusk_second.put_to_done_s / self.tusk_first.put_to_done_s

    @property
    def dvc_ratio(self) -> float | None:
        if self.dvc_first_s is None or self.dvc_second_s is None:
            return None
        return self.dvc_second_s / self.dvc_first_s

    @property
    def tusk_vs_dvc_second(self) -> float | None:
        if self.tusk_second is None or not self.dvc_second_s:
            return None
        return self.tusk_second.put_to_done_s / self.dvc_second_s


@dataclass
class Throughput:
    cmd: str
    sandbox: str
    datums: int
    parallelism: int
    runs: list[JobRun] = field(default_factory=list)

    @property
    def best(self) -> JobRun:
        return min(self.runs, key=lambda r: r.job_s)

    @property
    def rate(self) -> float:
        return self.datums / self.best.job_s

    @property
    def rate_put_to_done(self) -> float:
        return self.datums / min(r.put_to_done_s for r in self.runs)

    @property
    def overhead_s(self) -> float:
        """Wall time each worker spends per datum: job wall x parallelism / datums."""
        return self.best.job_s * self.parallelism / self.datums


@dataclass
class Target:
    label: str
    goal: str
    shown: str
    passed: bool | None


@dataclass
class Report:
    config: dict[str, Any]
    incremental: Incremental | None = None
    throughput: list[Throughput] = field(default_factory=list)
    floor_s: dict[str, dict[str, float]] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------


@dataclass
class Options:
    root: Path
    datums: int
    rate_datums: int
    step_parallelism: int
    repeat: int
    skip_dvc: bool
    skip_bwrap: bool
    dvc_venv: Path
    profile_dir: Path | None


class Bench:
    def __init__(self, opts: Options, report: Report) -> None:
        self.opts = opts
        self.report = report
        self.root = opts.root
        self.data = opts.root / "data"
        self.rate_data = opts.root / "rate-data"
        self.changed = file_name(opts.datums // 2)
        self._sandboxes: list[str] | None = None

    # -- part 1: one changed file ----------------------------------------------

    def tusk_incremental(self, inc: Incremental) -> None:
        import tusk

        home = self.root / "tusk-home-incremental"
        new_text = changed_text()
        with tusk.Client(home) as client:
            client.create_repo("in")
            client.create_pipeline(
                pipeline_spec("step", TUSK_STEP_CMD, self.opts.step_parallelism),
                working_dir=self.root,
            )
            log(f"tusk: put {inc.datums} files, job 1 (glob /*, sandbox none)")
            inc.tusk_first = run_job(
                client, "step", lambda: client.put_dir("in@master:/", self.data), "none"
            )
            log(f"tusk: change /{self.changed}, job 2")
            inc.tusk_second = run_job(
                client,
                "step",
                lambda: client.put_file(f"in@master:/{self.changed}", new_text),
                "none",
            )
            out = f"step@master:/{self.changed}.sha256"
            self.tusk_changed_output = client.get_file(out)
            self.tusk_first_output = client.get_file(f"step@master:/{file_name(0)}.sha256")
        for label, job in (("job 1", inc.tusk_first), ("job 2", inc.tusk_second)):
            if job.state != "success":
                raise BenchError(f"tusk {label} ended {job.state}: {job.reason}")

    def dvc_incremental(self, inc: Incremental) -> None:
        dvc = ensure_dvc(self.opts.dvc_venv)
        self.report.config["dvc_version"] = DVC_VERSION
        repo = DvcRepo(dvc, self.root / "dvc-repo", self.root / "dvc-site-cache")
        repo.init()
        shutil.copytree(self.data, repo.root / "data")
        (repo.root / "step.sh").write_text(STEP)
        (repo.root / "dvc.yaml").write_text(
            "stages:\n"
            "  step:\n"
            f"    cmd: {DVC_STEP_CMD}\n"
            "    deps:\n"
            "      - data\n"
            "      - step.sh\n"
            "    outs:\n"
            "      - out\n"
        )
        repo.git("add", "dvc.yaml", "step.sh")
        repo.git("commit", "-q", "-m", "pipeline")
        os.sync()
        log(f"dvc: repro over {inc.datums} files (run 1)")
        inc.dvc_first_s = repo.dvc_cmd("repro", "-q").seconds
        log("dvc: repro with nothing changed")
        inc.dvc_noop_s = repo.dvc_cmd("repro", "-q").seconds
        (repo.root / "data" / self.changed).write_bytes(changed_text())
        os.sync()
        log(f"dvc: change data/{self.changed}, repro (run 2)")
        inc.dvc_second_s = repo.dvc_cmd("repro", "-q").seconds
        dvc_changed = (repo.root / "out" / f"{self.changed}.sha256").read_bytes()
        dvc_first = (repo.root / "out" / f"{file_name(0)}.sha256").read_bytes()
        outputs = len(list((repo.root / "out").iterdir()))
        if outputs != inc.datums:
            self.report.warnings.append(f"DVC wrote {outputs} outputs, expected {inc.datums}")
        if hasattr(self, "tusk_changed_output"):
            inc.outputs_match = (dvc_changed, dvc_first) == (
                self.tusk_changed_output,
                self.tusk_first_output,
            )
            if not inc.outputs_match:
                self.report.warnings.append("Tusk's and DVC's outputs differ")

    def incremental(self) -> None:
        inc = Incremental(self.opts.datums, self.changed)
        self.report.incremental = inc
        self.tusk_incremental(inc)
        second = inc.tusk_second
        assert second is not None
        if (second.processed, second.skipped) != (1, inc.datums - 1):
            self.report.warnings.append(
                f"tusk job 2 processed {second.processed} and skipped {second.skipped} datums, "
                f"expected 1 and {inc.datums - 1}"
            )
        if not self.opts.skip_dvc:
            self.dvc_incremental(inc)

    # -- part 2: throughput of trivial datums ------------------------------------

    def sandboxes(self) -> list[str]:
        if self._sandboxes is not None:
            return self._sandboxes
        self._sandboxes = ["none"]
        if not self.opts.skip_bwrap:
            from tusk.pps.executor import sandbox_mode

            try:
                sandbox_mode("bwrap")
                self._sandboxes.append("bwrap")
            except Exception as exc:  # InvalidArgument: bubblewrap missing or not working
                self.report.warnings.append(f"bwrap rows skipped: {exc}")
        return self._sandboxes

    def throughput(self) -> None:
        import tusk

        n = self.opts.rate_datums
        write_inputs(self.rate_data, n)
        for cmd_name, cmd in TRIVIAL_CMDS.items():
            for sandbox in self.sandboxes():
                tp = Throughput(cmd_name, sandbox, n, PARALLELISM)
                self.report.throughput.append(tp)
                for attempt in range(self.opts.repeat):
                    home = self.root / f"tusk-home-rate-{cmd_name}-{sandbox}-{attempt}"
                    log(f"tusk: {n} trivial datums ({cmd_name}), parallelism 2, sandbox {sandbox}")
                    with tusk.Client(home) as client:
                        client.create_repo("in")
                        client.create_pipeline(
                            pipeline_spec("trivial", cmd, PARALLELISM), working_dir=self.root
                        )
                        job = run_job(
                            client,
                            "trivial",
                            lambda c=client: c.put_dir("in@master:/", self.rate_data),
                            sandbox,
                        )
                    shutil.rmtree(home, ignore_errors=True)
                    if job.state != "success" or job.processed != n:
                        raise BenchError(
                            f"trivial job ({cmd_name}, {sandbox}) ended {job.state} with "
                            f"{job.processed} of {n} processed: {job.reason}"
                        )
                    tp.runs.append(job)

    def floor_cmds(self) -> dict[str, list[str]]:
        """The processes a datum starts, outside Tusk: what any executor pays at least."""
        sample = self.data / file_name(0)
        out = self.root / "floor-out"
        pfs = self.root / "floor-pfs"
        for folder in (out, pfs / "in", pfs / "out"):
            folder.mkdir(parents=True, exist_ok=True)
        cmds = {
            "true": ["true"],
            "sh -c cp FILE OUT/": ["sh", "-c", f'cp "{sample}" "{out}/"'],
            "the step (sh: sort | sha256sum)": ["sh", "-c", f'set -- "{sample}" "{out}"\n' + STEP],
        }
        if "bwrap" in self.sandboxes():
            cmds["bwrap true, minimal root (/usr, /etc)"] = BWRAP_FLOOR
            try:  # the executor's own arguments (a private helper: skipped if it moved)
                from tusk.pps.executor import _bwrap_args

                args = _bwrap_args(pfs, ["in"], str(self.root))
                cmds["bwrap true, Tusk's mounts"] = [*args, "true"]
            except (ImportError, TypeError) as exc:
                self.report.warnings.append(f"no floor for Tusk's bwrap arguments: {exc}")
        return cmds

    def process_floor(self) -> None:
        """Wall seconds per process, started and reaped from this Python: one after another,
        and two threads at once (as parallelism 2 does)."""
        count = min(200, max(20, self.opts.rate_datums // 5))
        count -= count % 2

        def spawn(cmd: list[str], times: int) -> None:
            for _ in range(times):
                subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=True)

        for name, cmd in self.floor_cmds().items():
            start = time.perf_counter()
            spawn(cmd, count)
            sequential = (time.perf_counter() - start) / count
            threads = [threading.Thread(target=spawn, args=(cmd, count // 2)) for _ in range(2)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            two = (time.perf_counter() - start) / count
            self.report.floor_s[name] = {"sequential": sequential, "two_at_once": two}

    # -- optional profiles ---------------------------------------------------------

    def profiles(self) -> None:
        import tusk

        folder = self.opts.profile_dir
        assert folder is not None
        folder.mkdir(parents=True, exist_ok=True)
        runs: dict[str, tuple[Path, list[str], int]] = {
            "job1-step": (self.data, TUSK_STEP_CMD, 1),
            "trivial-true-none": (self.rate_data, TRIVIAL_CMDS["true"], PARALLELISM),
        }
        for name, (data, cmd, parallelism) in runs.items():
            log(f"profile: {name} (cProfile, all threads; slower than the timed runs)")
            home = self.root / f"tusk-home-profile-{name}"
            prof = ThreadedProfile()
            with tusk.Client(home) as client:
                client.create_repo("in")
                client.create_pipeline(pipeline_spec("p", cmd, parallelism), working_dir=self.root)
                job = run_job(
                    client,
                    "p",
                    lambda c=client, d=data: c.put_dir("in@master:/", d),
                    "none",
                    profile=prof,
                )
            shutil.rmtree(home, ignore_errors=True)
            stats = prof.stats()
            stats.dump_stats(folder / f"{name}.pstats")
            text = (
                f"{name}: job {job.job_s:.2f} s, put to done {job.put_to_done_s:.2f} s under "
                f"the profiler, {job.processed} datums\n" + profile_summary(stats)
            )
            (folder / f"{name}.txt").write_text(text)
            self.report.profiles[name] = str(folder / f"{name}.txt")

    def run(self) -> None:
        log(f"generating {self.opts.datums} input files in {self.data}")
        size = write_inputs(self.data, self.opts.datums)
        self.report.config["input_bytes"] = size
        self.report.config["changed_file"] = self.changed
        os.sync()
        self.incremental()
        self.throughput()
        log("process start floor")
        self.process_floor()
        if self.opts.profile_dir is not None:
            self.profiles()


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


def fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    value = max(value, 0.0)  # CPU deltas of os.times() can come out as -0.0
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def fmt_x(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def evaluate(report: Report) -> list[Target]:
    targets: list[Target] = []
    inc = report.incremental
    if inc is not None and inc.tusk_second is not None:
        second = inc.tusk_second
        ok = (second.processed, second.skipped, second.failed) == (1, inc.datums - 1, 0)
        targets.append(
            Target(
                "tusk job 2 processes exactly 1 datum",
                f"1 processed, {inc.datums - 1} skipped",
                f"{second.processed} processed, {second.skipped} skipped",
                ok,
            )
        )
        ratio = inc.tusk_ratio
        targets.append(
            Target(
                "tusk job 2 / job 1 (put to done)",
                f"<= {TARGET_SECOND_RATIO}",
                fmt_x(ratio),
                None if ratio is None else ratio <= TARGET_SECOND_RATIO,
            )
        )
    none_true = next(
        (t for t in report.throughput if t.cmd == "true" and t.sandbox == "none"), None
    )
    if none_true is not None:
        targets.append(
            Target(
                f"trivial datums/s, parallelism {none_true.parallelism}, no sandbox (job wall)",
                f">= {TARGET_RATE:.0f}/s",
                f"{none_true.rate:.1f}/s",
                none_true.rate >= TARGET_RATE,
            )
        )
        targets.append(
            Target(
                "per-datum overhead, no sandbox",
                f"< {TARGET_OVERHEAD_S * 1000:.0f} ms",
                fmt_s(none_true.overhead_s),
                none_true.overhead_s < TARGET_OVERHEAD_S,
            )
        )
    return targets


def table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, cells in enumerate(rows):
        parts = [cells[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        lines.append("  " + "  ".join(parts))
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


def render(report: Report, targets: list[Target]) -> str:
    cfg = report.config
    lines = [
        "",
        "Tusk pipeline benchmark",
        f"  datums {cfg['datums']} (throughput {cfg['rate_datums']})  tusk {cfg['tusk_version']}"
        f" ({cfg.get('git_head', '?')}{', src modified' if cfg.get('src_changed_files') else ''})"
        f"  dvc {cfg.get('dvc_version', '-')}  python {cfg['python']}  cpus {cfg['cpus']}",
        f"  load average (1, 5, 15 min) at start {cfg['loadavg_start']}, at end"
        f" {cfg.get('loadavg_end')}: other work on the machine slows every row",
        "",
    ]
    inc = report.incremental
    if inc is not None:
        t1, t2 = inc.tusk_first, inc.tusk_second
        lines.append(
            f"Incremental: {inc.datums} files, step `sort | sha256sum` per file (tusk parallelism"
            f" {cfg['step_parallelism']}), then /{inc.changed_file} changed"
        )
        rows = [("", "tusk (put to done)", "tusk (job only)", "dvc repro")]
        rows.append(
            (
                "run 1: all files",
                fmt_s(t1 and t1.put_to_done_s),
                fmt_s(t1 and t1.job_s),
                fmt_s(inc.dvc_first_s),
            )
        )
        rows.append(
            (
                "run 2: one file changed",
                fmt_s(t2 and t2.put_to_done_s),
                fmt_s(t2 and t2.job_s),
                fmt_s(inc.dvc_second_s),
            )
        )
        job_ratio = t2.job_s / t1.job_s if t1 and t2 and t1.job_s else None
        rows.append(
            ("run 2 / run 1", fmt_x(inc.tusk_ratio), fmt_x(job_ratio), fmt_x(inc.dvc_ratio))
        )
        ran = f"{t2.processed} (skipped {t2.skipped})" if t2 else "-"
        dvc_ran = "-" if inc.dvc_second_s is None else f"{inc.datums} (whole stage)"
        rows.append(("files processed in run 2", ran, "", dvc_ran))
        lines += table(rows)
        lines.append(
            f"  tusk run 2 / dvc run 2: {fmt_x(inc.tusk_vs_dvc_second)}"
            f"   (dvc repro with nothing changed: {fmt_s(inc.dvc_noop_s)})"
        )
        for label, run in (("run 1", t1), ("run 2", t2)):
            if run is not None:
                lines.append(
                    f"  tusk {label}: put {fmt_s(run.put_s)}, put to job start "
                    f"{fmt_s(run.to_start_s)}, job {fmt_s(run.job_s)}, job end to scheduler "
                    f"return {fmt_s(run.tail_s)}; CPU: tusk {fmt_s(run.cpu_s)}, "
                    f"datum processes {fmt_s(run.children_cpu_s)}"
                )
        if inc.outputs_match is not None:
            lines.append(f"  outputs of Tusk and DVC identical: {inc.outputs_match}")
        lines.append("")
    if report.throughput:
        n = report.throughput[0].datums
        lines.append(f"Throughput: {n} trivial datums, parallelism {PARALLELISM}")
        rows = [
            (
                "cmd",
                "sandbox",
                "job wall",
                "datums/s",
                "overhead/datum",
                "put to done",
                "datums/s",
                "tusk CPU/datum",
                "child CPU/datum",
            )
        ]
        for tp in report.throughput:
            rows.append(
                (
                    tp.cmd,
                    tp.sandbox,
                    fmt_s(tp.best.job_s),
                    f"{tp.rate:.1f}",
                    fmt_s(tp.overhead_s),
                    fmt_s(min(r.put_to_done_s for r in tp.runs)),
                    f"{tp.rate_put_to_done:.1f}",
                    fmt_s(tp.best.cpu_s / tp.datums),
                    fmt_s(tp.best.children_cpu_s / tp.datums),
                )
            )
        lines += table(rows)
        for cmd in TRIVIAL_CMDS:
            by = {t.sandbox: t for t in report.throughput if t.cmd == cmd}
            if "none" in by and "bwrap" in by:
                cost = by["bwrap"].overhead_s - by["none"].overhead_s
                lines.append(f"  sandbox cost per datum ({cmd}): {fmt_s(cost)}")
        lines.append("")
    if report.floor_s:
        lines.append("Floor: the same processes started from this Python, outside Tusk")
        rows = [("process", "one after another", "two at once (wall/process)")]
        for name, v in report.floor_s.items():
            rows.append((name, fmt_s(v["sequential"]), fmt_s(v["two_at_once"])))
        lines += table(rows)
        lines.append("")
    lines.append("Targets" + ("" if cfg["datums"] == FULL_DATUMS else " (indicative: not 1,000)"))
    width = max((len(t.label) for t in targets), default=0)
    for t in targets:
        verdict = {True: "PASS", False: "FAIL", None: "N/A"}[t.passed]
        lines.append(f"  {verdict:<4}  {t.label:<{width}}  {t.shown:>24}  (target {t.goal})")
    for name, path in report.profiles.items():
        lines.append(f"  profile {name}: {path}")
    for warning in report.warnings:
        lines.append(f"  WARNING: {warning}")
    lines.append("")
    return "\n".join(lines)


def to_json(report: Report, targets: list[Target]) -> dict[str, Any]:
    inc = report.incremental
    incremental = None
    if inc is not None:
        incremental = {
            **asdict(inc),
            "tusk_ratio_second_first": inc.tusk_ratio,
            "dvc_ratio_second_first": inc.dvc_ratio,
            "tusk_second_over_dvc_second": inc.tusk_vs_dvc_second,
        }
    return {
        "config": report.config,
        "incremental": incremental,
        "throughput": [
            {
                **asdict(t),
                "datums_per_s_job": t.rate,
                "datums_per_s_put_to_done": t.rate_put_to_done,
                "overhead_per_datum_s": t.overhead_s,
            }
            for t in report.throughput
        ],
        "process_floor_s": report.floor_s,
        "targets": [asdict(t) for t in targets],
        "profiles": report.profiles,
        "warnings": report.warnings,
    }


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datums", type=int, help=f"input files / datums (default {FULL_DATUMS})")
    parser.add_argument(
        "--rate-datums", type=int, help="datums of the throughput jobs (default: --datums)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="shrink the datum counts (0.05: a smoke run)"
    )
    parser.add_argument(
        "--step-parallelism",
        type=int,
        default=1,
        help="parallelism of the incremental pipeline (default 1: DVC's loop is sequential too)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each throughput job (best is kept)"
    )
    parser.add_argument("--workdir", help="work dir (default: a fresh temp dir)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    parser.add_argument("--skip-dvc", action="store_true", help="run only the Tusk half")
    parser.add_argument("--skip-bwrap", action="store_true", help="no bubblewrap rows")
    parser.add_argument("--dvc-venv", type=Path, default=DEFAULT_DVC_VENV, help="venv for dvc")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="afterwards, cProfile job 1 and the trivial no-sandbox job (all threads) into DIR",
    )
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    if args.datums is None:
        args.datums = max(10, round(FULL_DATUMS * args.scale))
    if args.rate_datums is None:
        args.rate_datums = args.datums
    if args.datums < 2 or args.rate_datums < 1:
        parser.error("--datums must be at least 2")
    if args.repeat < 1 or args.step_parallelism < 1:
        parser.error("--repeat and --step-parallelism must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import tusk  # noqa: F401
    except ImportError:
        print("error: the tusk package is not importable by this Python", file=sys.stderr)
        return 2
    try:
        root, temp = prepare_workdir(
            args.workdir, "tusk-bench-pipeline-", "bench/bench_pipeline.py"
        )
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = Report(
        config={
            "datums": args.datums,
            "rate_datums": args.rate_datums,
            "parallelism": PARALLELISM,
            "step_parallelism": args.step_parallelism,
            "repeat": args.repeat,
            "step": STEP.strip(),
            "tusk_cmd": TUSK_STEP_CMD,
            "dvc_cmd": DVC_STEP_CMD,
            "workdir": str(root),
            "tusk_version": tusk_version(),
            "tusk_sync": os.environ.get("TUSK_SYNC", "full"),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            **source_state(),
        }
    )
    opts = Options(
        root=root,
        datums=args.datums,
        rate_datums=args.rate_datums,
        step_parallelism=args.step_parallelism,
        repeat=args.repeat,
        skip_dvc=args.skip_dvc,
        skip_bwrap=args.skip_bwrap,
        dvc_venv=args.dvc_venv,
        profile_dir=args.profile,
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
    report.config["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    targets = evaluate(report)
    print(render(report, targets))
    if args.json:
        args.json.write_text(json.dumps(to_json(report, targets), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
