#!/usr/bin/env python3
"""gc: how much of a deleted 90% of a repo's data ``tusk gc`` gives back, and how fast.

One upload of many files (so every pack holds many of them), a second repo that keeps every
tenth file (deduplicated: no new data), then the first repo is deleted: about 90% of the
stored bytes are garbage, spread over every pack, each pack about 10% live. The script
measures the backend's pack bytes before, after a gc with repacking off (rows and wholly
dead packs only), and after a gc with the default threshold, and prints the fraction of the
deleted data's space that came back. Kept files are read back and hash-checked, and fsck
must be clean. Local folder always; S3 too with ``--s3`` (moto in server mode on 127.0.0.1,
an emulator: its timings are not S3's).

    .venv/bin/python bench/bench_gc.py                 # 256 MiB, local
    .venv/bin/python bench/bench_gc.py --s3            # and on S3 (moto)
    .venv/bin/python bench/bench_gc.py --scale 0.1     # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import blake3

from tusk import Client
from tusk.storage.backends import ObjectBackend, open_backend

MiB = 1024 * 1024
SEED = b"tusk-bench-gc-v1"


def content(i: int) -> bytes:
    """16 to 112 KiB of pseudo-random bytes (one to a few chunks each)."""
    size = 16 * 1024 + (int.from_bytes(blake3.blake3(SEED + b"%d" % i).digest()[:4]) % (96 * 1024))
    return blake3.blake3(SEED + b"file %d" % i).digest(length=size)


def stored(backend: ObjectBackend) -> tuple[int, int]:
    objs = list(backend.list("packs/"))
    return sum(o.size for o in objs), len(objs)


def run(label: str, home: Path, url: str, files: int, src: Path) -> dict[str, Any]:
    backend = open_backend(url)
    every, kept = src / "all", src / "kept"
    kept_bytes = total_bytes = 0
    if not every.exists():
        for i in range(files):
            data = content(i)
            total_bytes += len(data)
            for d in (every, kept) if i % 10 == 0 else (every,):
                d.mkdir(parents=True, exist_ok=True)
                (d / f"f{i:05d}.bin").write_bytes(data)
            kept_bytes += len(data) if i % 10 == 0 else 0
    else:
        for i in range(files):
            n = len(content(i))
            total_bytes += n
            kept_bytes += n if i % 10 == 0 else 0
    with Client(home) as c:
        t = time.perf_counter()
        c.create_repo("all")
        c.create_repo("keep")
        c.put_dir("all@master:/d", every)
        c.put_dir("keep@master:/d", kept)
        c.delete_repo("all")
        put_s = time.perf_counter() - t
        before, packs_before = stored(backend)
        t = time.perf_counter()
        sweep = c.gc(grace=0, repack_threshold=0)
        sweep_s = time.perf_counter() - t
        after_sweep, _ = stored(backend)
        t = time.perf_counter()
        report = c.gc(grace=0)
        gc_s = time.perf_counter() - t
        after, packs_after = stored(backend)
        for i in range(0, files, 10):
            assert c.get_file(f"keep@master:/d/f{i:05d}.bin") == content(i), i
        fsck = c.fsck()
        assert fsck.ok and not fsck.notes, (fsck.problems, fsck.notes)
    backend.close()
    deleted_share = 1 - kept_bytes / total_bytes
    deleted_space = deleted_share * before
    return {
        "backend": label,
        "files": files,
        "data_mib": round(total_bytes / MiB, 1),
        "deleted_share": round(deleted_share, 3),
        "put_s": round(put_s, 2),
        "packs_before": packs_before,
        "stored_before_mib": round(before / MiB, 2),
        "after_sweep_only_mib": round(after_sweep / MiB, 2),
        "sweep_only_reclaimed": round((before - after_sweep) / deleted_space, 3),
        "sweep_s": round(sweep_s, 2),
        "stored_after_mib": round(after / MiB, 2),
        "packs_after": packs_after,
        "reclaimed": round((before - after) / deleted_space, 3),
        "packs_repacked": report.packs_repacked,
        "rewritten_mib": round(report.bytes_rewritten / MiB, 2),
        "gc_s": round(gc_s, 2),
        "sweep_deleted_packs": sweep.packs_deleted,
    }


def moto_url(bucket: str) -> tuple[str, Any]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench-secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    import boto3

    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/tusk?endpoint={endpoint}", server


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="shrink the 4,000 files")
    ap.add_argument("--s3", action="store_true", help="also on S3 (moto server)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    files = max(50, int(4000 * args.scale))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tusk-bench-gc-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        os.environ.pop("TUSK_STORAGE_URL", None)
        home = work / "home-local"
        results.append(run("local", home, str(home / "objects"), files, work / "src"))
        if args.s3:
            url, server = moto_url("tusk-bench-gc")
            os.environ["TUSK_STORAGE_URL"] = url
            try:
                results.append(run("s3 (moto)", work / "home-s3", url, files, work / "src"))
            finally:
                os.environ.pop("TUSK_STORAGE_URL", None)
                server.stop()
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    for r in results:
        print(
            f"\n{r['backend']}: {r['files']} files, {r['data_mib']} MiB, "
            f"{r['deleted_share']:.0%} deleted"
        )
        print(
            f"  stored before gc        {r['stored_before_mib']:>9.2f} MiB in "
            f"{r['packs_before']} packs"
        )
        print(
            f"  gc, repack off          {r['after_sweep_only_mib']:>9.2f} MiB  "
            f"reclaimed {r['sweep_only_reclaimed']:.1%} of the deleted data  ({r['sweep_s']} s)"
        )
        print(
            f"  gc, threshold 0.5       {r['stored_after_mib']:>9.2f} MiB in "
            f"{r['packs_after']} packs  reclaimed {r['reclaimed']:.1%}  ({r['gc_s']} s, "
            f"{r['packs_repacked']} packs repacked, {r['rewritten_mib']} MiB rewritten)"
        )
        verdict = "PASS" if r["reclaimed"] >= 0.85 else "FAIL"
        print(f"  target >= 85% of the deleted data's space: {verdict}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
