#!/usr/bin/env python3
"""Interleaved A/B of a ``tusk`` command's start-up: one commit's code against another's.

On a noisy machine the median of one benchmark run moves more between runs minutes apart
than a start-up change is worth (bench_startup's `list repo` read 0.24 and 0.32 s with the
same code a quarter of an hour apart). Alternating the two versions run by run puts both under
the same noise. Each version's ``src`` is taken from git (``git archive``) into a temporary
folder and compiled to bytecode first (as pip installs it); each run is a fresh interpreter
doing what that version's ``tusk`` console script does (``tusk.cli.entry:main``, or
``tusk.cli.main:main`` before it existed) with ``PYTHONPATH`` on that folder, against one
home made by version B (a repo with a few files, unless ``--home`` is given).

    .venv/bin/python bench/ab_startup.py 280bb0c HEAD --runs 25 -- list repo
    .venv/bin/python bench/ab_startup.py HEAD~1 HEAD -- list file images@master:/d1

Prints, for each version, the median and min wall time and their ratio B/A.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from bytecode import compile_tree

ROOT = Path(__file__).resolve().parent.parent


def export_src(rev: str, into: Path) -> Path:
    """``rev``'s ``src`` folder, unpacked into ``into`` and compiled; its path."""
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "src"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    src = into / "src"
    compile_tree(src)
    return src


def seed(home: Path, env: dict[str, str]) -> None:
    data = home.parent / "data"
    for i in range(20):
        (data / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (data / f"d{i % 4}" / f"f{i:02d}.txt").write_text(f"row {i}\n")
    for args in (
        ["create", "repo", "images"],
        ["put", "file", "images@master:/", "-r", "-f", str(data)],
    ):
        subprocess.run(
            [sys.executable, "-m", "tusk.cli.main", "--home", str(home), *args],
            env=env,
            check=True,
            capture_output=True,
        )


def script(src: Path) -> str:
    """What the ``tusk`` console script of that version runs."""
    entry = "entry" if (src / "tusk" / "cli" / "entry.py").exists() else "main"
    return f"import sys; sys.argv[0] = 'tusk'; from tusk.cli.{entry} import main; sys.exit(main())"


def run(src: Path, args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script(src), *args],
        env={**env, "PYTHONPATH": str(src)},
        capture_output=True,
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{src}: tusk {' '.join(args)} failed: {done.stderr.decode()[-300:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="git revision A (the baseline)")
    ap.add_argument("b", help="git revision B")
    ap.add_argument("--runs", type=int, default=20, help="runs of each, alternating")
    ap.add_argument("--home", type=Path, help="an existing home to read (default: a new one)")
    ap.add_argument("command", nargs="+", help="the tusk command, after --")
    opts = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    with tempfile.TemporaryDirectory(prefix="tusk-ab-") as tmp:
        work = Path(tmp)
        env["TUSK_CONFIG"] = str(work / "no-config.yaml")
        srcs = {rev: export_src(rev, work / f"v{i}") for i, rev in enumerate((opts.a, opts.b))}
        home = opts.home
        if home is None:
            home = work / "home"
            seed(home, {**env, "PYTHONPATH": str(srcs[opts.b])})
        args = ["--home", str(home), *opts.command]
        times: dict[str, list[float]] = {rev: [] for rev in srcs}
        for src in srcs.values():
            run(src, args, env)  # warm-up: page cache
        for _ in range(opts.runs):
            for rev, src in srcs.items():
                times[rev].append(run(src, args, env))
    print(f"tusk {' '.join(opts.command)}: {opts.runs} runs each, alternating")
    for rev, walls in times.items():
        print(f"  {rev:>12}  median {statistics.median(walls):.3f} s  min {min(walls):.3f} s")
    a, b = times[opts.a], times[opts.b]
    print(
        f"  B/A: median {statistics.median(b) / statistics.median(a):.3f}, "
        f"min {min(b) / min(a):.3f}"
    )


if __name__ == "__main__":
    main()
