#!/usr/bin/env python3
"""Retention: how much of the data that expired commits alone held ``tusk gc`` gives back.

A repo gets ``--commits`` commits, each rewriting one file of ``--size`` MiB of incompressible
bytes (so every commit holds data no other commit shares) next to a folder that never
changes; a rule keeps the newest ``--keep`` commits. Bytes expired: the sizes of the file
versions only the expired commits held (known by construction). Returned: pack bytes in the
object store before ``tusk gc --grace 0`` minus after. Also timed: the gc, its dry run (which
must predict the space), and fsck afterwards. Local folder; ``--s3`` adds a run on S3 (moto in
server mode on 127.0.0.1, an emulator: its timings are not S3's).

    .venv/bin/python bench/bench_retention.py                # 50 commits x 8 MiB, keep 5
    .venv/bin/python bench/bench_retention.py --s3
    .venv/bin/python bench/bench_retention.py --commits 10 --size 1 --keep 2   # smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import blake3

from tusk import Client
from tusk.storage.backends import open_backend

MiB = 1 << 20
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def data(i: int, size: int) -> bytes:
    return blake3.blake3(b"bench-retention %d" % i).digest(length=size)


def packs(url: str) -> int:
    backend = open_backend(url)
    try:
        return sum(o.size for o in backend.list("packs/"))
    finally:
        backend.close()


def run(label: str, home: Path, url: str, commits: int, size: int, keep: int) -> None:
    with Client(home) as c:
        c.create_repo("r")
        c.put_files("r@master", [(f"/same/{i}", data(-1 - i, 64 * 1024)) for i in range(64)])
        for i in range(commits):
            c.put_file("r@master:/model.bin", data(i, size))
        c.set_retention("r", keep_last=keep)
        # Expired: every commit but the newest `keep`, the first (only /same) among them; its
        # files live on in the kept commits. The data only they held: their model.bin versions.
        expired_bytes = (commits - keep) * size
        before = packs(url)
        t0 = time.perf_counter()
        plan = c.gc(grace=0, dry_run=True)
        t_plan = time.perf_counter() - t0
        t0 = time.perf_counter()
        done = c.gc(grace=0)
        t_gc = time.perf_counter() - t0
        after = packs(url)
        t0 = time.perf_counter()
        ok = c.fsck().ok
        t_fsck = time.perf_counter() - t0
        assert ok and len(c.list_commits("r@master")) == keep
        assert c.get_file("r@master:/model.bin") == data(commits - 1, size)
    returned = before - after
    print(
        f"{label}: {len(done.expired)} commits expired holding {expired_bytes / MiB:.0f} MiB "
        f"of their own; returned {returned / MiB:.1f} MiB = {returned / expired_bytes:.3f} of "
        f"it (dry run predicted {plan.bytes_freed / MiB:.1f} MiB); dry run {t_plan:.2f} s, "
        f"gc {t_gc:.2f} s, fsck after {t_fsck:.2f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=50)
    ap.add_argument("--size", type=int, default=8, help="MiB per file version")
    ap.add_argument("--keep", type=int, default=5)
    ap.add_argument("--s3", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-retention-"))
    try:
        os.environ.pop("TUSK_STORAGE_URL", None)
        os.environ.pop("TUSK_METADATA_URL", None)
        home = work / "local"
        run("local", home, str(home / "objects"), args.commits, args.size * MiB, args.keep)
        if args.s3:
            from s3server import S3Server

            server = S3Server()
            try:
                os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                                  AWS_DEFAULT_REGION="us-east-1")  # fmt: skip
                url = server.url(server.new_bucket())
                os.environ["TUSK_STORAGE_URL"] = url
                run("s3 (moto)", work / "s3", url, args.commits, args.size * MiB, args.keep)
            finally:
                os.environ.pop("TUSK_STORAGE_URL", None)
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
