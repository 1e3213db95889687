#!/usr/bin/env python3
"""``tusk sql``: an aggregate over a 1 GiB Parquet file at a commit, vs DuckDB on the same file
on local disk, in the same run (issue 18; target: Tusk at least 0.6x DuckDB's throughput).

The file is made by DuckDB itself (fixed rows: an id, a random double, a group number and a
32-character string per row; ~1 GiB at ``--scale 1``), put into a fresh Tusk home in one
commit, and queried both ways with the same aggregate, which reads every column:

    SELECT g % 16 AS k, count(*), sum(x), sum(id), max(s) FROM <file> GROUP BY k

- in-process: ``Client.sql`` on the home vs ``duckdb.connect().sql`` on the local file, one
  interpreter, after one warm-up each (page cache warm for both);
- CLI: ``tusk --home H sql "..." -o json`` vs ``python -c "import duckdb; ..."``, each a whole
  process (start-up and imports included for both).

The four are run in turn, ``--repeat`` rounds, and the best time of each is kept.

Throughput is the file's size over the time; the ratio is Tusk's over DuckDB's.

    .venv/bin/python bench/bench_sql.py                # 1 GiB
    .venv/bin/python bench/bench_sql.py --scale 0.05   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

from bytecode import compile_tusk
from tusk import Client

MiB = 1024 * 1024
ROWS_PER_GIB = 26_500_000  # what makes ~1 GiB of this Parquet (measured)
TARGET = 0.6
QUERY = "SELECT g % 16 AS k, count(*) AS n, sum(x) AS sx, sum(id) AS si, max(s) AS ms FROM {src} GROUP BY k ORDER BY k"  # noqa: E501
TUSK_SRC = "'bench@master:/data/big.parquet'"


def generate(path: Path, rows: int) -> None:
    con = duckdb.connect()
    con.execute("SELECT setseed(0.18)")
    con.execute(
        f"""COPY (SELECT i AS id, random() AS x, (i * 7919) % 1000 AS g, md5(i::VARCHAR) AS s
                  FROM range({rows}) t(i))
            TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 122880)"""
    )
    con.close()


def same(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows to compare: float sums rounded (threads add them in another order each run)."""
    return [tuple(round(v, 3) if isinstance(v, float) else v for v in r) for r in rows]


def timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(cmd: list[str], env: dict[str, str]) -> None:
    subprocess.run(cmd, env=env, check=True, capture_output=True)


def tusk_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("tusk")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tusk.cli.main"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="GiB of Parquet (default 1)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    compile_tusk()  # as installed: the CLI rows time whole processes (bench/bytecode.py)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="tusk-bench-sql-"))
    work.mkdir(parents=True, exist_ok=True)
    local = work / "big.parquet"
    home = work / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    try:
        if not home.exists():  # else: a --workdir of an earlier run, reused as it is
            t = time.perf_counter()
            generate(local, int(ROWS_PER_GIB * args.scale))
            took = time.perf_counter() - t
            print(f"generated {local.stat().st_size / MiB:,.0f} MiB in {took:.1f} s", flush=True)
            os.environ["TUSK_SYNC"] = "none"  # the data's way in is not what is measured
            with Client(home) as c:
                c.create_repo("bench")
                t = time.perf_counter()
                commit = c.put_file("bench@master:/data/big.parquet", local).commit.id
                print(f"put into Tusk in {time.perf_counter() - t:.1f} s (commit {commit})")
            os.environ.pop("TUSK_SYNC")
        size = local.stat().st_size

        local_sql = QUERY.format(src=f"'{local}'")
        tusk_sql = QUERY.format(src=TUSK_SRC)
        probe = f"import duckdb; print(duckdb.sql({local_sql!r}).fetchall())"
        duck_proc = [sys.executable, "-c", probe]
        tusk_proc = [*tusk_cmd(), "--home", str(home), "sql", tusk_sql, "-o", "json"]
        con = duckdb.connect()
        times: dict[str, list[float]] = {k: [] for k in ("duck", "tusk", "duck_cli", "tusk_cli")}
        with Client(home) as c:
            expect = same(con.sql(local_sql).fetchall())
            got = same([tuple(r.values()) for r in c.sql(tusk_sql).to_pylist()])
            assert got == expect, (got[:2], expect[:2])
            # Interleaved, so that a busy moment of the machine slows both sides alike.
            for _ in range(args.repeat):
                times["duck"].append(timed(lambda: con.sql(local_sql).fetchall()))
                times["tusk"].append(timed(lambda: c.sql(tusk_sql)))
                times["duck_cli"].append(timed(lambda: run(duck_proc, env)))
                times["tusk_cli"].append(timed(lambda: run(tusk_proc, env)))
        con.close()
        duck_s, tusk_s = min(times["duck"]), min(times["tusk"])
        duck_cli, tusk_cli = min(times["duck_cli"]), min(times["tusk_cli"])

        rows = [
            ("in-process", duck_s, tusk_s),
            ("CLI (whole process)", duck_cli, tusk_cli),
        ]
        print(f"\nfile: {size / MiB:,.0f} MiB Parquet, query: {QUERY.format(src='<file>')}")
        print(f"{'':22} {'DuckDB local':>22} {'tusk sql':>22} {'ratio':>7}")
        result: dict[str, Any] = {"bytes": size, "repeat": args.repeat, "times": times}
        for label, d, s in rows:
            ratio = d / s
            print(
                f"{label:22} {d:8.3f} s {size / MiB / d:8.0f} MiB/s "
                f"{s:8.3f} s {size / MiB / s:8.0f} MiB/s {ratio:7.2f}"
            )
            result[label] = {"duckdb_s": d, "tusk_s": s, "ratio": ratio}
        print()
        for label, _d, _s in rows:
            verdict = "PASS" if result[label]["ratio"] >= TARGET else "FAIL"
            print(f"target: tusk sql >= {TARGET}x DuckDB local's throughput, {label}: {verdict}")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
