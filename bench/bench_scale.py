"""Scale check: a 100,000- and a 1,000,000-file repo stay fast, on SQLite and PostgreSQL.

Builds a repo of N small files (each its own content, ``row <i>``: N chunks in the index, so
fsck has as many chunks as files to check), nested as ``/dNNN/fNNNNNNN.txt``
(1,000 files per directory: 100 directories at 100k, 1,000 at 1M) or flat (``--layout flat``,
one directory of N), with a pipeline ``scan`` whose input is the repo with glob ``/*`` (one
datum per directory). Then it prints, per scale and engine, each against its target:

- build: the one commit of N files (in-process ``put_files``), and the pipeline's first job;
- one-file commit: ``tusk put file`` (a subprocess, start-up included) and in-process;
- incremental job start: from the commit (the job's ``created_at``: the input commit's
  transaction opens the job's output commit) to the job's ``started_at`` (its datums computed
  and recorded, the unchanged ones skipped); the scheduler runs in this process (polls every
  0.1 s);
- ``tusk diff file`` of that commit (CLI and in-process);
- ``tusk list file`` of one directory of 1,000 entries, ``tusk glob file`` of one file;
- ``tusk fsck``: wall time and the subprocess's peak RSS (``/usr/bin/time -f %M``).

CLI rows are wall times of a ``tusk`` subprocess, so they include Python's start-up and
imports (``tusk version`` alone is printed as ``cli start-up`` for reference); the read rows
(diff, list, glob) are the median of 3 runs, each after a sync. Next to them, the library
floor of the engine: a Python process that only imports what any command on that store
must (click, SQLAlchemy and the engine's dialect, with psycopg for PostgreSQL), with the
collector off as the ``tusk`` command has it while it loads; median of 5, measured between
the list and glob rows. No CLI row can be faster than it.

    .venv/bin/python bench/bench_scale.py                      # 100k and 1M, SQLite and PG
    .venv/bin/python bench/bench_scale.py --scales 100000 --engines sqlite   # quick
    .venv/bin/python bench/bench_scale.py --layout flat --scales 1000000
    .venv/bin/python bench/bench_scale.py --json scale.json

It exits 0 whether targets pass or not (a report), non-zero only when a step fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import tusk
from bench_startup import engine_floor
from peak import run_with_peak
from servers import postgres

PER_DIR = 1000

# name -> (limit, unit); time rows are seconds, rss is MB (10^6 bytes).
TARGETS: dict[str, tuple[float, str]] = {
    "commit_cli_s": (1.0, "s"),
    "commit_sdk_s": (1.0, "s"),
    "job_start_cli_s": (1.0, "s"),
    "job_start_sdk_s": (1.0, "s"),
    "diff_cli_s": (0.5, "s"),
    "diff_sdk_s": (0.5, "s"),
    "list_cli_s": (0.3, "s"),
    "list_sdk_s": (0.3, "s"),
    "glob_cli_s": (0.3, "s"),
    "glob_sdk_s": (0.3, "s"),
    "fsck_rss_mb": (200.0, "MB"),
}


def tusk_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "tusk"
    return [str(exe)] if exe.exists() else ["tusk"]


def path_of(i: int, n: int, layout: str) -> str:
    if layout == "flat":
        return f"/all/f{i:07d}.txt"
    return f"/d{i // PER_DIR:03d}/f{i:07d}.txt"


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(self, *args: str) -> tuple[float, str]:
        t0 = time.perf_counter()
        out = subprocess.run(
            [*tusk_cmd(), *args], env=self.env, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(f"tusk {' '.join(args)} failed: {out.stderr.strip()}")
        return wall, out.stdout

    def read(self, *args: str, runs: int = 3) -> tuple[float, str]:
        """Median wall seconds of ``runs`` runs of a read-only command, each after a sync (so
        the writeback of what the benchmark just wrote is not billed to it), and its stdout."""
        results = []
        for _ in range(runs):
            os.sync()
            results.append(self.run(*args))
        results.sort(key=lambda run: run[0])
        return results[len(results) // 2]

    def lib_floor(self, engine: str, runs: int = 5) -> float:
        """Median wall seconds of a process importing only the libraries any command on
        ``engine``'s store needs (bench_startup.engine_floor)."""
        walls = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(engine_floor(engine), env=self.env, check=True)
            walls.append(time.perf_counter() - t0)
        return sorted(walls)[len(walls) // 2]

    def peak_rss(self, *args: str) -> tuple[float, int, str]:
        """Wall seconds, peak RSS in bytes (bench/peak.py), stdout of ``tusk args``."""
        wall, peak, out = run_with_peak([*tusk_cmd(), *args], self.env)
        if out.returncode != 0:
            raise RuntimeError(f"tusk {' '.join(args)} failed: {out.stderr.strip()}")
        return wall, peak, out.stdout


def wait_job(
    c: tusk.Client, pipeline: str, known: set[str], state: str, timeout: float = 3600
) -> tuple[float, Any]:
    """Poll (every 2 ms) for a job not in ``known`` reaching ``state`` (or done)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for j in c.list_jobs(pipeline):
            if j.id in known:
                continue
            if j.state == state or j.done:
                return time.perf_counter(), j
        time.sleep(0.002)
    raise RuntimeError(f"no job of {pipeline} reached {state} in {timeout} s")


def wait_done(c: tusk.Client, pipeline: str, job_id: str, timeout: float = 3600) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        j = c.inspect_job(f"{pipeline}@{job_id}")
        if j.done:
            if j.state != "success":
                raise RuntimeError(f"job {pipeline}@{job_id} {j.state}: {j.reason}")
            return j
        time.sleep(0.02)
    raise RuntimeError(f"job {pipeline}@{job_id} did not finish in {timeout} s")


def run(
    n: int, layout: str, engine: str, workdir: Path, pipeline: bool, keep: bool = False
) -> dict[str, Any]:
    r: dict[str, Any] = {"files": n, "layout": layout, "engine": engine}
    with ExitStack() as stack:
        home = workdir / f"home-{engine}-{n}"
        env = {**os.environ, "TUSK_HOME": str(home)}
        env.pop("TUSK_ADDRESS", None)
        if engine == "postgres":
            env["TUSK_METADATA_URL"] = stack.enter_context(postgres())
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        stack.callback(lambda: (os.environ.clear(), os.environ.update(saved)))
        cli = Cli(env)
        r["cli_startup_s"] = round(min(cli.run("version")[0] for _ in range(3)), 3)
        c = stack.enter_context(tusk.Client(home))
        c.create_repo("big")
        if pipeline:
            c.create_pipeline(
                {
                    "pipeline": {"name": "scan"},
                    "input": {"pfs": {"repo": "big", "glob": "/*", "empty_files": True}},
                    "transform": {"cmd": ["true"]},
                }
            )
        t0 = time.perf_counter()
        c.put_files(
            "big@master",
            ((path_of(i, n, layout), f"row {i}\n".encode()) for i in range(n)),
        )
        r["build_s"] = round(time.perf_counter() - t0, 2)
        r["commit_files"] = c.inspect_commit("big@master").files

        stop = threading.Event()
        sched: threading.Thread | None = None
        known: set[str] = set()
        if pipeline:
            sched = threading.Thread(target=c.run_scheduler, args=(stop,), daemon=True)
            sched.start()
            t1 = time.perf_counter()
            _, job = wait_job(c, "scan", known, "running")
            job = wait_done(c, "scan", job.id)
            known.add(job.id)
            r["first_job_s"] = round(time.perf_counter() - t1, 2)
            r["first_job_datums"] = job.datums_total

        def one_commit(how: str, target: str) -> None:
            if how == "cli":
                local = workdir / "changed.txt"
                local.write_bytes(f"changed {time.time()}\n".encode())
                wall, _ = cli.run("put", "file", f"big@master:{target}", "-f", str(local))
            else:
                t = time.perf_counter()
                c.put_file(f"big@master:{target}", f"changed {time.time()}\n".encode())
                wall = time.perf_counter() - t
            r[f"commit_{how}_s"] = round(wall, 4)
            if pipeline:
                _, job = wait_job(c, "scan", known, "running")
                known.add(job.id)
                job = c.inspect_job(f"scan@{job.id}")
                # created_at is when the commit opened the job's output commit (the input
                # commit's own transaction), started_at when its datums were recorded.
                r[f"job_start_{how}_s"] = round(job.started_at - job.created_at, 4)
                info = wait_done(c, "scan", job.id)
                r[f"job_{how}_datums"] = f"{info.processed} run, {info.skipped} skipped"

        nodes_before = c.stats()["nodes"]
        mid = path_of(n // 2 + 123, n, layout)
        one_commit("cli", mid)
        r["nodes_added"] = c.stats()["nodes"] - nodes_before
        # The diff rows time the CLI commit's change (master against its parent).
        diff_wall, out = cli.read("diff", "file", "big@master", "big@master^1")
        assert mid in out, out
        r["diff_cli_s"] = round(diff_wall, 4)
        t = time.perf_counter()
        diff = c.diff_file("big@master", "big@master^1")
        r["diff_sdk_s"] = round(time.perf_counter() - t, 4)
        assert [d.path for d in diff] == [mid], diff
        one_commit("sdk", path_of(n // 3 + 7, n, layout))
        stop.set()
        if sched is not None:
            sched.join()

        d = mid.rsplit("/", 1)[0]
        wall, out = cli.read("list", "file", f"big@master:{d}", "-o", "json")
        r["list_entries"] = len(json.loads(out))
        r["list_cli_s"] = round(wall, 4)
        t = time.perf_counter()
        listed = c.list_files(f"big@master:{d}")
        r["list_sdk_s"] = round(time.perf_counter() - t, 4)
        assert len(listed) == r["list_entries"], len(listed)
        r["lib_floor_s"] = round(cli.lib_floor(engine), 4)
        wall, out = cli.read("glob", "file", f"big@master:{mid}", "-o", "json")
        assert [f["path"] for f in json.loads(out)] == [mid], out
        r["glob_cli_s"] = round(wall, 4)
        t = time.perf_counter()
        globbed = c.glob_files(f"big@master:{mid}")
        r["glob_sdk_s"] = round(time.perf_counter() - t, 4)
        assert [f.path for f in globbed] == [mid], globbed
        c.close()
        wall, rss, out = cli.peak_rss("fsck")
        r["fsck_s"] = round(wall, 2)
        r["fsck_rss_mb"] = round(rss / 1e6, 1)
        r["fsck_out"] = out.strip().splitlines()[:3]
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
    return r


def report(results: list[dict[str, Any]]) -> None:
    for r in results:
        print(f"\n== {r['files']:,} files, {r['layout']}, {r['engine']} ==")
        print(f"  cli start-up (tusk version)     {r['cli_startup_s']} s")
        print(f"  build (one commit)              {r['build_s']} s ({r['commit_files']:,} files)")
        if "first_job_s" in r:
            print(f"  first job, glob /*              {r['first_job_s']} s")
            print(f"                                  ({r['first_job_datums']} datums)")
        print(f"  tree nodes added by 1-file put  {r['nodes_added']}")
        for key, (limit, unit) in TARGETS.items():
            if key not in r:
                continue
            value = r[key]
            verdict = "PASS" if value <= limit else "FAIL"
            print(f"  {key:30}  {value:>9} {unit:2}  <= {limit:g}  {verdict}")
        for how in ("cli", "sdk"):
            if f"job_{how}_datums" in r:
                print(f"  job after {how} commit              {r[f'job_{how}_datums']}")
        print(f"  list entries                    {r['list_entries']}")
        if "lib_floor_s" in r:
            print(f"  library floor (CLI rows' least) {r['lib_floor_s']} s")
        print(f"  fsck wall                       {r['fsck_s']} s: {' / '.join(r['fsck_out'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--scales", default="100000,1000000", help="comma-separated file counts")
    ap.add_argument("--engines", default="sqlite,postgres")
    ap.add_argument("--layout", choices=["nested", "flat"], default="nested")
    ap.add_argument("--no-pipeline", action="store_true", help="skip the pipeline rows")
    ap.add_argument("--workdir", type=Path, help="kept, with the SQLite homes built in it")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tusk-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for n in (int(s) for s in args.scales.split(",")):
            for engine in args.engines.split(","):
                keep = args.workdir is not None and engine == "sqlite"
                r = run(n, args.layout, engine, workdir, not args.no_pipeline, keep)
                results.append(r)
                report([r])
                sys.stdout.flush()
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\nsummary")
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
