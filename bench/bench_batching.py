"""Datum batching: per-datum cost of one process per batch vs one process per datum (issue 21).

The same Python code copies each datum's input file to /pfs/out, on the same 1,000 tiny
datums (glob ``/*``), in one run on an embedded store, the default sandbox:

* ``one process per datum``: ``python3 -c COPY`` for each datum (Pachyderm without batching);
* ``datum_batching``: one ``python3`` per batch of datums, calling
  ``tusk.sdk.batching.next_datum()`` for each (in-process: a Unix-socket round trip);
* ``datum_batching, shell + CLI``: ``sh`` calling ``tusk next datum`` for each datum (a CLI
  start per datum, as pachctl in a shell loop).

Per datum = the job's wall time (``started_at`` to ``finished_at``) x parallelism / datums.
Run: ``.venv/bin/python bench/bench_batching.py [--datums 1000] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import tusk

COPY = r"""
import os, pathlib, shutil
pfs = pathlib.Path(os.environ.get("TUSK_PFS", "/pfs"))
for f in (pfs / "in").iterdir():
    shutil.copy(f, pfs / "out" / f.name)
"""

BATCHED = r"""
import os, pathlib, shutil
from tusk.sdk.batching import next_datum
pfs = pathlib.Path(os.environ.get("TUSK_PFS", "/pfs"))
while True:
    next_datum()
    for f in (pfs / "in").iterdir():
        shutil.copy(f, pfs / "out" / f.name)
"""

SHELL = r"""
while tusk next datum; do cp "$TUSK_PFS"/in/* "$TUSK_PFS/out/"; done
"""

PARALLELISM = 2


def run(c: tusk.Client, name: str, transform: dict[str, Any]) -> float:
    c.create_pipeline(
        {
            "pipeline": {"name": name},
            "input": {"pfs": {"repo": "in", "glob": "/*"}},
            "transform": transform,
            "parallelism_spec": {"constant": PARALLELISM},
        }
    )
    c.run_scheduler(once=True)
    job = c.list_jobs(name)[0]
    if job.state != "success":
        raise SystemExit(f"{name}: {job.state}: {job.reason}")
    assert job.started_at is not None and job.finished_at is not None
    return (job.finished_at - job.started_at) * PARALLELISM / job.datums_total * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datums", type=int, default=1000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    py = sys.executable
    ways = {
        "one process per datum": {"cmd": [py, "-c", COPY]},
        "datum_batching (Python)": {"cmd": [py, "-c", BATCHED], "datum_batching": True},
        "datum_batching (shell + CLI)": {"cmd": ["sh", "-c", SHELL], "datum_batching": True},
    }
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-batching-") as tmp:
        c = tusk.Client(Path(tmp) / "home")
        c.create_repo("in")
        c.put_files("in@master", [(f"/f{i:05d}", b"x" * 16) for i in range(args.datums)])
        for i, (name, transform) in enumerate(ways.items()):
            results[name] = run(c, f"p{i}", transform)
            print(f"{name:30} {results[name]:7.2f} ms per datum (one worker)", flush=True)
        c.close()
    base = results["one process per datum"]
    for name in list(ways)[1:]:
        print(f"{name}: {results[name] / base:.2f}x the cost of one process per datum")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
