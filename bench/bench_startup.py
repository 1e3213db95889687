"""Start-up: how long a `tusk` command takes, whole process, against `python -c pass`.

Every row is a fresh process of the installed `tusk` command (the console script next to this
interpreter), run ``--runs`` times (default 10), after one unmeasured warm-up run that fills
the page cache and writes the bytecode caches; Tusk's bytecode is compiled first, as
``pip install`` does (bench/bytecode.py); the median wall time and the largest peak RSS are
printed. The RSS comes from 3 more runs under ``/usr/bin/time`` (bench/peak.py: a child
this script started itself would report at least this script's own peak).
`python -c pass` runs in the same loop, so a slow or busy machine shows in the floor row,
not only in Tusk's.

Rows:
- floor: ``python -c pass``, and the imports of the libraries under the commands with
  nothing of Tusk (click; click, rich, httpx and httpcore for a server; click, rich and
  SQLAlchemy with its SQLite dialect for a home), so the part that is Tusk's shows; httpx is
  imported without its own command line (``httpx._main``), as the ``tusk`` entry point does;
- ``tusk --help``;
- embedded (``--home`` of a store with 3 repos): ``list repo``, ``inspect repo``,
  ``list commit``, ``list file``;
- against a server (``TUSK_ADDRESS`` set, a ``tusk serve`` this script starts on a loopback
  port, on another home with the same data): the same four read commands;
- with ``--postgres``, interleaved (one run of each in turn, ``--runs`` rounds, so drift
  hits all alike): ``tusk list repo`` and ``tusk list file`` on a home whose metadata is in
  a PostgreSQL server this script starts (tests/pgserver.py), ``tusk list repo`` on the
  SQLite home, and the floor of each engine: a process that imports only click, SQLAlchemy
  and the engine's dialect (and psycopg), with the collector off, as the ``tusk`` command
  loads.

Targets (issue 15): ``tusk --help`` <= 0.10 s; ``tusk list repo`` embedded <= 0.30 s; every
read command against a server <= 0.15 s and <= 40 MB RSS. PASS/FAIL is printed per row; the
script exits 0 either way (non-zero only when a command fails).

    .venv/bin/python bench/bench_startup.py [--runs 10] [--json out.json] [--postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bytecode import compile_tusk
from peak import run_with_peak
from servers import postgres, tusk_serve

HELP_TARGET = 0.10
EMBEDDED_TARGET = 0.30
REMOTE_TARGET = 0.15
REMOTE_RSS_MB = 40.0
_CLI = ["click", "rich.console", "rich.table"]
LIBRARY_FLOORS = [
    ("import click", ["click"]),
    ("import click, rich, httpx, httpcore", [*_CLI, "httpx", "httpcore"]),
    ("import click, rich, sqlalchemy[sqlite]", [*_CLI, "sqlalchemy", "sqlalchemy.dialects.sqlite"]),
]


def tusk_command() -> str:
    here = Path(sys.executable).parent / "tusk"
    return str(here) if here.exists() else (shutil.which("tusk") or "tusk")


def run_once(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one process."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        err = proc.stderr.decode().strip()[-400:]
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err}")
    return wall


def peak_rss_mb(argv: list[str], env: dict[str, str]) -> float:
    """The process's own peak RSS (bench/peak.py)."""
    _, peak, done = run_with_peak(argv, env)
    done.check_returncode()
    return peak / 1024 / 1024


