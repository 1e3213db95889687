"""Scale check: a commit that changes one file of a 1,000,000-file repo costs O(changed).

Builds a repo of N files (default 1,000,000; the contents repeat, so the data is small and
the benchmark measures the file tree, not the chunk store), once as one flat directory (the
worst case for directory paging) and once nested, then commits a one-file change and reports
the time of that commit, the tree nodes it added, and the time of the diff.

    .venv/bin/python bench/bench_scale.py [--files 1000000] [--layout flat|nested|both]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import tusk


def _paths(n: int, layout: str) -> list[str]:
    if layout == "flat":
        return [f"/all/f{i:07d}.txt" for i in range(n)]
    return [f"/d{i % 100:02d}/s{(i // 100) % 100:02d}/f{i:07d}.txt" for i in range(n)]


def run(n: int, layout: str, workdir: Path) -> dict[str, float | int | str]:
    home = workdir / f"home-{layout}"
    with tusk.Client(home) as c:
        c.create_repo("big")
        paths = _paths(n, layout)
        t0 = time.perf_counter()
        c.put_files("big@master", ((p, f"row {i % 97}\n".encode()) for i, p in enumerate(paths)))
        build = time.perf_counter() - t0
        nodes_before = c.stats()["nodes"]
        target = paths[n // 2]
        t1 = time.perf_counter()
        c.put_file(f"big@master:{target}", b"changed\n")
        one = time.perf_counter() - t1
        nodes_added = c.stats()["nodes"] - nodes_before
        t2 = time.perf_counter()
        diff = c.diff_file("big@master")
        diff_s = time.perf_counter() - t2
        assert [d.path for d in diff] == [target], diff
        files = c.inspect_commit("big@master").files
    shutil.rmtree(home)
    return {
        "layout": layout,
        "files": files,
        "build_s": round(build, 2),
        "one_file_commit_s": round(one, 4),
        "nodes_added": nodes_added,
        "diff_s": round(diff_s, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--layout", choices=["flat", "nested", "both"], default="both")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    layouts = ["flat", "nested"] if args.layout == "both" else [args.layout]
    workdir = Path(tempfile.mkdtemp(prefix="tusk-scale-"))
    try:
        results = [run(args.files, layout, workdir) for layout in layouts]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    header = ("layout", "files", "build s", "1-file commit s", "nodes", "diff s")
    print(
        f"{header[0]:8} {header[1]:>9} {header[2]:>8} {header[3]:>16} {header[4]:>6} {header[5]:>8}"
    )
    for r in results:
        print(
            f"{r['layout']:8} {r['files']:>9} {r['build_s']:>8} {r['one_file_commit_s']:>16} "
            f"{r['nodes_added']:>6} {r['diff_s']:>8}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
