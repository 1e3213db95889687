"""Shared by the benchmarks: a process's wall time and its own peak RSS.

The peak comes from ``/usr/bin/time -f %M``, whose child is forked from that small process. A
child a benchmark starts itself reports at least the benchmark's own peak as its
``ru_maxrss`` (Linux carries the high-water mark of the spawning process's memory across
``exec``): 22.7 MB for ``python -c pass`` under bench_startup, the benchmark's whole
million-file client under bench_scale.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path


def run_with_peak(
    argv: list[str], env: dict[str, str]
) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """(wall seconds, peak RSS in bytes, the finished process with its text output) of
    ``argv``; the caller checks its return code."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        t0 = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", str(peak_file), *argv],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t0
        kib = int(peak_file.read_text().split()[-1])
    return wall, kib * 1024, done
