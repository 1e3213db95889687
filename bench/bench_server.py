#!/usr/bin/env python3
"""Tusk through its HTTP API against Tusk in-process, on the same data in the same run.

* Ingest: D1 (20,000 files of 4 KiB in nested folders: ``put_dir``) and D2 (one 1 GiB file:
  ``put_file``), in-process (``tusk.Client(home)``) and through ``tusk serve`` on loopback
  (``tusk.Client(address=...)``), each into a fresh home. Target: HTTP at least 70% of the
  in-process throughput.
* Metadata load: 16 concurrent clients (threads, each its own HTTP client) doing
  ``list_files`` and ``inspect_commit`` against one server for a fixed time; requests per
  second, with SQLite and with PostgreSQL (a server started by the script, as the tests do).

    .venv/bin/python bench/bench_server.py [--scale 0.1] [--seconds 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tusk
from servers import postgres, tusk_serve


def make_d1(root: Path, files: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    n = 0
    per_dir = 100
    for i in range(files):
        top, sub = divmod(i // per_dir, 10)
        d = root / f"t{top:02d}" / f"s{sub:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i % per_dir:03d}.bin").write_bytes(rng.randbytes(4096))
        n += 4096
    return n


def make_d2(path: Path, size: int, seed: int = 2) -> int:
    rng = random.Random(seed)
    block = 1 << 20
    with open(path, "wb") as out:
        left = size
        while left > 0:
            n = min(block, left)
            out.write(rng.randbytes(n))
            left -= n
    return size


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def ingest(work: Path, d1: Path, d2: Path, env: dict[str, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for mode in ("inproc", "http"):
        for name, run in (
            ("d1", lambda c: c.put_dir("d1@master:/", d1)),
            ("d2", lambda c: c.put_file("d2@master:/big.bin", d2)),
        ):
            home = work / f"home-{mode}-{name}"
            shutil.rmtree(home, ignore_errors=True)
            if mode == "inproc":
                with tusk.Client(home) as c:
                    c.create_repo(name)
                    out[f"{name}_{mode}"] = timed(lambda c=c, run=run: run(c))
            else:
                with tusk_serve(home, env) as (address, _pid):
                    c = tusk.Client(address=address)
                    c.create_repo(name)
                    out[f"{name}_{mode}"] = timed(lambda c=c, run=run: run(c))
                    c.close()
    return out


def metadata_load(
    home: Path, env: dict[str, str], clients: int, seconds: float
) -> dict[str, float]:
    with tusk_serve(home, env) as (address, _pid):
        setup = tusk.Client(address=address)
        setup.create_repo("m")
        for i in range(20):
            setup.put_files(
                "m@master", [(f"/d{i}/f{j}.txt", f"{i}-{j}".encode()) for j in range(50)]
            )
        head = setup.inspect_commit("m@master").id
        setup.close()
        counts = [0] * clients
        errors: list[str] = []
        stop = time.monotonic() + seconds

        def worker(k: int) -> None:
            c = tusk.Client(address=address)
            try:
                while time.monotonic() < stop:
                    if counts[k] % 2:
                        c.list_files(f"m@master:/d{counts[k] % 20}")
                    else:
                        c.inspect_commit(f"m@{head}")
                    counts[k] += 1
            except Exception as exc:  # a benchmark reports failures instead of dying
                errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                c.close()

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        if errors:
            raise SystemExit(f"metadata load failed: {errors[0]}")
        return {"requests": float(sum(counts)), "seconds": elapsed, "rps": sum(counts) / elapsed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="shrink D1 and D2 (e.g. 0.1)")
    ap.add_argument("--seconds", type=float, default=10.0, help="metadata load duration")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--skip-postgres", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tusk-bench-server-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_SANDBOX"] = "none"
    try:
        d1, d2 = work / "d1", work / "big.bin"
        d1_bytes = make_d1(d1, max(100, int(20000 * args.scale)))
        d2_bytes = make_d2(d2, max(1 << 20, int((1 << 30) * args.scale)))
        times = ingest(work, d1, d2, env)
        load = {"sqlite": metadata_load(work / "home-load-sqlite", env, args.clients, args.seconds)}
        if not args.skip_postgres:
            with postgres() as url:
                pg_env = dict(env, TUSK_METADATA_URL=url)
                load["postgresql"] = metadata_load(
                    work / "home-load-pg", pg_env, args.clients, args.seconds
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mb = 1e6
    rows = []
    for name, size in (("d1", d1_bytes), ("d2", d2_bytes)):
        inproc, http = times[f"{name}_inproc"], times[f"{name}_http"]
        rows.append((name, size, inproc, http, inproc / http))
    print(f"\nTusk over HTTP vs in-process (scale {args.scale}, load {os.getloadavg()[0]:.1f})")
    print(f"  {'data':<4} {'bytes':>12} {'in-process':>12} {'HTTP':>10} {'HTTP/in-process':>16}")
    for name, size, inproc, http, ratio in rows:
        print(
            f"  {name:<4} {size:>12,} {inproc:>9.2f} s ({size / inproc / mb:5.0f} MB/s)"
            f" {http:>7.2f} s ({size / http / mb:5.0f} MB/s) {ratio:>8.2f}"
        )
    print(f"\nMetadata load: {args.clients} clients, list_files + inspect_commit")
    for engine, r in load.items():
        done = f"{int(r['requests'])} in {r['seconds']:.1f} s"
        print(f"  {engine:<10} {r['rps']:8.0f} requests/s ({done})")
    print("\nTargets")
    ok = True
    for name, _size, _inproc, _http, ratio in rows:
        passed = ratio >= 0.7
        ok &= passed
        verdict = "PASS" if passed else "FAIL"
        print(f"  {verdict}  {name} ingest through HTTP >= 70% of in-process: {ratio:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps({"ingest": times, "rows": rows, "load": load, "scale": args.scale}, indent=1)
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