def measure(argv: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    return measure_interleaved([(argv, env)], runs)[0]


_ENGINE_DRIVERS = {
    "sqlite": "sqlalchemy.dialects.sqlite",
    "postgres": "sqlalchemy.dialects.postgresql.psycopg, psycopg",
}


def engine_floor(engine: str) -> list[str]:
    """A process importing only what any command on a store of ``engine`` (sqlite or
    postgres) must: click, SQLAlchemy and the engine's dialect (psycopg for PostgreSQL),
    with the collector off as the ``tusk`` command loads (bench_scale uses it too)."""
    code = f"import gc; gc.disable(); import click, sqlalchemy, {_ENGINE_DRIVERS[engine]}"
    return [sys.executable, "-c", code]


def measure_interleaved(
    cases: list[tuple[list[str], dict[str, str]]], runs: int
) -> list[dict[str, Any]]:
    """Median, min and max wall seconds of ``runs`` runs of each command, one run of each in
    turn per round (after a warm-up run each: page cache and bytecode), and its peak RSS."""
    for argv, env in cases:
        run_once(argv, env)
    walls: list[list[float]] = [[] for _ in cases]
    for _ in range(runs):
        for i, (argv, env) in enumerate(cases):
            walls[i].append(run_once(argv, env))
    return [
        {
            "median_s": statistics.median(w),
            "min_s": min(w),
            "max_s": max(w),
            "rss_mb": max(peak_rss_mb(argv, env) for _ in range(3)),
        }
        for w, (argv, env) in zip(walls, cases, strict=True)
    ]


def postgres_rows(
    tusk: str, env: dict[str, str], work: Path, data: Path, embedded: Path, runs: int
) -> list[tuple[str, str, float | None, dict[str, Any]]]:
    """The ``--postgres`` rows (see the module's doc)."""
    with postgres() as url:
        pg_env = {**env, "TUSK_METADATA_URL": url}
        home = work / "postgres"
        seed(home, pg_env, tusk, data)
        pg_home = ["--home", str(home)]
        specs = [  # (where, command, target, argv, env), measured in this order each round
            ("floor", "import click, sqlalchemy[sqlite] (gc off)", None,
             engine_floor("sqlite"), env),
            ("embedded", "tusk list repo (SQLite)", EMBEDDED_TARGET,
             [tusk, "--home", str(embedded), "list", "repo"], env),
            ("floor", "import click, sqlalchemy[psycopg] (gc off)", None,
             engine_floor("postgres"), pg_env),
            ("postgres", "tusk list repo", EMBEDDED_TARGET,
             [tusk, *pg_home, "list", "repo"], pg_env),
            ("postgres", "tusk list file images@master:/d1", EMBEDDED_TARGET,
             [tusk, *pg_home, "list", "file", "images@master:/d1"], pg_env),
        ]  # fmt: skip
        found = measure_interleaved([(argv, e) for *_, argv, e in specs], runs)
    return [(w, n, t, m) for (w, n, t, _, _), m in zip(specs, found, strict=True)]


def seed(home: Path, env: dict[str, str], tusk: str, data: Path) -> None:
    for name in ("images", "labels", "models"):
        subprocess.run(
            [tusk, "--home", str(home), "create", "repo", name],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    subprocess.run(
        [tusk, "--home", str(home), "put", "file", "images@master:/", "-r", "-f", str(data)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--postgres", action="store_true", help="also the PostgreSQL rows")
    args = ap.parse_args()
    tusk = tusk_command()
    compile_tusk()  # as installed (bench/bytecode.py)
    work = Path(tempfile.mkdtemp(prefix="tusk-startup-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_CONFIG"] = str(work / "no-config.yaml")  # no context from the user's config
    rows: list[tuple[str, str, float | None, dict[str, Any]]] = []
    try:
        data = work / "data"
        for i in range(50):
            (data / f"d{i % 5}").mkdir(parents=True, exist_ok=True)
            (data / f"d{i % 5}" / f"f{i:03d}.txt").write_text(f"row {i}\n")
        embedded, served = work / "embedded", work / "served"
        seed(embedded, env, tusk, data)
        seed(served, env, tusk, data)
        reads = [
            ["list", "repo"],
            ["inspect", "repo", "images"],
            ["list", "commit", "images@master"],
            ["list", "file", "images@master:/d1"],
        ]
        rows.append(
            (
                "floor",
                "python -c pass",
                None,
                measure([sys.executable, "-c", "pass"], env, args.runs),
            )
        )
        # What the libraries the commands stand on cost to import, with nothing of Tusk: the
        # floor under each group of rows (click for every command, rich for tables, httpx and
        # httpcore against a server, SQLAlchemy and its SQLite dialect on a home).
        for label, mods in LIBRARY_FLOORS:
            # As in `tusk`'s entry point: httpx without its own command line (httpx._main).
            code = "import sys; sys.modules['httpx._main'] = None; import " + ", ".join(mods)
            argv = [sys.executable, "-c", code]
            rows.append(("floor", label, None, measure(argv, env, args.runs)))
        rows.append(("", "tusk --help", HELP_TARGET, measure([tusk, "--help"], env, args.runs)))
        for cmd in reads:
            target = EMBEDDED_TARGET if cmd == ["list", "repo"] else None
            argv = [tusk, "--home", str(embedded), *cmd]
            rows.append(
                ("embedded", "tusk " + " ".join(cmd), target, measure(argv, env, args.runs))
            )
        with tusk_serve(served, env) as (address, _pid):
            remote_env = {**env, "TUSK_ADDRESS": address}
            for cmd in reads:
                m = measure([tusk, *cmd], remote_env, args.runs)
                m["rss_target_mb"] = REMOTE_RSS_MB
                rows.append(("server", "tusk " + " ".join(cmd), REMOTE_TARGET, m))
        if args.postgres:
            rows += postgres_rows(tusk, env, work, data, embedded, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    floor = rows[0][3]["median_s"]
    print(
        f"{'where':9} {'command':36} {'median':>8} {'min':>7} {'-floor':>7} {'RSS MB':>7}  target"
    )
    for where, name, target, m in rows:
        verdict = ""
        if target is not None:
            ok = m["median_s"] <= target and m["rss_mb"] <= m.get("rss_target_mb", float("inf"))
            limit = f"<= {target:.2f} s" + (
                f", <= {m['rss_target_mb']:.0f} MB" if "rss_target_mb" in m else ""
            )
            verdict = f"{limit}: {'PASS' if ok else 'FAIL'}"
            m["pass"] = ok
        print(
            f"{where:9} {name:40} {m['median_s']:8.3f} {m['min_s']:7.3f} "
            f"{m['median_s'] - floor:7.3f} {m['rss_mb']:7.1f}  {verdict}"
        )
    print(f"(median of {args.runs} runs each; -floor: minus python -c pass's median)")
    if args.json:
        out = [{"where": w, "command": n, "target_s": t, **m} for w, n, t, m in rows]
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
