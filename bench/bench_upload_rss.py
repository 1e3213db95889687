#!/usr/bin/env python3
"""Server memory while a big file streams in: ``put_file`` of N GiB through ``tusk serve``.

Issue 4's target: putting a 5 GiB file keeps the server under 300 MiB RSS. Prints the server
process's peak RSS (VmHWM) before and after the upload, and the upload's throughput.

    .venv/bin/python bench/bench_upload_rss.py [--gib 5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "api"), str(ROOT / "tests")]

from apihelpers import spawn  # noqa: E402 - the tests' helper that starts `tusk serve`

import tusk  # noqa: E402


def peak_rss_mib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) // 1024  # type: ignore[union-attr]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=5.0)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tusk-bench-rss-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        src = work / "big.bin"
        size = int(args.gib * (1 << 30))
        block = os.urandom(1 << 24)
        with open(src, "wb") as f:
            for i in range(size // len(block)):
                f.write(block[i % 7 :] + block[: i % 7])  # shifted: chunks differ per block
        proc, url = spawn(work / "home", "serve", "--port", "0")
        try:
            before = peak_rss_mib(proc.pid)
            c = tusk.Client(address=url)
            c.create_repo("big")
            t = time.perf_counter()
            result = c.put_file("big@master:/big.bin", src)
            elapsed = time.perf_counter() - t
            peak = peak_rss_mib(proc.pid)
            assert c.inspect_file("big@master:/big.bin").size == size
            c.close()
        finally:
            proc.terminate()
            proc.wait(30)
        rate = result.bytes / elapsed / 1e6
        print(f"put {result.bytes / 1e9:.2f} GB in {elapsed:.1f} s ({rate:.0f} MB/s)")
        print(f"server peak RSS: {before} MiB before, {peak} MiB after the upload")
        verdict = "PASS" if peak < 300 else "FAIL"
        print(
            f"{verdict}  server under 300 MiB while a {args.gib:g} GiB file streams in: {peak} MiB"
        )
        return 0 if peak < 300 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
