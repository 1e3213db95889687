#!/usr/bin/env python3
"""Import by reference (issue 23): ``tusk import`` of ``--objects`` objects (default 100,000)
from a local S3 endpoint, against ``aws s3 ls --recursive`` of the same prefix, in the same
run (target: the import within 2x of the listing itself). Then a copy of ``--copy`` other
objects of 16 KiB (default 2,000: ``tusk put file -r -f s3://...``, their bytes read into the
store, several objects fetched at once) against ``aws s3 cp --recursive`` of the same
objects to a folder (no target: the issue names none).

The endpoint is moto in server mode on 127.0.0.1 (as the tests use; no MinIO on these
machines): it answers the same ListObjectsV2 pages as S3, 1,000 keys each, so both sides do
the same listing requests, and the import then writes one commit of that many file entries.
The objects are small (the import reads none of them). Both are whole processes on the
embedded store: ``tusk --home H import repo@master:/raw s3://bucket/raw --endpoint-url ...``
and ``aws s3 ls s3://bucket/raw/ --recursive --endpoint-url ...`` (the aws CLI of
``./dev.sh``, in .venv/awscli), ``--repeat`` rounds in turn (a fresh repo per import), and the
best of each is kept.

    .venv/bin/python bench/bench_import.py                   # 100,000 objects
    .venv/bin/python bench/bench_import.py --objects 5000     # smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from s3server import CREDENTIALS, REGION, S3Server  # noqa: E402

TUSK = [sys.executable, "-m", "tusk.cli.main"]
AWS = HERE.parent / ".venv" / "awscli" / "bin" / "aws"
TARGET = 2.0


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed: {r.stderr[-2000:]}")
    return took, r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--copy", type=int, default=2000, help="objects for the copy (16 KiB each)")
    args = ap.parse_args()
    if not AWS.exists():
        raise SystemExit(f"the aws CLI is missing at {AWS}: ./dev.sh installs it")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUSK_", "AWS_"))}
    env.update({
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true",
    })  # fmt: skip
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    server = S3Server()
    work = Path(tempfile.mkdtemp(prefix="tusk-bench-import-"))
    try:
        s3 = server.client()
        bucket = server.new_bucket()
        t = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(
                lambda i: s3.put_object(Bucket=bucket, Key=f"raw/d{i % 100:02}/o{i:06}.bin",
                                        Body=b"%d\n" % i),
                range(args.objects),
            ))  # fmt: skip
        print(f"{args.objects:,} objects put in {time.perf_counter() - t:.0f} s", flush=True)
        home = work / "home"
        subprocess.run([*TUSK, "--home", str(home), "init"], env=env, capture_output=True)
        url = f"s3://{bucket}/raw"
        ls = [str(AWS), "s3", "ls", f"{url}/", "--recursive", "--endpoint-url", server.endpoint]
        tusk_t, aws_t = [], []
        for i in range(args.repeat):
            timed([*TUSK, "--home", str(home), "create", "repo", f"r{i}"], env)
            took, out = timed(
                [*TUSK, "--home", str(home), "import", f"r{i}@master:/raw", url,
                 "--endpoint-url", server.endpoint], env,
            )  # fmt: skip
            assert out.startswith(f"imported {args.objects} object(s)"), out
            tusk_t.append(took)
            took, out = timed(ls, env)
            assert len(out.splitlines()) == args.objects, len(out.splitlines())
            aws_t.append(took)
        best_tusk, best_aws = min(tusk_t), min(aws_t)
        ratio = best_tusk / best_aws
        print(f"\n{args.objects:,} objects, {args.repeat} rounds (best of each)")
        print(f"  tusk import (one commit, by reference): {best_tusk:7.2f} s   runs: "
              + " ".join(f"{x:.2f}" for x in tusk_t))  # fmt: skip
        print(f"  aws s3 ls --recursive:                  {best_aws:7.2f} s   runs: "
              + " ".join(f"{x:.2f}" for x in aws_t))  # fmt: skip
        verdict = "PASS" if ratio <= TARGET else "FAIL"
        print(f"  ratio: {ratio:.2f}   target <= {TARGET}: {verdict}")
        copy_t, cp_t = [], []
        count = args.copy
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(
                lambda i: s3.put_object(Bucket=bucket, Key=f"copy/k{i % 20:02}/c{i:06}.bin",
                                        Body=os.urandom(16 * 1024)),
                range(count),
            ))  # fmt: skip
        src = f"s3://{bucket}/copy"
        for i in range(args.repeat):
            timed([*TUSK, "--home", str(home), "create", "repo", f"c{i}"], env)
            took, _ = timed(
                [*TUSK, "--home", str(home), "put", "file", f"c{i}@master:/raw", "-r", "-f", src,
                 "--endpoint-url", server.endpoint], env,
            )  # fmt: skip
            copy_t.append(took)
            took, _ = timed([str(AWS), "s3", "cp", f"{src}", str(work / f"cp{i}"), "--recursive",
                             "--quiet", "--endpoint-url", server.endpoint], env)  # fmt: skip
            assert sum(len(f) for _, _, f in os.walk(work / f"cp{i}")) == count
            cp_t.append(took)
        best_copy, best_cp = min(copy_t), min(cp_t)
        print(f"\n{count:,} objects of 16 KiB copied (their bytes read), {args.repeat} rounds "
              "(best of each)")  # fmt: skip
        print(f"  tusk put file -r -f s3://... (one commit): {best_copy:7.2f} s   runs: "
              + " ".join(f"{x:.2f}" for x in copy_t))  # fmt: skip
        print(f"  aws s3 cp --recursive (to a folder):       {best_cp:7.2f} s   runs: "
              + " ".join(f"{x:.2f}" for x in cp_t))  # fmt: skip
        print(f"  ratio: {best_copy / best_cp:.2f}")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
