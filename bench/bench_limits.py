#!/usr/bin/env python3
"""Per-datum cost of enforcing resource limits (tusk.pps.resources) against not enforcing them.

The same 1,000 tiny files (``/fNNNN``, 16 bytes each) in one input repo, one datum per file
(glob ``/*``), the same trivial step (``cp "$in" "$TUSK_PFS/out/"``), ``parallelism_spec:
{constant: 2}``, in one process with ``Client.run_scheduler(once=True)``, two pipelines:

* ``plain``: no resource settings;
* ``limited``: ``resource_limits: {memory: 512Mi, cpu: 1}`` and ``datum_timeout: 10m``, so
  every datum process starts under ``prlimit --data=... --cpu=...`` (RLIMIT_DATA and
  RLIMIT_CPU = cpu x datum_timeout) and each worker takes 1 CPU of admission (the limit as
  request) before it claims datums.

Each round creates both pipelines anew (alternating which goes first) and runs them one after
the other; a job is timed over its own wall time (``started_at`` to ``finished_at``).
Reported per round and as medians: wall time, datums/s, wall per datum x parallelism (the
cost of one datum on one worker), and the ratio limited / plain. Beside it, the floor: 1,000
sequential starts of ``true`` from Python, bare and under the same ``prlimit`` prefix.

    .venv/bin/python bench/bench_limits.py                   # 1,000 datums, 3 rounds
    .venv/bin/python bench/bench_limits.py --sandbox bwrap   # the same inside bubblewrap
    .venv/bin/python bench/bench_limits.py --datums 100 --rounds 1   # smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tusk
from tusk.pps import resources

PARALLELISM = 2
CMD = ["sh", "-c", 'cp "$in" "$TUSK_PFS/out/"']
LIMITS = {"resource_limits": {"memory": "512Mi", "cpu": 1}, "datum_timeout": "10m"}


def spec(name: str, limited: bool) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": "in", "glob": "/*", "name": "in"}},
        "transform": {"cmd": CMD},
        "parallelism_spec": {"constant": PARALLELISM},
        **(LIMITS if limited else {}),
    }


def run_pipeline(c: tusk.Client, name: str, limited: bool, n: int) -> float:
    c.create_pipeline(spec(name, limited))
    c.run_scheduler(once=True)
    job = c.list_jobs(name)[0]
    if job.state != "success" or job.processed != n:
        raise SystemExit(f"{name}: job {job.state} ({job.processed}/{n}): {job.reason}")
    assert job.started_at is not None and job.finished_at is not None
    return job.finished_at - job.started_at


def spawn_floor(n: int, prefix: list[str]) -> float:
    """Seconds per sequential start of ``true`` under ``prefix``."""
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run([*prefix, "true"], check=True, start_new_session=True)
    return (time.perf_counter() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datums", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sandbox", choices=["none", "bwrap"], default="none")
    args = ap.parse_args()
    os.environ["TUSK_SANDBOX"] = args.sandbox
    n = args.datums
    m = resources.machine()
    print(
        f"{platform.python_version()} on {platform.platform()}; {m.cpus:g} CPUs, "
        f"{resources.human_bytes(m.memory)}; load average before "
        f"{os.getloadavg()[0]:.2f}; sandbox {args.sandbox}; {n} datums x {args.rounds} rounds"
    )
    rows: list[tuple[int, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="tusk-bench-limits-") as tmp:
        c = tusk.Client(Path(tmp) / "home")
        c.create_repo("in")
        c.put_files("in@master", [(f"/f{i:04d}", f"datum {i:09d}\n".encode()) for i in range(n)])
        for r in range(args.rounds):
            order = [False, True] if r % 2 == 0 else [True, False]
            took: dict[bool, float] = {}
            for with_limits in order:
                name = f"{'limited' if with_limits else 'plain'}{r}"
                took[with_limits] = run_pipeline(c, name, with_limits, n)
            rows.append((r + 1, took[False], took[True]))
        c.close()

    def per(t: float) -> float:
        return t * PARALLELISM / n * 1000

    print("\n| round | plain s | limited s | plain ms/datum | limited ms/datum | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r, one, two in rows:
        print(
            f"| {r} | {one:.2f} | {two:.2f} | {per(one):.2f} | {per(two):.2f} | {two / one:.3f} |"
        )
    plain = statistics.median(p for _, p, _ in rows)
    limited = statistics.median(q for _, _, q in rows)
    print(
        f"| median | {plain:.2f} | {limited:.2f} | {per(plain):.2f} | {per(limited):.2f} | "
        f"{limited / plain:.3f} |"
    )
    print(
        f"\ndatums/s: plain {n / plain:.0f}, limited {n / limited:.0f}; overhead per datum "
        f"(one worker): {per(limited) - per(plain):+.2f} ms; ratio limited / plain "
        f"{limited / plain:.3f}"
    )
    prefix = resources.Limits("512Mi", 512 << 20, 1.0, 600, 600.0).prefix()
    bare = spawn_floor(n, [])
    wrapped = spawn_floor(n, prefix)
    print(
        f"floor, {n} sequential starts of `true`: bare {bare * 1000:.2f} ms, under "
        f"`{' '.join(Path(prefix[0]).name if i == 0 else a for i, a in enumerate(prefix))}` "
        f"{wrapped * 1000:.2f} ms ({(wrapped - bare) * 1000:+.2f} ms)"
    )
    print(f"load average after {os.getloadavg()[0]:.2f}; {sys.executable}")


if __name__ == "__main__":
    main()
