"""Spouts: commits per second from one spout writing small files (issue 21, target >= 50/s).

One run, the same writes three ways, each on a fresh home:

* ``spout, tusk up``: a spout pipeline under ``tusk up``; its process writes through the REST
  API (``TUSK_ADDRESS``), one ``put_files`` commit per message (a 100-byte file and the offset
  reached, as a spout that must not lose or repeat a message writes them);
* ``spout, embedded``: the same spout under an in-process scheduler on an embedded store
  (``TUSK_HOME``: the spout opens the SQLite home itself);
* ``client, tusk up``: the same loop as a plain client process of the same ``tusk up`` (the
  floor: what the supervisor adds is the difference).

The rate is commits / (last commit's time - first commit's time), from the commits' own
timestamps; the benchmark looks only at the offset file, once a second, while they come.
Run: ``.venv/bin/python bench/bench_spouts.py [--messages 1000] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tusk
from bytecode import compile_tusk
from servers import tusk_up_s3

TARGET = 50.0

WRITER = r"""
import os, sys, tusk
n = int(sys.argv[1])
repo = os.environ.get("TUSK_OUTPUT_REPO") or sys.argv[2]
c = tusk.Client()
body = b"x" * 100
for i in range(n):
    c.put_files(f"{repo}@master", [(f"/m/{i:06d}", body), ("/offset", str(i + 1).encode())])
import time
while os.environ.get("TUSK_OUTPUT_REPO"):
    time.sleep(1)   # a spout does not end: the supervisor would restart it
"""


def spec(n: int) -> dict[str, Any]:
    return {
        "pipeline": {"name": "feed"},
        "spout": {},
        "transform": {"cmd": [sys.executable, "-c", WRITER, str(n)]},
    }


def rate(c: tusk.Client, repo: str, n: int, timeout: float = 600) -> dict[str, float]:
    """Wait (reading the offset file once a second: cheap, whatever the history) until ``n``
    commits are in, then time them from their own timestamps."""
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        try:
            done = int(c.get_file(f"{repo}@master:/offset"))
        except tusk.errors.NotFound:  # no commit yet
            done = 0
        if done >= n:
            break
        time.sleep(1)
    else:
        raise SystemExit(f"{repo}: only {done} of {n} commits in {timeout:g}s")
    commits = c.list_commits(f"{repo}@master")
    times = sorted(x.finished_at or x.started_at for x in commits)
    span = times[-1] - times[0]
    return {"commits": len(times), "seconds": span, "per_second": (len(times) - 1) / span}


def under_tusk_up(work: Path, n: int, as_spout: bool) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_CONFIG"] = str(work / "no-config.yaml")
    log: list[str] = []
    with tusk_up_s3(work / "home", env, log) as (api, _s3, _pid), tusk.Client(address=api) as c:
        if as_spout:
            c.create_pipeline(spec(n))
            return rate(c, "feed", n)
        c.create_repo("feed")
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(n), "feed"], env={**env, "TUSK_ADDRESS": api}
        )
        try:
            return rate(c, "feed", n)
        finally:
            writer.wait(60)


def embedded(work: Path, n: int) -> dict[str, float]:
    with tusk.Client(work / "home") as c:
        c.create_pipeline(spec(n))
        stop = threading.Event()
        loop = threading.Thread(target=c.run_scheduler, kwargs={"stop": stop}, daemon=True)
        loop.start()
        try:
            return rate(c, "feed", n)
        finally:
            stop.set()
            loop.join(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1000, help="commits each way")
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()
    compile_tusk()  # as installed: the spouts and servers are whole processes (bench/bytecode.py)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-spouts-") as tmp:
        base = Path(tmp)
        ways = {
            "spout, tusk up": lambda w: under_tusk_up(w, args.messages, True),
            "spout, embedded": lambda w: embedded(w, args.messages),
            "client, tusk up": lambda w: under_tusk_up(w, args.messages, False),
        }
        for i, (name, run) in enumerate(ways.items()):
            work = base / str(i)
            work.mkdir()
            results[name] = run(work)
            r = results[name]
            print(f"{name:18} {r['commits']:6.0f} commits in {r['seconds']:7.2f} s: "
                  f"{r['per_second']:7.1f} commits/s", flush=True)  # fmt: skip
    floor = results["client, tusk up"]["per_second"]
    for name in ("spout, tusk up", "spout, embedded"):
        got = results[name]["per_second"]
        verdict = "PASS" if got >= TARGET else "FAIL"
        print(f"{name}: {got:.1f} commits/s (target >= {TARGET:g}: {verdict}); "
              f"{got / floor:.2f}x a plain client of the same server")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
