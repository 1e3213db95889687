#!/usr/bin/env python3
"""The Python floor for ingest: the least work any Python tool does to store D1 and D2.

* D1 (many small files): list the folder, read each file, BLAKE3 it, append it to one pack
  file, and write one index row per file in one SQLite transaction. Nothing else: no
  chunking, no compression probe, no dedup lookup, no tree, no commit.
* D2 (one big file): read it in 8 MiB blocks, BLAKE3 them, write them to one file.

With ``--sync full`` (the default, as ``TUSK_SYNC=full``) the pack and the D2 copy are
fdatasync-ed and SQLite commits with ``synchronous=FULL``, so the floor makes its data as
durable as Tusk does; with ``--sync none`` nothing is flushed.

``bench_store.py`` runs this file as its own process (so its wall time includes the
interpreter's start-up, as a ``tusk`` command's does) and also imports :func:`floor_d1` and
:func:`floor_d2`. Alone::

    .venv/bin/python bench/floor.py d1 DIR [--out WORKDIR] [--sync full|none]
    .venv/bin/python bench/floor.py d2 FILE [--out WORKDIR] [--sync full|none]

It prints one JSON line: the seconds of the work (start-up excluded), files, bytes, MB/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import blake3

BLOCK = 8 * 1024 * 1024
MB = 1_000_000


@dataclass(frozen=True)
class FloorResult:
    seconds: float  # the work, from the first listing or read to the last flush
    files: int
    bytes: int

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / MB if self.seconds else 0.0

    def to_json(self) -> dict[str, float | int]:
        return {**asdict(self), "MBps": round(self.mb_per_s, 1)}


def walk(root: str) -> Iterator[tuple[str, str]]:
    """(relative path, full path) of every regular file below ``root``, in name order."""
    stack = [("", root)]
    while stack:
        rel, full = stack.pop()
        with os.scandir(full) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for e in entries:
            name = f"{rel}/{e.name}" if rel else e.name
            if e.is_dir(follow_symlinks=False):
                subdirs.append((name, e.path))
            elif e.is_file(follow_symlinks=False):
                yield name, e.path
        stack.extend(reversed(subdirs))


def floor_d1(
    src: str | os.PathLike[str], out: str | os.PathLike[str], sync: bool = True
) -> FloorResult:
    """Store every file below ``src`` into ``out/pack`` + ``out/index.db``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = []
    total = 0
    with open(out / "pack", "wb") as pack:
        for rel, full in walk(os.fspath(src)):
            fd = os.open(full, os.O_RDONLY)
            try:
                data = os.read(fd, os.fstat(fd).st_size or 1)
            finally:
                os.close(fd)
            rows.append((rel, blake3.blake3(data).digest(), total, len(data)))
            pack.write(data)
            total += len(data)
        pack.flush()
        if sync:
            os.fdatasync(pack.fileno())
    db = sqlite3.connect(out / "index.db", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if sync else 'OFF'}")
        db.execute(
            "CREATE TABLE IF NOT EXISTS files"
            " (path TEXT PRIMARY KEY, hash BLOB, offset INTEGER, length INTEGER)"
        )
        db.execute("BEGIN")
        db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    finally:
        db.close()
    return FloorResult(time.perf_counter() - start, len(rows), total)


def floor_d2(
    src: str | os.PathLike[str], out: str | os.PathLike[str], sync: bool = True
) -> FloorResult:
    """Copy ``src`` to ``out/copy.bin`` in 8 MiB blocks, hashing them; flush it to disk."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    start = time.perf_counter()
    hasher = blake3.blake3()
    total = 0
    fin = os.open(src, os.O_RDONLY)
    fout = os.open(out / "copy.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while n := os.readv(fin, [buf]):
            piece = view[:n]
            hasher.update(piece)
            written = 0
            while written < n:
                written += os.write(fout, piece[written:])
            total += n
        if sync:
            os.fdatasync(fout)
    finally:
        os.close(fin)
        os.close(fout)
    hasher.digest()
    return FloorResult(time.perf_counter() - start, 1, total)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=["d1", "d2"])
    parser.add_argument("source", help="D1: a folder; D2: a file")
    parser.add_argument("--out", help="where the pack/copy goes (default: a temp dir, removed)")
    parser.add_argument("--sync", choices=["full", "none"], default="full")
    args = parser.parse_args(argv)
    run = floor_d1 if args.dataset == "d1" else floor_d2
    if args.out is not None:
        result = run(args.source, args.out, args.sync == "full")
    else:
        with tempfile.TemporaryDirectory(prefix="tusk-floor-") as tmp:
            result = run(args.source, tmp, args.sync == "full")
    print(json.dumps(result.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
