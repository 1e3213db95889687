#!/usr/bin/env python3
"""Mount: a 1 GiB file read through ``tusk mount`` vs ``tusk get file`` vs the local disk, in
one run; the first byte through the mount; random 4 KiB reads per second.

One embedded home holds one commit with one file of ``--size`` MiB of random bytes (random,
so zstd stores it raw and the content-defined chunks are of the default sizes); the same
bytes are in a local file. Each run, in turn (caches dropped before each timing where the
machine lets root write /proc/sys/vm/drop_caches, else said so):

- disk: the local file read with 1 MiB reads;
- get file: ``tusk get file data@master:/big.bin`` to /dev/null (a fresh process, timed
  whole);
- mount: a fresh ``tusk mount data@master MNT`` (a process of its own, timed once mounted):
  the first byte (open + 1-byte read, cold), then the whole file with 1 MiB reads;
- random: a fresh mount again, readahead off (POSIX_FADV_RANDOM), 4 KiB preads at random
  4 KiB-aligned offsets for ``--random-seconds``; the block cache (256 MiB by default) fills
  as it goes, so the hit rate the mount reports is printed beside the rate.

    .venv/bin/python bench/bench_mount.py                 # 1 GiB, 3 runs
    .venv/bin/python bench/bench_mount.py --size 64 --runs 1   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tusk import Client

TUSK = [sys.executable, "-m", "tusk.cli.main"]
MIB = 1024 * 1024


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}


def drop_caches() -> bool:
    """Write back and drop the page cache (root only); False where that is not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def read_all(path: Path) -> int:
    buf = bytearray(MIB)
    n = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while k := os.readv(fd, [buf]):
            n += k
    finally:
        os.close(fd)
    return n


def start_mount(home: Path, mnt: Path, stats: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*TUSK, "--home", str(home), "mount", "data@master", str(mnt), "--stats", str(stats)],
        stderr=subprocess.DEVNULL,
        env=env(),
    )
    deadline = time.monotonic() + 30
    while not os.path.ismount(mnt):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("tusk mount did not come up")
        time.sleep(0.01)
    return proc


def stop_mount(proc: subprocess.Popen[bytes], mnt: Path, stats: Path) -> dict[str, int]:
    subprocess.run([*TUSK, "unmount", str(mnt)], check=True, env=env())
    proc.wait(60)
    return json.loads(stats.read_text())  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="file size in MiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--random-seconds", type=float, default=5.0)
    args = ap.parse_args()
    size = args.size * MIB
    work = Path(tempfile.mkdtemp(prefix="bench-mount-"))
    try:
        local = work / "big.bin"
        rng = random.Random(1)
        with open(local, "wb") as f:
            for _ in range(args.size):
                f.write(rng.randbytes(MIB))
        home = work / "home"
        with Client(home) as c:
            c.create_repo("data")
            c.put_file("data@master:/big.bin", str(local))
        mnt = work / "mnt"
        mnt.mkdir()
        stats = work / "stats.json"
        print(f"load average {os.getloadavg()[0]:.2f} at start; file {args.size} MiB; "
              f"{args.runs} runs")  # fmt: skip
        disk, get, seq, first, rand = [], [], [], [], []
        for run in range(args.runs):
            dropped = drop_caches()
            t0 = time.perf_counter()
            assert read_all(local) == size
            disk.append(size / (time.perf_counter() - t0))

            drop_caches()
            t0 = time.perf_counter()
            subprocess.run([*TUSK, "--home", str(home), "get", "file", "data@master:/big.bin"],
                           stdout=subprocess.DEVNULL, check=True, env=env())  # fmt: skip
            get.append(size / (time.perf_counter() - t0))

            proc = start_mount(home, mnt, stats)
            drop_caches()
            target = mnt / "data" / "big.bin"
            t0 = time.perf_counter()
            fd = os.open(target, os.O_RDONLY)
            assert len(os.read(fd, 1)) == 1
            first.append(time.perf_counter() - t0)
            os.close(fd)
            t0 = time.perf_counter()
            assert read_all(target) == size
            seq.append(size / (time.perf_counter() - t0))
            counts = stop_mount(proc, mnt, stats)

            proc = start_mount(home, mnt, stats)
            fd = os.open(target, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            pick = random.Random(run)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < args.random_seconds:
                at = pick.randrange(size // 4096) * 4096
                assert len(os.pread(fd, 4096, at)) == 4096
                n += 1
            rate = n / (time.perf_counter() - t0)
            os.close(fd)
            rstats = stop_mount(proc, mnt, stats)
            rand.append(rate)
            hits = rstats["cache_hits"] / max(1, rstats["cache_hits"] + rstats["blocks_fetched"])
            print(
                f"run {run + 1}: disk {disk[-1] / MIB:.0f} MiB/s, get file {get[-1] / MIB:.0f} "
                f"MiB/s, mount {seq[-1] / MIB:.0f} MiB/s ({counts['reads']} FUSE reads, "
                f"{counts['blocks_fetched']} blocks), first byte {first[-1] * 1000:.1f} ms, "
                f"random 4 KiB {rate:.0f}/s ({hits:.0%} block cache hits); caches "
                f"{'dropped' if dropped else 'NOT dropped (not root?)'}"
            )
        med = statistics.median
        print(f"median: disk {med(disk) / MIB:.0f} MiB/s, get file {med(get) / MIB:.0f} MiB/s, "
              f"mount {med(seq) / MIB:.0f} MiB/s = {med(seq) / med(get):.0%} of get file; "
              f"first byte {med(first) * 1000:.1f} ms; random 4 KiB {med(rand):.0f}/s")  # fmt: skip
        print(f"load average {os.getloadavg()[0]:.2f} at end")
    finally:
        for p in (work / "mnt",):
            if os.path.ismount(p):
                subprocess.run(["fusermount3", "-u", str(p)], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
