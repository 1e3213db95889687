#!/usr/bin/env python3
"""Merge: ``tusk merge`` of a branch that changed 100,000 files, against ``git merge`` of the
same tree shape, in the same run.

Both get the same generated tree: ``--dirs`` folders of ``--files`` small files each. A branch
``feature`` rewrites every file; ``master`` meanwhile changes one file in one folder (so the
merge is a real three-way merge, not a fast-forward, and one folder needs a file-by-file
merge). Timed: the ``tusk merge`` command (a fresh process, as a user runs it, on the
embedded store) and ``git merge --no-ff --no-edit`` (git's default strategy, rename
detection off since nothing moved). Both results are checked: every file holds the feature's
content but the one master changed.

    .venv/bin/python bench/bench_merge.py                  # 100 x 1000 = 100,000 files
    .venv/bin/python bench/bench_merge.py --dirs 10 --files 100   # smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tusk import Client

HERE = Path(__file__).resolve().parent
TUSK = [sys.executable, "-m", "tusk.cli.main"]


def tree(dirs: int, files: int, tag: bytes) -> list[tuple[str, bytes]]:
    return [
        (f"/d{d:03}/f{f:05}.txt", b"%s %d %d\n" % (tag, d, f))
        for d in range(dirs)
        for f in range(files)
    ]


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def write(root: Path, items: list[tuple[str, bytes]]) -> None:
    for path, data in items:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def bench_git(work: Path, base: list[tuple[str, bytes]], feat: list[tuple[str, bytes]],
              ours: tuple[str, bytes]) -> float:  # fmt: skip
    repo = work / "git"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "master")
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "bench")
    git(repo, "config", "merge.renames", "false")
    write(repo, base)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "feature")
    write(repo, feat)
    git(repo, "commit", "-q", "-am", "feature")
    git(repo, "checkout", "-q", "master")
    write(repo, [ours])
    git(repo, "commit", "-q", "-am", "master")
    t0 = time.perf_counter()
    git(repo, "merge", "--no-ff", "--no-edit", "-q", "feature")
    took = time.perf_counter() - t0
    assert (repo / ours[0].lstrip("/")).read_bytes() == ours[1]
    other = feat[-1]
    assert (repo / other[0].lstrip("/")).read_bytes() == other[1]
    return took


def bench_tusk(work: Path, base: list[tuple[str, bytes]], feat: list[tuple[str, bytes]],
               ours: tuple[str, bytes]) -> float:  # fmt: skip
    home = work / "tusk"
    with Client(home) as c:
        c.create_repo("data")
        c.put_files("data@master", base)
        c.create_branch("data@feature", head="master")
        c.put_files("data@feature", feat)
        c.put_file(f"data@master:{ours[0]}", ours[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    t0 = time.perf_counter()
    subprocess.run([*TUSK, "--home", str(home), "merge", "data@feature", "--into", "master"],
                   check=True, capture_output=True, env=env)  # fmt: skip
    took = time.perf_counter() - t0
    with Client(home) as c:
        head = c.inspect_commit("data@master")
        assert head.merge_parent is not None
        assert c.get_file(f"data@master:{ours[0]}") == ours[1]
        assert c.get_file(f"data@master:{feat[-1][0]}") == feat[-1][1]
        assert head.files == len(base)
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dirs", type=int, default=100)
    ap.add_argument("--files", type=int, default=1000, help="files per folder")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    base = tree(args.dirs, args.files, b"base")
    feat = tree(args.dirs, args.files, b"feature")
    ours = (base[0][0], b"changed on master\n")
    feat = [(p, d) for p, d in feat if p != ours[0]]  # master's change is the only one there
    n = len(base)
    print(f"merge of {len(feat):,} changed files ({args.dirs} folders x {args.files}), "
          f"{args.runs} runs")  # fmt: skip
    tusk_t: list[float] = []
    git_t: list[float] = []
    for _ in range(args.runs):
        work = Path(tempfile.mkdtemp(prefix="bench-merge-"))
        try:
            tusk_t.append(bench_tusk(work, base, feat, ours))
            git_t.append(bench_git(work, base, feat, ours))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    tm, gm = sorted(tusk_t)[len(tusk_t) // 2], sorted(git_t)[len(git_t) // 2]
    print(f"tusk merge: {', '.join(f'{t:.2f}' for t in tusk_t)} s (median {tm:.2f} s)")
    print(f"git merge:  {', '.join(f'{t:.2f}' for t in git_t)} s (median {gm:.2f} s)")
    print(f"ratio tusk/git: {tm / gm:.3f}  ({n:,} files in the tree)")


if __name__ == "__main__":
    main()
