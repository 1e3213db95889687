"""SQL egress: 100,000 CSV rows into PostgreSQL, Tusk's egress vs PostgreSQL's own COPY.

One run, one PostgreSQL (Debian's server in a temp dir, as the tests start it; the egress
role logs in with a password, SCRAM), one generated CSV file (fixed seed, with a header), one
table. Each way starts from the table holding the previous run's rows and ends with the new
ones, in one transaction (DELETE, then load), as egress does:

* ``COPY FROM file``: ``COPY rows FROM '/path/rows.csv' (FORMAT csv, HEADER true)``, the
  server reading the file itself: PostgreSQL's own floor;
* ``COPY FROM STDIN``: the same file streamed by a client (psycopg ``cursor.copy``), as
  ``psql \\copy`` does;
* ``Tusk egress``: :func:`tusk.pps.egress.egress_commit` of a commit holding the file at
  ``/rows/rows.csv``, with ``sql_database`` (``file_format: CSV`` with ``columns``, the
  password from a stored secret): reading the file from Tusk's store, connecting, reflecting
  the table, DELETE and COPY, commit;
* ``job with egress``: a whole pipeline job (one datum copying the file to ``/pfs/out``, the
  output commit, then its egress), from ``run_scheduler`` to done; printed for scale.

Best of ``--repeat`` (default 5) for each, the ways interleaved. Run:
``.venv/bin/python bench/bench_egress.py [--rows 100000] [--repeat 5] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import psycopg  # noqa: E402

import tusk  # noqa: E402
from pgserver import PgServer  # noqa: E402  (the tests' helper: initdb + pg_ctl)
from tusk.pps.egress import egress_commit  # noqa: E402
from tusk.pps.spec import Egress  # noqa: E402
from tusk.server import Services  # noqa: E402

TABLE = (
    "CREATE TABLE rows (id bigint PRIMARY KEY, name text NOT NULL, score double precision, "
    "day date, note text)"
)
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def make_csv(path: Path, rows: int) -> int:
    rnd = random.Random(21)
    with open(path, "w", newline="") as f:
        f.write("id,name,score,day,note\n")
        for i in range(rows):
            name = f"{rnd.choice(WORDS)}-{rnd.randrange(10**6)}"
            score = f"{rnd.random() * 1000:.4f}" if i % 10 else ""
            day = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}"
            note = f'"{rnd.choice(WORDS)}, {rnd.choice(WORDS)}"' if i % 3 == 0 else ""
            f.write(f"{i},{name},{score},{day},{note}\n")
    return path.stat().st_size


def timed(fn: Callable[[], None], check: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    check()  # every way leaves exactly the file's rows
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tusk-bench-egress-"))
    os.chmod(work, 0o755)  # the server reads the file itself for COPY FROM file
    csv_path = work / "rows.csv"
    size = make_csv(csv_path, args.rows)
    os.chmod(csv_path, 0o644)
    server = PgServer()
    try:
        server.require_passwords()
        admin = server.new_database()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE ROLE egress LOGIN PASSWORD 'bench-pw'")
            conn.execute(TABLE)
            conn.execute("ALTER TABLE rows OWNER TO egress")
            conn.execute(f"COPY rows FROM '{csv_path}' (FORMAT csv, HEADER true)")
        db = admin.rsplit("/", 1)[1]
        user_url = f"postgresql://egress@127.0.0.1:{server.port}/{db}"

        def count() -> None:
            with psycopg.connect(admin) as conn:
                n = conn.execute("SELECT count(*) FROM rows").fetchone()
            assert n is not None and n[0] == args.rows, n

        def copy_file() -> None:
            with psycopg.connect(admin) as conn:
                conn.execute("DELETE FROM rows")
                conn.execute(f"COPY rows FROM '{csv_path}' (FORMAT csv, HEADER true)")

        def copy_stdin() -> None:
            with psycopg.connect(f"{user_url.replace('egress@', 'egress:bench-pw@')}") as conn:
                conn.execute("DELETE FROM rows")
                with (
                    conn.cursor() as cur,
                    cur.copy("COPY rows FROM STDIN (FORMAT csv, HEADER true)") as copy,
                    open(csv_path, "rb") as f,
                ):
                    while block := f.read(1 << 20):
                        copy.write(block)

        home = work / "home"
        os.environ["TUSK_SANDBOX"] = "none"
        with tusk.Client(home) as c:
            c.create_repo("in")
            c.put_file("in@master:/rows/rows.csv", str(csv_path))
            c.create_secret(
                {
                    "kind": "Secret",
                    "metadata": {"name": "pg"},
                    "stringData": {"password": "bench-pw"},
                }
            )
            commit = c.inspect_commit("in@master").id
        egress = Egress.model_validate(
            {
                "sql_database": {
                    "url": user_url,
                    "file_format": {
                        "type": "CSV",
                        "columns": ["id", "name", "score", "day", "note"],
                    },
                    "secret": {"name": "pg", "key": "password"},
                }
            }
        )
        services = Services.open(home)
        summary: list[str] = []

        def tusk_egress() -> None:
            summary.append(egress_commit(services.pps.pfs, services.pps.secrets, commit, egress))

        results: dict[str, list[float]] = {"copy_file": [], "copy_stdin": [], "tusk_egress": []}
        for _ in range(args.repeat):
            results["copy_file"].append(timed(copy_file, count))
            results["copy_stdin"].append(timed(copy_stdin, count))
            results["tusk_egress"].append(timed(tusk_egress, count))
        services.close()

        # The same egress at the end of a pipeline job, start to done.
        with tusk.Client(home) as c:
            c.create_pipeline(
                {
                    "pipeline": {"name": "export"},
                    "input": {"pfs": {"repo": "in", "glob": "/", "name": "in"}},
                    "transform": {"cmd": ["sh", "-c", 'cp -R "$TUSK_PFS"/in/. "$TUSK_PFS"/out/']},
                    "egress": egress.model_dump(exclude_none=True),
                }
            )
            t0 = time.perf_counter()
            c.run_scheduler(once=True)
            job_seconds = time.perf_counter() - t0
            job = c.list_jobs("export")[0]
            assert (job.state, job.reason) == ("success", ""), job
        count()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    floor = min(results["copy_file"])
    report: dict[str, Any] = {
        "rows": args.rows,
        "csv_bytes": size,
        "repeat": args.repeat,
        "best_seconds": {k: min(v) for k, v in results.items()},
        "all_seconds": results,
        "job_with_egress_seconds": job_seconds,
        "tusk_summary": summary[-1],
        "ratio_tusk_vs_copy_file": min(results["tusk_egress"]) / floor,
        "ratio_tusk_vs_copy_stdin": min(results["tusk_egress"]) / min(results["copy_stdin"]),
    }
    print(f"{args.rows:,} rows, {size / 1e6:.1f} MB of CSV, best of {args.repeat}:")
    for label, key in (
        ("PostgreSQL COPY FROM file", "copy_file"),
        ("PostgreSQL COPY FROM STDIN (psycopg)", "copy_stdin"),
        ("Tusk SQL egress", "tusk_egress"),
    ):
        s = min(results[key])
        print(f"  {label:<38} {s:7.3f} s  {args.rows / s:>10,.0f} rows/s")
    print(f"  {'whole job with egress (1 datum)':<38} {job_seconds:7.3f} s")
    print(
        f"  Tusk egress / COPY FROM file = {report['ratio_tusk_vs_copy_file']:.2f}x; "
        f"/ COPY FROM STDIN = {report['ratio_tusk_vs_copy_stdin']:.2f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
