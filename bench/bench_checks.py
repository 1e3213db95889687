#!/usr/bin/env python3
"""Data CI gates (issue 22): what a check costs a merge, and what ``--run-pipelines`` costs
against a merge followed by its jobs, in the same run.

1. A no-op check (``cmd: [true]``, ``on: [merge]``) on a merge of ``--files`` changed files
   (default 10,000): ``tusk merge`` as a whole process into a branch no check covers, and into
   one the check covers, in turn, ``--repeat`` rounds each (a fresh target branch per merge,
   made at master's head, so every merge does the same work). The overhead is the difference
   of the medians; target: at most 0.2 s. The check runs as a datum does (the candidate's
   files copied out for it, bubblewrap where it works), so most of it is the copy.
2. Pachyderm's edges + montage example (examples/edges): a feature branch adds ``--images``
   pictures; ``tusk merge images@feature --into master --run-pipelines`` (the jobs run on a
   temporary branch, the three branches move together) against ``tusk merge`` followed by
   ``tusk wait commit montage@master`` (the jobs run after the move), each on its own copy of
   the same prepared home, whole processes, until every output moved.

    .venv/bin/python bench/bench_checks.py                       # 10,000 files, 6 images
    .venv/bin/python bench/bench_checks.py --files 1000 --repeat 3   # smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bytecode import compile_tusk
from tusk import Client

HERE = Path(__file__).resolve().parent
EDGES = HERE.parent / "examples" / "edges"
TUSK = [sys.executable, "-m", "tusk.cli.main"]
TARGET_OVERHEAD = 0.2


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr}")
    return took


def check_overhead(work: Path, files: int, repeat: int, env: dict[str, str]) -> dict[str, float]:
    home = work / "checks-home"
    src = work / "src"
    for i in range(files):
        d = src / f"d{i % 100:03}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05}.txt").write_bytes(b"row %d\n" % i)
    with Client(home) as c:
        c.create_repo("d")
        c.put_file("d@master:/seed", b"seed")
        c.create_branch("d@feature", head="master")
        c.put_dir("d@feature:/", src)
        c.apply([{"kind": "check", "name": "noop", "repo": "d", "branch": "gated-*",
                  "on": ["merge"], "cmd": ["true"]}])  # fmt: skip
        for i in range(repeat):
            c.create_branch(f"d@plain-{i}", head="master")
            c.create_branch(f"d@gated-{i}", head="master")
    base = [*TUSK, "--home", str(home), "merge", "d@feature", "--into"]
    plain, gated = [], []
    for i in range(repeat):  # in turn, so that a busy moment slows both alike
        plain.append(timed([*base, f"plain-{i}"], env))
        gated.append(timed([*base, f"gated-{i}"], env))
    with Client(home) as c:
        runs = c.check_runs(f"d@gated-{repeat - 1}")
        assert [(r.name, r.state) for r in runs] == [("noop", "passed")], runs
        check_s = statistics.median(r.duration for i in range(repeat)
                                    for r in c.check_runs(f"d@gated-{i}"))  # fmt: skip
    p, g = statistics.median(plain), statistics.median(gated)
    print(f"\n1. no-op check on a merge of {files:,} changed files ({repeat} rounds, medians)")
    print(f"   tusk merge, no check:        {p:7.3f} s   (runs: {_fmt(plain)})")
    print(f"   tusk merge, no-op check:     {g:7.3f} s   (runs: {_fmt(gated)})")
    print(f"   the check itself (recorded): {check_s:7.3f} s")
    verdict = "PASS" if g - p <= TARGET_OVERHEAD else "FAIL"
    print(f"   overhead: {g - p:.3f} s   target <= {TARGET_OVERHEAD} s: {verdict}")
    return {"plain_s": p, "gated_s": g, "overhead_s": g - p, "check_s": check_s}


def run_pipelines(work: Path, images: int, repeat: int, env: dict[str, str]) -> dict[str, float]:
    pics = work / "pics"
    gen = [sys.executable, str(EDGES / "generate.py")]
    subprocess.run([*gen, str(pics / "base"), "--count", "6"], check=True, capture_output=True)
    subprocess.run([*gen, str(pics / "new"), "--start", "6", "--count", str(images)],
                   check=True, capture_output=True)  # fmt: skip
    prepared = work / "edges-home"
    with Client(prepared) as c:
        c.create_repo("images")
        c.put_dir("images@master:/", pics / "base")
        c.apply_files([EDGES / "edges.yaml", EDGES / "montage.yaml"])
        c.wait_commit("edges@master")
        c.wait_commit("montage@master")
        c.create_branch("images@feature", head="master")
        c.put_dir("images@feature:/", pics / "new")
    together, after = [], []
    for i in range(repeat):
        a, b = work / f"run-a-{i}", work / f"run-b-{i}"
        shutil.copytree(prepared, a)
        shutil.copytree(prepared, b)
        merge = ["merge", "images@feature", "--into", "master"]
        together.append(timed([*TUSK, "--home", str(a), *merge, "--run-pipelines"], env))
        t = timed([*TUSK, "--home", str(b), *merge], env)
        t += timed([*TUSK, "--home", str(b), "wait", "commit", "montage@master"], env)
        after.append(t)
        for home in (a, b):
            with Client(home) as c:
                n = len(c.list_files("edges@master:/"))
                assert n == 6 + images, (home, n)
                assert c.inspect_commit("montage@master").finished
        shutil.rmtree(a)
        shutil.rmtree(b)
    x, y = statistics.median(together), statistics.median(after)
    print(f"\n2. edges + montage, a merge adding {images} images to 6 ({repeat} rounds, medians)")
    print(f"   merge --run-pipelines (all move together): {x:7.3f} s   ({_fmt(together)})")
    print(f"   merge, then wait commit montage@master:    {y:7.3f} s   ({_fmt(after)})")
    print(f"   ratio: {x / y:.2f}")
    return {"together_s": x, "after_s": y, "ratio": x / y}


def _fmt(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    compile_tusk()  # as installed: whole processes are timed (bench/bytecode.py)
    work = Path(tempfile.mkdtemp(prefix="tusk-bench-checks-"))
    try:
        check_overhead(work, args.files, args.repeat, env)
        run_pipelines(work, args.images, args.repeat, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
