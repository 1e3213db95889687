#!/usr/bin/env python3
"""Benchmark Tusk's Dask executor against the local executor on the same 1,000-datum pipeline.

One run, the same generated files for both executors (the data of ``bench_pipeline.py``):

* ``step``: 1,000 text files of ~1 KiB (fixed seed), glob ``/*`` (one datum per file), the
  small CPU step of ``bench_pipeline.py`` part 1: ``sort FILE | sha256sum > OUT/NAME.sha256``.
* ``true``: the same 1,000 files, the trivial datum ``true`` (part 2), which shows the
  executor's own cost per datum.

Both with ``parallelism_spec: {constant: 2}`` and no sandbox, through
``Client.run_scheduler(once=True, sandbox="none", executor=...)`` in this process:

* ``local``: datums are processes of this process (the default executor).
* ``dask``: a ``dask.distributed.LocalCluster`` with 2 worker processes of 1 thread each,
  started once by this script (its scheduler runs in this process, as ``LocalCluster`` does),
  passed as ``executor="dask://127.0.0.1:PORT"``.  The cluster's start-up (and the workers'
  first import of Tusk) is timed and reported on its own, never inside a job.
* ``dask-shm`` (only with ``--dask-shm``, a diagnostic): the same cluster with the workers'
  temp dir set to /dev/shm, where the local executor lays out small batches (a Dask worker
  uses the default temp dir, /tmp).

Each (workload, executor) runs ``--repeat`` times (default 3), each time on a fresh Tusk
home and repo, the executors taking turns to go first.  Reported: the job's own wall time
(``started_at`` to ``finished_at``) and from the start of the put to ``finished_at``, best
and median, datums/s, and dask / local.  Where the time goes, measured during the timed runs:
per batch of datums the scheduler's wall time in the executor and in recording the batch;
for Dask the workers' compute time per task (Dask's task stream) and the time to open the
stores; in this process and in the workers alike the time in ``run_batch``, in laying out
the inputs and in each datum's process (``install_batch_timers``); the round trip of an
empty Dask task; the CPU time of this process, of the Dask workers and of the datums'
processes (psutil).

A run whose job fails is listed as a failed run and done again on a fresh home (3 tries in
all).  Exits 0 with the report, non-zero only when a step fails 3 times.  Run it with the
interpreter that has Tusk and ``dask[distributed]`` (the ``dask`` or ``test`` extra)::

    .venv/bin/python bench/bench_dask.py               # full size: 1,000 datums, ~1.5 min
    .venv/bin/python bench/bench_dask.py --dask-shm    # and the diagnostic, ~2 min
    .venv/bin/python bench/bench_dask.py --scale 0.1   # smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench_pipeline import (
    FULL_DATUMS,
    PARALLELISM,
    TRIVIAL_CMDS,
    TUSK_STEP_CMD,
    JobRun,
    fmt_s,
    fmt_x,
    log,
    pipeline_spec,
    run_job,
    source_state,
    table,
    tusk_version,
    write_inputs,
)
from bench_store import BenchError, clear_dir, prepare_workdir

WORKERS = 2
WORKLOADS: dict[str, list[str]] = {"step": TUSK_STEP_CMD, "true": TRIVIAL_CMDS["true"]}
TRIES = 3  # a run whose job fails is rerun (and reported) up to this many times in all
ROUND_TRIPS = 50  # empty Dask tasks timed for the round-trip floor
SHM = "/dev/shm"  # the dask-shm diagnostic's temp dir for the workers


class JobFailed(BenchError):
    pass


# --------------------------------------------------------------------------
# Timers: in this process (the scheduler's batches) and in the Dask workers
# --------------------------------------------------------------------------


@dataclass
class Batch:
    datums: int
    run_s: float  # Scheduler._run_batch: executor + recording
    record_s: float  # Scheduler._record: the batch's one transaction

    @property
    def executor_s(self) -> float:
        return self.run_s - self.record_s


@contextmanager
def scheduler_timers() -> Iterator[tuple[list[Batch], list[float]]]:
    """Time each batch of the scheduler (``Scheduler._run_batch`` and its ``_record``) and
    each ``DaskExecutor`` construction (the Dask client's connect), by wrapping the methods."""
    from tusk.pps.dask_executor import DaskExecutor
    from tusk.pps.scheduler import Scheduler

    batches: list[Batch] = []
    connects: list[float] = []
    recorded = threading.local()
    orig_run, orig_record, orig_init = (
        Scheduler._run_batch,
        Scheduler._record,
        DaskExecutor.__init__,
    )

    def run_batch(self: Any, job: Any, owner: str, batch: list[Any]) -> None:
        recorded.s = 0.0
        start = time.perf_counter()
        orig_run(self, job, owner, batch)
        batches.append(Batch(len(batch), time.perf_counter() - start, recorded.s))

    def record(self: Any, *args: Any) -> None:
        start = time.perf_counter()
        orig_record(self, *args)
        recorded.s = time.perf_counter() - start

    def init(self: Any, *args: Any) -> None:
        start = time.perf_counter()
        orig_init(self, *args)
        connects.append(time.perf_counter() - start)

    patches = [
        (Scheduler, "_run_batch", run_batch, orig_run),
        (Scheduler, "_record", record, orig_record),
        (DaskExecutor, "__init__", init, orig_init),
    ]
    for cls, name, timed, _orig in patches:
        setattr(cls, name, timed)
    try:
        yield batches, connects
    finally:
        for cls, name, _timed, orig in patches:
            setattr(cls, name, orig)


def install_batch_timers() -> int:
    """Time the parts of a batch wherever batches run: this process (local executor) and
    each Dask worker (``client.run``).  Wraps ``tusk.pps.batch.materialize`` (input files
    into the scratch folder), ``LocalExecutor.run`` (one datum's process, start to exit) and,
    ``run_batch`` as the scheduler (local) and ``remote_batch`` (Dask) call it, and
    ``_pfs_for`` (a worker opening the stores: the first call per home).  The times go to
    a list on ``tusk.pps.batch``."""
    import time as _time

    import tusk.pps.batch as batch
    import tusk.pps.dask_executor as de
    import tusk.pps.scheduler as sched
    from tusk.pps.executor import LocalExecutor

    if getattr(batch, "_bench_times", None) is not None:
        return os.getpid()
    times: list[tuple[str, float, int]] = []
    orig_mat, orig_exec = batch.materialize, LocalExecutor.run
    orig_open, orig_run = de._pfs_for, de.run_batch

    def timed(kind: str, func: Any, count: Callable[..., int]) -> Any:
        def wrapper(*args: Any) -> Any:
            start = _time.perf_counter()
            out = func(*args)
            times.append((kind, _time.perf_counter() - start, count(*args)))
            return out

        return wrapper

    def timed_open(spec: Any) -> Any:
        kind = "open_cached" if spec in de._OPEN else "open"
        return timed(kind, orig_open, lambda *_: 0)(spec)

    batch.materialize = timed("materialize", orig_mat, lambda _p, _t, work: len(work))
    LocalExecutor.run = timed("process", orig_exec, lambda *_: 1)  # type: ignore[method-assign]
    de._pfs_for = timed_open
    de.run_batch = timed("run_batch", orig_run, lambda *a: len(a[4]))
    sched.run_batch = timed("run_batch", sched.run_batch, lambda *a: len(a[4]))
    batch._bench_times = times  # type: ignore[attr-defined]
    return os.getpid()


def take_batch_times() -> list[tuple[str, float, int]]:
    import tusk.pps.batch as batch

    times: list[tuple[str, float, int]] = getattr(batch, "_bench_times", None) or []
    out = list(times)
    times.clear()
    return out


def worker_import_tusk() -> int:
    import tusk.pfs
    import tusk.pps.batch
    import tusk.pps.dask_executor
    import tusk.pps.executor
    import tusk.storage.store  # noqa: F401

    return os.getpid()


def noop(i: int) -> int:
    return i


def set_worker_tmp(folder: str | None) -> str:
    """Runs in each Dask worker: the temp dir ``remote_batch`` lays batches out in (None: the
    default, ``$TMPDIR`` or /tmp).  Only for the ``dask-shm`` diagnostic."""
    import tempfile

    tempfile.tempdir = folder
    return tempfile.gettempdir()


# --------------------------------------------------------------------------
# CPU of this process and its descendants
# --------------------------------------------------------------------------


@dataclass
class Cpu:
    here: float  # this process: Tusk's scheduler, the Dask scheduler and client threads
    dask: float  # the Dask workers and nannies themselves
    datums: float  # reaped child processes: the datums' processes (and their children)

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.here - other.here, self.dask - other.dask, self.datums - other.datums)

    @property
    def total(self) -> float:
        return self.here + self.dask + self.datums


