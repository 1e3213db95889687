"""``tusk apply`` of many specs: the first apply, and a second one that must change nothing.

Generates N pipeline specs in G projects (in each, a chain: every pipeline reads the one
before it, the first a data repo declared in the same folder), one in ten as a jsonnet
template, and runs the real CLI (``python -m tusk.cli.main``) on a fresh home: ``tusk create
project`` for each, then ``apply`` twice, checking that the second reports every change as
unchanged. Prints the times and the ratio.

    .venv/bin/python bench/bench_apply.py [--specs 200] [--groups 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_specs(folder: Path, specs: int, groups: int) -> None:
    per = specs // groups
    for g in range(groups):
        project = f"project-{g}"
        (folder / f"data-{g}.yaml").write_text(f"kind: repo\nname: {project}/data\n")
        for i in range(per):
            name = f"p{i}"  # the same names in every project
            src = "data" if i == 0 else f"p{i - 1}"  # read from the pipeline's project
            if i % 10 == 9:  # a jsonnet template with its arguments beside it
                (folder / f"{project}-{name}.jsonnet").write_text(
                    "function(name, src, project) {pipeline: {name: name, project: project}, "
                    "input: {pfs: {repo: src, glob: '/*'}}, transform: {cmd: ['true']}}\n"
                )
                (folder / f"{project}-{name}.args.yaml").write_text(
                    f"name: {name}\nsrc: {src}\nproject: {project}\n"
                )
                continue
            spec = {
                "pipeline": {"name": name, "project": {"name": project}},
                "input": {"pfs": {"repo": src, "glob": "/*"}},
                "transform": {"cmd": ["sh", "-c", "cp -r /pfs/in/* /pfs/out/"]},
                "resourceLimits": {"memory": "256Mi"},
            }
            (folder / f"{project}-{name}.json").write_text(json.dumps(spec))


def tusk(home: Path, *args: str) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("TUSK_ADDRESS", "TUSK_HOME")}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tusk.cli.main", "--home", str(home), "-o", "json", *args],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"tusk {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return took, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=200)
    parser.add_argument("--groups", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tusk-bench-apply-") as tmp:
        folder, home = Path(tmp) / "specs", Path(tmp) / "home"
        folder.mkdir()
        write_specs(folder, args.specs, args.groups)
        projects = 0.0
        for g in range(args.groups):
            took, _ = tusk(home, "create", "project", f"project-{g}")
            projects += took
        first, result = tusk(home, "apply", "-f", str(folder))
        created = sum(1 for c in result["changes"] if c["action"] == "create")
        second, again = tusk(home, "apply", "-f", str(folder))
        changed = [c for c in again["changes"] if c["action"] != "unchanged"]
        noop, _ = tusk(home, "list", "repo")
    print(f"tusk apply of {args.specs} specs in {args.groups} projects (+{args.groups} repos)")
    print(f"  create project x {args.groups}: {projects:6.2f} s")
    print(f"  first apply:  {first:6.2f} s  ({created} created)")
    print(f"  second apply: {second:6.2f} s  ({len(changed)} changed: must be 0)")
    print(f"  a no-op command (tusk list repo) for scale: {noop:.2f} s")
    print(f"  second/first: {second / first:.3f}")
    if changed:
        raise SystemExit("the second apply changed something")


if __name__ == "__main__":
    main()