def cpu_now() -> Cpu:
    import psutil

    me = psutil.Process()
    t = me.cpu_times()
    dask = 0.0
    datums = t.children_user + t.children_system
    for child in me.children(recursive=True):
        try:
            c = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        dask += c.user + c.system
        datums += c.children_user + c.children_system
    return Cpu(t.user + t.system, dask, datums)


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass
class Run:
    job: JobRun
    cpu: Cpu
    batches: list[Batch]
    connect_s: float | None = None  # DaskExecutor(): the Dask client's connect
    tasks: int = 0  # Dask tasks of the job (task stream)
    task_compute_s: float = 0.0  # their "compute" time on the workers
    task_other_s: dict[str, float] = field(default_factory=dict)  # other startstops
    result_bytes: int = 0  # size of the results, per Dask
    # Where the batches ran (this process or the workers): seconds and counts by kind:
    # run_batch, materialize, process (one per datum), open (stores; first batch per worker).
    parts_s: dict[str, float] = field(default_factory=dict)
    parts_n: dict[str, int] = field(default_factory=dict)

    @property
    def executor_s(self) -> float:
        return sum(b.executor_s for b in self.batches)

    @property
    def record_s(self) -> float:
        return sum(b.record_s for b in self.batches)


@dataclass
class Series:
    workload: str
    executor: str
    datums: int
    runs: list[Run] = field(default_factory=list)

    def job_times(self) -> list[float]:
        return [r.job.job_s for r in self.runs]

    def put_to_done(self) -> list[float]:
        return [r.job.put_to_done_s for r in self.runs]

    @property
    def median_run(self) -> Run:
        ordered = sorted(self.runs, key=lambda r: r.job.job_s)
        return ordered[(len(ordered) - 1) // 2]


@dataclass
class Report:
    config: dict[str, Any]
    cluster_start_s: float | None = None
    worker_import_s: float | None = None
    round_trip_s: list[float] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    outputs_match: bool | None = None
    failed_runs: list[str] = field(default_factory=list)  # failed, then run again
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------


class Bench:
    def __init__(
        self, root: Path, datums: int, repeat: int, executors: list[str], report: Report
    ) -> None:
        self.executors = executors
        self.dask_client: Any = None
        self.root = root
        self.data = root / "data"
        self.datums = datums
        self.repeat = repeat
        self.report = report
        self.digests: dict[str, str] = {}

    def start_cluster(self) -> tuple[Any, Any, str]:
        import distributed

        log(f"starting a LocalCluster: {WORKERS} worker processes, 1 thread each")
        start = time.perf_counter()
        cluster = distributed.LocalCluster(
            n_workers=WORKERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = distributed.Client(cluster)
        client.wait_for_workers(WORKERS)
        self.report.cluster_start_s = time.perf_counter() - start
        start = time.perf_counter()
        client.run(worker_import_tusk)
        self.report.worker_import_s = time.perf_counter() - start
        install_batch_timers()
        client.run(install_batch_timers)
        client.get_task_stream()  # installs the scheduler's task-stream plugin
        for i in range(ROUND_TRIPS):
            start = time.perf_counter()
            client.submit(noop, i, pure=False).result()
            self.report.round_trip_s.append(time.perf_counter() - start)
        address = cluster.scheduler_address.replace("tcp://", "dask://")
        self.report.config["dask_scheduler"] = address
        self.report.config["dask_version"] = distributed.__version__
        return cluster, client, address

    def one_run(
        self, workload: str, executor: str, url: str, attempt: int, dask_client: Any
    ) -> Run:
        import tusk

        home = self.root / f"tusk-home-{workload}-{executor}-{attempt}-{time.time_ns()}"
        log(f"{workload}: {self.datums} datums, executor {executor}, run {attempt + 1}")
        with tusk.Client(home) as client:
            client.create_repo("in")
            client.create_pipeline(
                pipeline_spec("p", WORKLOADS[workload], PARALLELISM), working_dir=self.root
            )
            dask_client.run(set_worker_tmp, SHM if executor == "dask-shm" else None)
            take_batch_times()  # drop anything from before
            dask_client.run(take_batch_times)
            wall0 = time.time()
            cpu0 = cpu_now()
            with scheduler_timers() as (batches, connects):
                job = run_job(
                    client,
                    "p",
                    lambda: client.put_dir("in@master:/", self.data),
                    "none",
                    executor=url,
                )
            cpu1 = cpu_now()
            wall1 = time.time()
            if job.state != "success" or job.processed != self.datums:
                raise JobFailed(
                    f"{workload} on {executor} ended {job.state} with {job.processed} of "
                    f"{self.datums} processed: {job.reason}"
                )
            if workload == "step" and executor not in self.digests:
                self.digests[executor] = self.output_digest(client)
        shutil.rmtree(home, ignore_errors=True)
        run = Run(job, cpu1 - cpu0, list(batches), connects[0] if connects else None)
        here = take_batch_times()
        workers = [t for times in dask_client.run(take_batch_times).values() for t in times]
        for kind, seconds, n in here if executor == "local" else workers:
            run.parts_s[kind] = run.parts_s.get(kind, 0.0) + seconds
            run.parts_n[kind] = run.parts_n.get(kind, 0) + (n if kind == "run_batch" else 1)
        if executor == "local" and any(k != "open_cached" for k, _s, _n in workers):
            self.report.warnings.append(f"{workload} local run {attempt + 1}: Dask worked")
        for task in dask_client.get_task_stream(start=wall0, stop=wall1):
            if not str(task.get("key", "")).startswith("remote_batch"):
                continue
            run.tasks += 1
            run.result_bytes += int(task.get("nbytes", 0))
            for ss in task.get("startstops", ()):
                seconds = ss["stop"] - ss["start"]
                if ss["action"] == "compute":
                    run.task_compute_s += seconds
                else:
                    run.task_other_s[ss["action"]] = run.task_other_s.get(ss["action"], 0) + seconds
        if executor != "local" and run.tasks != len(run.batches):
            self.report.warnings.append(
                f"{workload} run {attempt + 1}: {run.tasks} Dask tasks in the task stream for "
                f"{len(run.batches)} batches"
            )
        return run

    def run_with_retries(self, workload: str, executor: str, url: str, attempt: int) -> Run:
        """A failed job is reported and its run done again on a fresh home."""
        for tries in range(1, TRIES + 1):
            try:
                return self.one_run(workload, executor, url, attempt, self.dask_client)
            except JobFailed as exc:
                self.report.failed_runs.append(f"{time.strftime('%H:%M:%S')} {exc}")
                log(f"FAILED ({tries} of {TRIES} tries): {exc}")
                if tries == TRIES:
                    raise
        raise AssertionError("unreachable")

    def output_digest(self, client: Any) -> str:
        h = hashlib.sha256()
        files = sorted(f.path for f in client.list_files("p@master:/"))
        if len(files) != self.datums:
            self.report.warnings.append(f"{len(files)} output files, expected {self.datums}")
        for path in files:
            h.update(path.encode() + b"\0" + client.get_file(f"p@master:{path}"))
        return h.hexdigest()

    def run(self) -> None:
        log(f"generating {self.datums} input files in {self.data}")
        self.report.config["input_bytes"] = write_inputs(self.data, self.datums)
        os.sync()
        cluster, dask_client, url = self.start_cluster()
        self.dask_client = dask_client
        try:
            self.report.config["dask_workers"] = sorted(dask_client.run(os.getpid).values())
            series = {(w, e): Series(w, e, self.datums) for w in WORKLOADS for e in self.executors}
            self.report.series = list(series.values())
            for attempt in range(self.repeat):
                turn = attempt % len(self.executors)
                order = self.executors[turn:] + self.executors[:turn]
                for workload in WORKLOADS:
                    for executor in order:
                        run = self.run_with_retries(
                            workload, executor, "local" if executor == "local" else url, attempt
                        )
                        series[(workload, executor)].runs.append(run)
        finally:
            dask_client.close()
            cluster.close()
        if len(self.digests) > 1:
            self.report.outputs_match = len(set(self.digests.values())) == 1
            if not self.report.outputs_match:
                self.report.warnings.append("the step's outputs differ between the executors")


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def phases(seconds: dict[str, float]) -> str:
    return ", ".join(f"{k} {fmt_s(v)}" for k, v in sorted(seconds.items())) or "none"


def per_batch(total: float, batches: int) -> str:
    return f"{fmt_s(total)} ({fmt_s(total / batches)}/batch)"


def render(report: Report) -> str:
    cfg = report.config
    lines = [
        "",
        "Tusk pipeline: local executor vs Dask LocalCluster",
        f"  datums {cfg['datums']}  parallelism {cfg['parallelism']}  runs {cfg['repeat']} each"
        f"  tusk {cfg['tusk_version']} ({cfg.get('git_head', '?')}"
        f"{', src modified' if cfg.get('src_changed_files') else ''})  dask"
        f" {cfg.get('dask_version', '-')}  python {cfg['python']}  cpus {cfg['cpus']}",
        f"  load average (1, 5, 15 min) at start {cfg['loadavg_start']}, at end"
        f" {cfg.get('loadavg_end')}",
        "",
        f"Cluster ({WORKERS} worker processes x 1 thread, scheduler in this process), not in"
        " any job time:",
        f"  LocalCluster start until {WORKERS} workers ready: {fmt_s(report.cluster_start_s)};"
        f" workers' first import of Tusk: {fmt_s(report.worker_import_s)}",
    ]
    if report.round_trip_s:
        rt = report.round_trip_s
        lines.append(
            f"  empty task round trip (submit -> result, {len(rt)} in a row): median"
            f" {fmt_s(median(rt))}, min {fmt_s(min(rt))}"
        )
    lines.append("")
    by = {(s.workload, s.executor): s for s in report.series}
    for workload in WORKLOADS:
        ran = [s for s in report.series if s.workload == workload and s.runs]
        local = by.get((workload, "local"))
        if local is None or not local.runs or len(ran) < 2:
            continue
        what = "sort FILE | sha256sum" if workload == "step" else "true"
        lines.append(f"{workload}: {local.datums} datums of `{what}`")
        rows: list[tuple[str, ...]] = [
            (
                "executor",
                "job best",
                "job median",
                "datums/s (best)",
                "put to done best",
                "put to done median",
                "all job times",
            )
        ]
        for s in ran:
            jobs, p2d = s.job_times(), s.put_to_done()
            rows.append(
                (
                    s.executor,
                    fmt_s(min(jobs)),
                    fmt_s(median(jobs)),
                    f"{s.datums / min(jobs):.1f}",
                    fmt_s(min(p2d)),
                    fmt_s(median(p2d)),
                    ", ".join(f"{t:.2f}" for t in jobs),
                )
            )
        lj, lp = local.job_times(), local.put_to_done()
        for s in ran:
            if s is local:
                continue
            dj, dp = s.job_times(), s.put_to_done()
            rows.append(
                (
                    f"{s.executor} / local",
                    fmt_x(min(dj) / min(lj)),
                    fmt_x(median(dj) / median(lj)),
                    fmt_x(min(lj) / min(dj)),
                    fmt_x(min(dp) / min(lp)),
                    fmt_x(median(dp) / median(lp)),
                    "",
                )
            )
        lines += table(rows)
        lines.append(
            "  where the time goes, median run of each (sums over the job's batches; the"
            " scheduler's 2 threads overlap):"
        )
        rows = [
            (
                "executor",
                "job",
                "batches",
                "in executor",
                "recording",
                "task compute",
                "rest of round trip",
                "CPU here/dask/datums",
                "CPU busy (x cpus)",
            )
        ]
        for s in ran:
            r = s.median_run
            n = len(r.batches) or 1
            is_dask = s.executor != "local"
            rows.append(
                (
                    s.executor,
                    fmt_s(r.job.job_s),
                    f"{len(r.batches)}",
                    per_batch(r.executor_s, n),
                    fmt_s(r.record_s),
                    fmt_s(r.task_compute_s) if is_dask else "-",
                    per_batch(r.executor_s - r.task_compute_s, n) if is_dask else "-",
                    f"{r.cpu.here:.2f}/{r.cpu.dask:.2f}/{r.cpu.datums:.2f} s",
                    f"{r.cpu.total / (r.job.scheduler_return_s * (os.cpu_count() or 1)):.2f}",
                )
            )
        lines += table(rows)
        rows = [
            (
                "run_batch in",
                "run_batch",
                "per datum",
                "open stores",
                "inputs to scratch",
                "datum process",
                "rest (outputs, pack, cleanup)",
            )
        ]
        for s in ran:
            r = s.median_run
            d = max(1, r.parts_n.get("run_batch", 0))
            rb = r.parts_s.get("run_batch", 0.0)
            mat, proc = r.parts_s.get("materialize", 0.0), r.parts_s.get("process", 0.0)
            opened = r.parts_s.get("open", 0.0)
            rows.append(
                (
                    "this process (local)" if s is local else f"Dask workers ({s.executor})",
                    fmt_s(rb),
                    fmt_s(rb / d),
                    f"{fmt_s(opened)} ({r.parts_n.get('open', 0)}x)" if opened else "-",
                    f"{fmt_s(mat / d)}/datum",
                    f"{fmt_s(proc / d)}/datum",
                    f"{fmt_s((rb - mat - proc) / d)}/datum",
                )
            )
        lines += table(rows)
        for s in ran:
            if s is local:
                continue
            r = s.median_run
            lines.append(
                f"  {s.executor}: client connect {fmt_s(r.connect_s)} (before the job starts);"
                f" results {r.result_bytes / 1024:.0f} KiB in {r.tasks} tasks; other task"
                f" phases {phases(r.task_other_s)}"
            )
        lines.append("")
    if report.outputs_match is not None:
        lines.append(f"step outputs identical between executors: {report.outputs_match}")
    for failure in report.failed_runs:
        lines.append(f"  FAILED RUN (run again, not in the tables): {failure}")
    for warning in report.warnings:
        lines.append(f"  WARNING: {warning}")
    lines.append("")
    return "\n".join(lines)


def to_json(report: Report) -> dict[str, Any]:
    out = asdict(report)
    for s in out["series"]:
        jobs = [r["job"]["job_s"] for r in s["runs"]]
        p2d = [r["job"]["put_to_done_s"] for r in s["runs"]]
        s["job_s_best"], s["job_s_median"] = min(jobs), median(jobs)
        s["put_to_done_s_best"], s["put_to_done_s_median"] = min(p2d), median(p2d)
    return out


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datums", type=int, help=f"input files / datums (default {FULL_DATUMS})")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="shrink the datum count (0.1: a smoke run)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each workload and executor (default 3)"
    )
    parser.add_argument(
        "--dask-shm",
        action="store_true",
        help=f"also run Dask with the workers' temp dir on {SHM} (a diagnostic: the local "
        "executor lays small batches out there, Dask workers in the default temp dir)",
    )
    parser.add_argument("--workdir", help="work dir (default: a fresh temp dir)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    if args.datums is None:
        args.datums = max(10, round(FULL_DATUMS * args.scale))
    if args.datums < 1 or args.repeat < 1:
        parser.error("--datums and --repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import distributed  # noqa: F401
        import psutil  # noqa: F401  (a dependency of distributed)

        import tusk  # noqa: F401
    except ImportError as exc:
        print(f"error: {exc}: this needs Tusk with dask[distributed]", file=sys.stderr)
        return 2
    try:
        root, temp = prepare_workdir(args.workdir, "tusk-bench-dask-", "bench/bench_dask.py")
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = Report(
        config={
            "datums": args.datums,
            "parallelism": PARALLELISM,
            "repeat": args.repeat,
            "workloads": WORKLOADS,
            "sandbox": "none",
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
    try:
        executors = ["local", "dask"] + (["dask-shm"] if args.dask_shm else [])
        report.config["executors"] = executors
        Bench(root, args.datums, args.repeat, executors, report).run()
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
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(to_json(report), indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
