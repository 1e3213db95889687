#!/usr/bin/env python3
"""A long write + read load against one Tusk server process, with the checks at the end.

The longer companion of ``tests/api/test_load.py`` (issue 4): the same shape of load, for
minutes instead of one burst, with per-operation rates and latencies over time windows so
that one can see whether throughput degrades as the repos grow.

* Starts ``tusk up`` (API and scheduler in one process, so the measured process runs the
  pipelines too; ``tusk serve`` with ``--pipelines 0``) with ``--port 0`` (a free 127.0.0.1
  port) on its own ``TUSK_HOME`` in a fresh work folder, on SQLite or on PostgreSQL (a server
  started with ``tests/pgserver.py``, as ``bench/bench_server.py`` and the tests do). Datums
  run as short child processes of it (``TUSK_SANDBOX=none``), not counted in its RSS.
* For ``--duration`` seconds, ``--clients`` clients each loop over a random mix (seeded) of
  ``put_file`` (a new file under ``/c<k>/`` of repo ``r<k mod repos>``, or an overwrite of one
  of its own), ``get_file`` (one of its own files, compared with the bytes it put last),
  ``list_files`` of ``/c<k>`` (every file it put must be listed), ``inspect_commit`` of the
  repo's master and ``diff_file`` of the repo's master against its parent, in the
  proportions of ``MIX`` (each client starts with ``INITIAL_FILES`` files, put before the
  timed run, so its mix is the same from the first second); ``--committers`` committers each
  loop appending commits to the one branch ``shared@master``, each commit putting one new
  file, and keep every commit id the server returns; for each of ``--pipelines`` pipelines
  ``count<i>`` (input ``feed<i>``, glob ``/*``: ``FEED_DIRS`` datums, each writing the byte
  count of its folder), a feeder puts one file into ``feed<i>`` every ``--feed-every``
  seconds, so a job starts every time (one datum runs, the others are skipped) while the
  load goes on.
* The server's RSS every ``--rss-every`` seconds; the growth after warm-up (``--warmup``,
  default the first 20% of the run) is (RSS at the end of the load - RSS after warm-up) /
  RSS after warm-up, checked against ``--max-growth`` percent. ``--probe`` runs the server
  under :func:`probed_server`, which on SIGUSR2 (sent after warm-up and at the end) dumps
  its RSS, threads, the cyclic collector's state, gc-tracked objects by type, the tree-node
  caches, glibc's ``mallinfo2()``, CPython's small-object allocator and its resident memory
  by kind of mapping; ``--tracemalloc FRAMES`` adds ``python -X tracemalloc=FRAMES`` and
  prints the allocation sites that grew most between the two dumps (the server is then 2-3
  times slower, and the snapshots themselves take memory: use it to find a site, not to
  measure the growth).
* Every operation is timed; the report gives per operation the count, errors by exception
  class, ops/s and p50/p95/p99 latency over the whole run and per ``--window`` seconds,
  with the server's CPU and RSS in each window (operations still in flight at the end finish
  in a last, shorter "tail" window).
* Checks at the end (any failure: exit status 1): no thread hung; the only errors are
  ``tusk.errors.Conflict`` itself (HTTP 409 ``conflict``: "a commit is already open on the
  branch" / "changed while appending", the documented retryable conflicts; this load opens
  no commits and appends nothing, so none are expected, and ``tests/api/test_load.py``
  asserts none); every commit id a committer got back is in ``list_commits("shared@master")``
  and the branch holds exactly the seed commit plus those; every committed file is on the
  branch and reads back with the right bytes; every client's files are in its repo with the
  bytes it put last; the server's RSS grew by at most ``--max-growth`` percent after
  warm-up; each pipeline's jobs all succeeded, one per fed commit, and its outputs hold the
  right byte counts; the server's peak RSS (``VmHWM``) stays under ``--max-rss-mib``; the
  server stops cleanly on SIGTERM; ``tusk fsck`` on the home finds nothing.

Threads or processes. The clients and committers are threads, each with its own HTTP client
(``tusk.Client(address=...)``), in one worker process by default; ``--procs N`` spreads them
round-robin over N processes. One process is not the bottleneck on the 2-vCPU machine of
docs/benchmarks.md: in three 30 s runs on SQLite (50 clients, 20 committers, 2026-11-27
18:42 UTC, load average 3-7 from other work) the 70 threads in 1, 2 and 4 processes made
62.4, 64.5 and 66.3 ops/s, and the client processes used 0.27, 0.27 and 0.28 cores in all
while the server used 0.75-0.78: the client is far from one core of GIL, the server (one
uvicorn process, writes one at a time under the metadata write lock) and the two shared cores
are the limit, and 2 or 4 processes changed nothing beyond noise. The report prints both
CPU figures, so a run on other hardware shows whether the client has become the limit (then
raise --procs).

    .venv/bin/python bench/bench_load.py [--engine sqlite|postgres] [--duration 120]
        [--clients 50] [--committers 20] [--repos 5] [--seed 1] [--window 10]
        [--procs 1] [--pipelines 1] [--feed-every 2] [--rss-every 5] [--warmup S]
        [--max-growth 10] [--probe] [--tracemalloc FRAMES] [--top 15]
        [--workdir DIR] [--keep] [--json PATH|-]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing as mp
import os
import queue
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from servers import postgres

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TUSK = Path(sys.executable).parent / "tusk"

CLIENT_OPS = ("put", "get", "list", "inspect", "diff")
OPS = (*CLIENT_OPS, "commit", "feed")
# percent of a client's operations
MIX = {"put": 25, "get": 30, "list": 15, "inspect": 15, "diff": 15}
OVERWRITE = 0.2  # share of a client's puts that overwrite one of its files instead of a new one
CLIENT_SIZE = (512, 32 * 1024)  # bytes of a client's file, uniform
COMMIT_SIZE = (64, 4096)  # bytes of a committer's file (after its header), uniform
TOLERATED = frozenset({"Conflict"})  # tusk.errors.Conflict itself, not its subclasses
SHARED = "shared"
INITIAL_FILES = 4  # files each client puts (one commit per repo) before the timed run
SEED_PATH = "/seed"
HANG_GRACE = 120.0  # seconds after the end an operation may still take before it counts as hung
FEED = "feed"  # input repo feed<i> of pipeline count<i>
FEED_DIRS = 8  # top-level folders of a feed repo: one datum each (glob /*)
FEED_SIZE = (256, 8192)  # bytes of a fed file, uniform
# A datum: the total bytes of its folder's files, into /pfs/out/<folder>.
COUNT_CMD = (
    'p="${TUSK_PFS:-/pfs}"; for d in "$p"/in/*; do cat "$d"/* | wc -c > "$p/out/${d##*/}"; done'
)

T = TypeVar("T")
Record = tuple[str, float, float, str]  # op, start (s after t0), latency (s), error class or ""


class Mismatch(Exception):
    """A read that did not return what this client wrote."""


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# The load: runs in worker processes, one thread per client or committer


@dataclass
class Shard:
    index: int
    address: str
    seed: int
    repos: int
    clients: list[int]
    committers: list[int]
    initial: dict[int, dict[str, str]]  # client -> its files put before the run -> digest
    feeders: list[int] = field(default_factory=list)  # pipelines whose input repo this feeds
    feed_every: float = 2.0


@dataclass
class ShardResult:
    records: list[Record] = field(default_factory=list)
    # committer k, commit number, commit id, path, digest of the bytes
    commits: list[tuple[int, int, str, str, str]] = field(default_factory=list)
    shared_uncertain: list[str] = field(default_factory=list)  # puts that failed: may exist
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # repo -> path -> digest
    uncertain: dict[str, list[str]] = field(default_factory=dict)  # repo -> paths
    samples: dict[str, str] = field(default_factory=dict)  # "op ErrorClass" -> first message
    hung: list[str] = field(default_factory=list)
    # pipeline -> (path, size) of each fed file; the commit set of the last successful feed
    fed: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    fed_uncertain: dict[int, list[str]] = field(default_factory=dict)
    last_feed: dict[int, str] = field(default_factory=dict)
    cpu_s: float = 0.0
    threads: int = 0


class ShardRun:
    def __init__(self, shard: Shard, t0: float, stop: float) -> None:
        self.shard = shard
        self.t0 = t0
        self.stop = stop
        self.result = ShardResult()
        self._lock = threading.Lock()

    def timed(self, op: str, out: list[Record], fn: Callable[[], T]) -> tuple[bool, T | None]:
        start = time.monotonic()
        try:
            value = fn()
        except Exception as exc:  # counted by class; the checks decide what is tolerated
            end = time.monotonic()
            name = type(exc).__name__
            out.append((op, start - self.t0, end - start, name))
            with self._lock:
                self.result.samples.setdefault(f"{op} {name}", str(exc)[:300])
            return False, None
        out.append((op, start - self.t0, time.monotonic() - start, ""))
        return True, value

    def client(self, k: int) -> None:
        import tusk

        rng = random.Random(f"{self.shard.seed}:client:{k}")
        repo = f"r{k % self.shard.repos}"
        folder = f"/c{k:03d}"
        files = dict(self.shard.initial.get(k, {}))
        paths = sorted(files)
        uncertain: list[str] = []
        out: list[Record] = []
        ops, weights = list(MIX), list(MIX.values())
        c = tusk.Client(address=self.shard.address)
        try:
            while time.monotonic() < self.stop:
                op = rng.choices(ops, weights)[0] if paths else "put"
                if op == "put":
                    if paths and rng.random() < OVERWRITE:
                        path = rng.choice(paths)
                    else:
                        path = f"{folder}/f{len(paths):05d}.bin"
                    data = rng.randbytes(rng.randint(*CLIENT_SIZE))
                    ok, _ = self.timed(op, out, partial(c.put_file, f"{repo}@master:{path}", data))
                    if path not in files and path not in uncertain:
                        paths.append(path)
                    if ok:
                        files[path] = digest(data)
                    else:  # the put may or may not have landed
                        files.pop(path, None)
                        uncertain.append(path)
                elif op == "get":
                    path = rng.choice(paths)
                    want = files.get(path)

                    def get(path: str = path, want: str | None = want) -> None:
                        got = c.get_file(f"{repo}@master:{path}")
                        if want is not None and digest(got) != want:
                            raise Mismatch(f"{repo}@master:{path}: {len(got)} other bytes")

                    self.timed(op, out, get)
                elif op == "list":

                    def ls() -> None:
                        listed = {f.path for f in c.list_files(f"{repo}@master:{folder}")}
                        lost = [p for p in files if p not in listed]
                        if lost:
                            raise Mismatch(f"{len(lost)} put files not listed, e.g. {lost[0]}")

                    self.timed(op, out, ls)
                elif op == "diff":

                    def diff() -> None:  # master against its parent
                        for e in c.diff_file(f"{repo}@master"):
                            if e.change not in ("added", "removed", "changed"):
                                raise Mismatch(f"diff entry {e.path}: change {e.change!r}")

                    self.timed(op, out, diff)
                else:
                    self.timed(op, out, lambda: c.inspect_commit(f"{repo}@master"))
        finally:
            c.close()
            with self._lock:
                self.result.records.extend(out)
                self.result.files.setdefault(repo, {}).update(files)
                self.result.uncertain.setdefault(repo, []).extend(uncertain)

    def committer(self, k: int) -> None:
        import tusk

        rng = random.Random(f"{self.shard.seed}:committer:{k}")
        out: list[Record] = []
        commits: list[tuple[int, int, str, str, str]] = []
        uncertain: list[str] = []
        c = tusk.Client(address=self.shard.address)
        i = 0
        try:
            while time.monotonic() < self.stop:
                path = f"/w{k:03d}/{i:06d}.bin"
                data = f"committer {k} commit {i}\n".encode() + rng.randbytes(
                    rng.randint(*COMMIT_SIZE)
                )
                put = partial(c.put_file, f"{SHARED}@master:{path}", data)
                ok, res = self.timed("commit", out, put)
                if ok and res is not None:
                    commits.append((k, i, res.commit.id, path, digest(data)))
                else:
                    uncertain.append(path)
                i += 1
        finally:
            c.close()
            with self._lock:
                self.result.records.extend(out)
                self.result.commits.extend(commits)
                self.result.shared_uncertain.extend(uncertain)

    def feeder(self, i: int) -> None:
        """Puts one file to ``feed<i>@master`` every ``feed_every`` s: a job of ``count<i>``
        each time (one datum of ``FEED_DIRS`` runs, the others are skipped)."""
        import tusk

        rng = random.Random(f"{self.shard.seed}:feeder:{i}")
        out: list[Record] = []
        fed: list[tuple[str, int]] = []
        uncertain: list[str] = []
        last = ""
        c = tusk.Client(address=self.shard.address)
        n = 0
        try:
            while time.monotonic() < self.stop:
                path = f"/d{n % FEED_DIRS}/{n:06d}.bin"
                data = rng.randbytes(rng.randint(*FEED_SIZE))
                put = partial(c.put_file, f"{FEED}{i}@master:{path}", data)
                ok, res = self.timed("feed", out, put)
                if ok and res is not None:
                    fed.append((path, len(data)))
                    last = res.commit.commit_set
                else:
                    uncertain.append(path)
                n += 1
                due = self.t0 + n * self.shard.feed_every
                time.sleep(max(0.0, min(due, self.stop) - time.monotonic()))
        finally:
            c.close()
            with self._lock:
                self.result.records.extend(out)
                self.result.fed[i] = fed
                self.result.fed_uncertain[i] = uncertain
                if last:
                    self.result.last_feed[i] = last


def run_shard(shard: Shard, go: Any, clock: Any, out: Any) -> None:
    """A worker process: its clients' and committers' threads, from ``clock[0]`` to ``clock[1]``."""
    try:
        import tusk

        tusk.Client(address=shard.address).close()  # imports the SDK before "ready", untimed

        out.put(("ready", shard.index, None))
        go.wait()
        t0, stop = clock[0], clock[1]
        run = ShardRun(shard, t0, stop)
        threads = [
            threading.Thread(target=run.client, args=(k,), name=f"client-{k}", daemon=True)
            for k in shard.clients
        ]
        threads += [
            threading.Thread(target=run.committer, args=(k,), name=f"committer-{k}", daemon=True)
            for k in shard.committers
        ]
        threads += [
            threading.Thread(target=run.feeder, args=(i,), name=f"feeder-{i}", daemon=True)
            for i in shard.feeders
        ]
        time.sleep(max(0.0, t0 - time.monotonic()))
        before = resource.getrusage(resource.RUSAGE_SELF)
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, stop + HANG_GRACE - time.monotonic()))
        after = resource.getrusage(resource.RUSAGE_SELF)
        with run._lock:
            result = run.result
            result.hung = [t.name for t in threads if t.is_alive()]
            result.cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            result.threads = len(threads)
            out.put(("done", shard.index, result))
    except BaseException:
        out.put(("failed", shard.index, traceback.format_exc()))


# The server, PostgreSQL, and what /proc says about them


class Serve:
    """``tusk --home HOME serve|up --port 0`` in a subprocess; its address from its stderr.

    ``probe``: a folder; the server then runs under :func:`probed_server` (``python -X
    tracemalloc=FRAMES`` when ``frames`` > 0), and :meth:`snapshot` asks it for a dump.
    """

    def __init__(
        self,
        home: Path,
        env: dict[str, str],
        log: Path,
        command: str = "serve",
        probe: Path | None = None,
        frames: int = 0,
    ) -> None:
        tusk_args = ["--home", str(home), command, "--port", "0"]
        argv = [str(TUSK), *tusk_args]
        self.probe = probe
        self.snapshots = 0
        if probe is not None:
            probe.mkdir(parents=True, exist_ok=True)
            traced = [f"-Xtracemalloc={frames}"] if frames > 0 else []
            argv = [sys.executable, *traced, __file__, PROBE_FLAG, str(probe), *tusk_args]
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid
        self.log_lines: deque[str] = deque(maxlen=200)
        lines: queue.Queue[str | None] = queue.Queue()
        log_file = log.open("w")

        def drain() -> None:  # keeps the pipe empty for the whole run, into serve.log
            assert self.proc.stderr is not None
            with log_file:
                for line in self.proc.stderr:
                    log_file.write(line)
                    log_file.flush()
                    self.log_lines.append(line)
                    lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + (300 if frames > 0 else 60)  # tracemalloc: slow
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is not None:
                m = re.search(r"REST API on (http://\S+)/api/v1", line)
                if m:
                    self.address = m.group(1)
                    return
                continue
            self.proc.kill()
            raise SystemExit(f"tusk {command} did not start: {''.join(self.log_lines)[-800:]}")

    def snapshot(self, label: str, timeout: float = 300.0) -> Path | None:
        """Ask a probed server for a dump (SIGUSR2); the dump's JSON file, or None."""
        if self.probe is None or self.proc.poll() is not None:
            return None
        self.snapshots += 1
        done = self.probe / f"{self.snapshots:02d}-{label}.json"
        (self.probe / "next").write_text(done.stem)
        self.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while not done.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                return None
            time.sleep(0.2)
        return done

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return int(self.proc.returncode)


TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def proc_kib(pid: int, key: str) -> int:
    m = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(m.group(1)) if m else 0


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    total = sum(v[:8])
    return (total - idle) / TICK, total / TICK


@dataclass
class Sample:
    t: float
    server_cpu_s: float
    rss_kib: int
    busy_s: float
    total_s: float


class Sampler:
    """The server's CPU and RSS and the machine's CPU at t0, every window, at the end of the
    load (t0 + duration) and when stopped (all operations back)."""

    def __init__(self, pid: int, t0: float, duration: float, window: float) -> None:
        self.pid, self.t0 = pid, t0
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        n = max(1, math.ceil(duration / window - 1e-9))
        self._at = sorted({min(duration, i * window) for i in range(n + 1)})
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _take(self) -> None:
        busy, total = machine_cpu_s()
        now = time.monotonic() - self.t0
        self.samples.append(
            Sample(now, proc_cpu_s(self.pid), proc_kib(self.pid, "VmRSS"), busy, total)
        )

    def _loop(self) -> None:
        for at in self._at:
            if self._stop.wait(max(0.0, self.t0 + at - time.monotonic())):
                break
            self._take()
        self._stop.wait()
        self._take()

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(10)
        return list(self.samples)


class RssSampler:
    """The server's VmRSS every ``every`` seconds from t0 until stopped: (s after t0, KiB)."""

    def __init__(self, pid: int, t0: float, every: float) -> None:
        self.pid, self.t0, self.every = pid, t0, every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        i = 0
        while not self._stop.wait(max(0.0, self.t0 + i * self.every - time.monotonic())):
            try:
                self.samples.append((time.monotonic() - self.t0, proc_kib(self.pid, "VmRSS")))
            except OSError:
                return
            i += 1

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join(10)
        return list(self.samples)


def rss_growth(samples: list[tuple[float, int]], warmup: float, duration: float) -> dict[str, Any]:
    """RSS after warm-up (the first sample at or after ``warmup`` s) and at the end of the
    load (the last sample at or before ``duration`` s), and the growth between them."""
    after = [s for s in samples if s[0] >= warmup - 1e-6 and s[0] <= duration + 1e-6]
    if len(after) < 2:
        return {"warmup_s": warmup, "samples": len(samples)}
    (tw, warm), (te, end) = after[0], after[-1]
    return {
        "warmup_s": warmup,
        "samples": len(samples),
        "warm_t_s": tw,
        "warm_mib": warm / 1024,
        "end_t_s": te,
        "end_mib": end / 1024,
        "min_after_warmup_mib": min(v for _, v in after) / 1024,
        "max_after_warmup_mib": max(v for _, v in after) / 1024,
        "growth": (end - warm) / warm,
    }


# The server under a probe: tracemalloc snapshots and allocator figures on SIGUSR2

PROBE_FLAG = "--probed-server"


def malloc_info() -> dict[str, int]:
    """glibc's ``mallinfo2()`` over all arenas (bytes); {} where there is none."""
    import ctypes

    names = [
        "arena",
        "ordblks",
        "smblks",
        "hblks",
        "hblkhd",
        "usmblks",
        "fsmblks",
        "uordblks",
        "fordblks",
        "keepcost",
    ]

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in names]

    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = Mallinfo2
    m = fn()
    return {n: int(getattr(m, n)) for n in names}


def pymalloc_stats(path: Path) -> dict[str, int]:
    """CPython's small-object allocator, from ``sys._debugmallocstats()`` (written to fd 2,
    caught in ``path``): arenas in use and the bytes in use and free in them."""
    saved = os.dup(2)
    try:
        with path.open("w") as f:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    out: dict[str, int] = {}
    for line in path.read_text().splitlines():
        m = re.match(
            r"^# (arenas allocated current|bytes in allocated blocks|bytes in available"
            r" blocks|bytes lost to pool headers|bytes lost to quantization|bytes lost to"
            r" arena alignment)\s*=\s*([\d,]+)",
            line,
        )
        if m:
            out[m.group(1).replace(" ", "_")] = int(m.group(2).replace(",", ""))
        m = re.match(r"^(\d+) unused pools \* (\d+) bytes\s*=\s*([\d,]+)", line)
        if m:
            out["unused_pool_bytes"] = int(m.group(3).replace(",", ""))
    return out


def smaps_kib() -> dict[str, int]:
    """This process's resident KiB by kind of mapping: the main heap, glibc's 64 MiB arena
    heaps, other anonymous mappings (CPython's 1 MiB arenas, thread stacks, big mallocs) and
    files."""
    kinds: dict[str, int] = Counter()
    kind = "other"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$", line)
        if m:
            lo, hi, name = int(m.group(1), 16), int(m.group(2), 16), m.group(3).strip()
            if name == "[heap]":
                kind = "heap"
            elif name:
                kind = "file" if not name.startswith("[") else "other"
            elif lo % (64 << 20) == 0 and hi - lo <= 64 << 20:
                kind = "malloc_arenas"
            else:
                kind = "anon"
        elif line.startswith("Rss:"):
            kinds[kind] += int(line.split()[1])
    return dict(kinds)


def probed_server(folder: Path, tusk_args: list[str]) -> None:
    """Run the tusk CLI in this process; on SIGUSR2, dump what :meth:`Serve.snapshot` asked
    for into ``folder``: RSS, threads, gc objects, ``mallinfo2`` and (when tracing) a
    tracemalloc snapshot, after a full ``gc.collect()``."""
    import gc
    import tracemalloc

    wake = threading.Event()

    def dump() -> None:
        while True:
            wake.wait()
            wake.clear()
            name = (folder / "next").read_text().strip()
            before = {"enabled": gc.isenabled(), "counts": gc.get_count()}
            before["young"] = len(gc.get_objects(0))  # tracked since the last collection
            before["collected"] = gc.collect()  # unreachable objects found, i.e. garbage
            objects = gc.get_objects()
            info: dict[str, Any] = {
                "gc_before_dump": before,
                "rss_kib": proc_kib(os.getpid(), "VmRSS"),
                "threads": threading.active_count(),
                "gc_objects": len(objects),
                "types": dict(Counter(type(o).__qualname__ for o in objects).most_common(40)),
                "node_caches": [
                    [len(o._items), o.bytes] for o in objects if type(o).__name__ == "NodeCache"
                ],
                "malloc": malloc_info(),
            }
            del objects
            info["pymalloc"] = pymalloc_stats(folder / f"{name}.pymalloc")
            info["smaps"] = smaps_kib()
            if tracemalloc.is_tracing():
                info["traced"], info["traced_peak"] = tracemalloc.get_traced_memory()
                tracemalloc.take_snapshot().dump(str(folder / f"{name}.snap"))
            tmp = folder / f"{name}.tmp"
            tmp.write_text(json.dumps(info))
            tmp.rename(folder / f"{name}.json")

    threading.Thread(target=dump, name="bench-probe", daemon=True).start()
    signal.signal(signal.SIGUSR2, lambda *_: wake.set())
    from tusk.cli.main import main as tusk_main

    sys.argv = ["tusk", *tusk_args]
    tusk_main(tusk_args)


def probe_report(first: Path | None, last: Path | None, top: int) -> dict[str, Any]:
    """What grew in the server between two probe dumps: figures, and with tracemalloc the
    ``top`` allocation sites by growth (and the stack of the first few)."""
    if first is None or last is None:
        return {}
    a, b = json.loads(first.read_text()), json.loads(last.read_text())
    rep: dict[str, Any] = {"from": first.stem, "to": last.stem, "before": a, "after": b}
    snaps = [first.with_suffix(".snap"), last.with_suffix(".snap")]
    if all(p.exists() for p in snaps):
        import tracemalloc

        ignore = [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        ]
        old, new = (tracemalloc.Snapshot.load(str(p)).filter_traces(ignore) for p in snaps)
        rep["sites"] = [
            {
                "site": str(st.traceback[0]),
                "size_diff": st.size_diff,
                "size": st.size,
                "count_diff": st.count_diff,
            }
            for st in new.compare_to(old, "lineno")[:top]
        ]
        rep["stacks"] = [
            {"size_diff": st.size_diff, "stack": st.traceback.format(most_recent_first=True)}
            for st in new.compare_to(old, "traceback")[:5]
        ]
    return rep


# Aggregation and the report


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (0 when empty)."""
    if not values:
        return 0.0
    return values[max(0, math.ceil(q * len(values)) - 1)]


def op_stats(records: list[Record], seconds: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for op in OPS:
        lat = sorted(r[2] for r in records if r[0] == op and not r[3])
        errors = Counter(r[3] for r in records if r[0] == op and r[3])
        n = len(lat)
        out[op] = {
            "ok": n,
            "errors": sum(errors.values()),
            "errors_by_class": dict(errors),
            "ops_per_s": n / seconds if seconds else 0.0,
            "p50_ms": pct(lat, 0.50) * 1e3,
            "p95_ms": pct(lat, 0.95) * 1e3,
            "p99_ms": pct(lat, 0.99) * 1e3,
            "max_ms": (lat[-1] if lat else 0.0) * 1e3,
        }
    return out


def windows(
    records: list[Record], duration: float, window: float, samples: list[Sample]
) -> list[dict[str, Any]]:
    """Per window of completion time: op stats, commits on the shared branch, server CPU/RSS.

    Operations still in flight at the end finish in a last, shorter "tail" window.
    """
    n = max(1, math.ceil(duration / window - 1e-9))
    buckets: list[list[Record]] = [[] for _ in range(n + 1)]
    for r in records:
        done = r[1] + r[2]
        buckets[n if done >= duration else min(n - 1, int(done // window))].append(r)
    bounds = [(i * window, min(duration, (i + 1) * window)) for i in range(n)]
    bounds.append((duration, max([duration + 1e-3, *(r[1] + r[2] for r in buckets[n])])))
    out = []
    commits = 1  # the seed commit
    for i, (bucket, (lo, hi)) in enumerate(zip(buckets, bounds, strict=True)):
        if i == n and not bucket:
            break
        commits += sum(1 for r in bucket if r[0] == "commit" and not r[3])
        row: dict[str, Any] = {"from_s": lo, "to_s": hi, "tail": i == n}
        row["ops"] = op_stats(bucket, hi - lo)
        row["all_ops_per_s"] = sum(s["ok"] for s in row["ops"].values()) / (hi - lo)
        row["shared_commits"] = commits
        a = min(samples, key=lambda s: abs(s.t - lo)) if samples else None
        b = min(samples, key=lambda s: abs(s.t - hi)) if samples else None
        if a is not None and b is not None and b.t > a.t:
            row["server_cores"] = (b.server_cpu_s - a.server_cpu_s) / (b.t - a.t)
            row["machine_busy"] = (b.busy_s - a.busy_s) / max(1e-9, b.total_s - a.total_s)
            row["server_rss_mib"] = b.rss_kib / 1024
        out.append(row)
    return out


def table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join(["  " + line(headers), *("  " + line(r) for r in rows)])


# Checks


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def verify(
    address: str,
    seed_id: str,
    results: list[ShardResult],
    counts: Counter[str],
) -> list[Check]:
    import tusk

    checks: list[Check] = []
    hung = [h for r in results for h in r.hung]
    detail = f"{len(hung)} of {sum(r.threads for r in results)} threads still running"
    checks.append(Check("no thread hung", not hung, detail + (f": {hung[:5]}" if hung else "")))
    bad = {k: v for k, v in counts.items() if k not in TOLERATED}
    tolerated = sum(v for k, v in counts.items() if k in TOLERATED)
    checks.append(
        Check(
            "only documented conflicts as errors",
            not bad,
            f"{tolerated} Conflict, other errors: {dict(bad) or 'none'}",
        )
    )
    commits = [c for r in results for c in r.commits]
    returned = [c[2] for c in commits]
    c = tusk.Client(address=address)
    try:
        listed = [ci.id for ci in c.list_commits(f"{SHARED}@master")]
        listed_set = set(listed)
        lost = [cid for cid in returned if cid not in listed_set]
        checks.append(
            Check(
                "no lost commit",
                not lost,
                f"{len(returned)} returned commit ids, {len(lost)} not in list_commits",
            )
        )
        expected = {seed_id, *returned}
        checks.append(
            Check(
                "commit count on shared@master",
                len(listed) == len(expected) == 1 + len(returned) and listed_set == expected,
                f"{len(listed)} listed, expected {1 + len(returned)} (seed + one per put;"
                f" {len(returned) - len(set(returned))} duplicate ids returned)",
            )
        )
        may = {p for r in results for p in r.shared_uncertain}
        want = {SEED_PATH} | {cm[3] for cm in commits}
        have = {f.path for f in c.glob_files(f"{SHARED}@master:/**") if f.type == "file"}
        missing, extra = want - have, have - want - may
        digests = {cm[3]: cm[4] for cm in commits}
        wrong = read_back(address, SHARED, digests)
        checks.append(
            Check(
                "committed files read back",
                not missing and not extra and not wrong,
                f"{len(have)} files on shared@master, {len(missing)} missing, {len(extra)}"
                f" unexpected; {len(digests)} read back, {len(wrong)} with other bytes"
                + (f" (e.g. {sorted(wrong)[0]})" if wrong else ""),
            )
        )
        repos = sorted({repo for r in results for repo in r.files})
        n_files = n_missing = n_extra = n_wrong = 0
        for repo in repos:
            files: dict[str, str] = {}
            maybe: set[str] = set()
            for r in results:
                files.update(r.files.get(repo, {}))
                maybe.update(r.uncertain.get(repo, []))
            have = {f.path for f in c.glob_files(f"{repo}@master:/**") if f.type == "file"}
            n_files += len(have)
            n_missing += len(set(files) - have)
            n_extra += len(have - set(files) - maybe)
            n_wrong += len(read_back(address, repo, files))
        checks.append(
            Check(
                "client files read back",
                not (n_missing or n_extra or n_wrong),
                f"{n_files} files in {len(repos)} repos, {n_missing} missing, {n_extra}"
                f" unexpected, {n_wrong} with other bytes than last put",
            )
        )
    finally:
        c.close()
    return checks


def read_back(address: str, repo: str, digests: dict[str, str]) -> list[str]:
    """The paths whose bytes at ``repo@master`` differ from ``digests`` (8 threads)."""
    import tusk

    local = threading.local()
    made: list[Any] = []

    def one(path: str) -> str | None:
        if not hasattr(local, "c"):
            local.c = tusk.Client(address=address)
            made.append(local.c)
        try:
            ok = digest(local.c.get_file(f"{repo}@master:{path}")) == digests[path]
        except Exception as exc:
            return f"{path}: {type(exc).__name__}: {exc}"
        return None if ok else path

    with ThreadPoolExecutor(8) as pool:
        wrong = [p for p in pool.map(one, sorted(digests)) if p is not None]
    for cl in made:
        cl.close()
    return wrong


def verify_pipelines(
    address: str, fed0: dict[int, list[tuple[str, int]]], results: list[ShardResult]
) -> tuple[dict[str, Any], list[Check]]:
    """Waits for each pipeline's last job; checks its jobs and its output's bytes counts."""
    import tusk

    checks: list[Check] = []
    summary: dict[str, Any] = {}
    c = tusk.Client(address=address)
    try:
        for i, initial in sorted(fed0.items()):
            name = f"count{i}"
            fed = initial + [f for r in results for f in r.fed.get(i, [])]
            unsure = {p for r in results for p in r.fed_uncertain.get(i, [])}
            last = next((r.last_feed[i] for r in results if i in r.last_feed), None)
            waited = time.monotonic()
            if last is not None:
                c.wait_commit_set(last, timeout=600)
            waited = time.monotonic() - waited
            jobs = c.list_jobs(pipeline=name)
            states = Counter(j.state for j in jobs)
            lag = sorted(j.finished_at - j.created_at for j in jobs if j.finished_at is not None)
            want: Counter[str] = Counter()
            for path, size in fed:
                want[path.split("/")[1]] += size
            unsure_dirs = {p.split("/")[1] for p in unsure}
            wrong = []
            for d in sorted(want):
                if d in unsure_dirs:
                    continue
                got = c.get_file(f"{name}@master:/{d}").strip()
                if got != str(want[d]).encode():
                    wrong.append(f"/{d}: {got!r} != {want[d]}")
            summary[name] = {
                "jobs": len(jobs),
                "states": dict(states),
                "fed_files": len(fed),
                "wait_after_load_s": waited,
                "job_lag_p50_s": pct(lag, 0.5),
                "job_lag_p95_s": pct(lag, 0.95),
                "job_lag_max_s": lag[-1] if lag else 0.0,
            }
            bad = {k: v for k, v in states.items() if k != "success"}
            checks.append(
                Check(
                    f"pipeline {name}",
                    not bad and not wrong and len(jobs) >= 1 + len(fed) - len(initial),
                    f"{len(jobs)} jobs for {len(fed) - len(initial)} fed commits + setup,"
                    f" {dict(states)}; job lag p50 {pct(lag, 0.5):.1f} s, max"
                    f" {summary[name]['job_lag_max_s']:.1f} s; last job {waited:.1f} s after"
                    f" the load; outputs {len(want) - len(wrong)}/{len(want)} right"
                    + (f" (e.g. {wrong[0]})" if wrong else ""),
                )
            )
    finally:
        c.close()
    return summary, checks


def fsck(home: Path, env: dict[str, str]) -> Check:
    proc = subprocess.run(
        [str(TUSK), "--home", str(home), "fsck", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
    )
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = {"ok": False, "problems": [proc.stderr.strip()[-300:]], "counts": {}}
    counts = ", ".join(f"{v} {k}" for k, v in report.get("counts", {}).items())
    problems = report.get("problems", [])
    detail = f"exit {proc.returncode}; " + (
        f"{len(problems)} problems, e.g. {problems[0]}" if problems else f"ok: {counts}"
    )
    return Check("tusk fsck clean", proc.returncode == 0 and bool(report.get("ok")), detail)


# Main


def git_head() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" + uncommitted src/ changes" if dirty else "")


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import tusk

    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_SANDBOX"] = "none"
    home = work / "home"
    command = "up" if args.pipelines else "serve"  # up: the scheduler runs in the server
    warmup = args.warmup if args.warmup is not None else 0.2 * args.duration
    probe = work / "probe" if args.probe or args.tracemalloc else None
    report: dict[str, Any] = {
        "config": {
            "engine": args.engine,
            "duration_s": args.duration,
            "clients": args.clients,
            "committers": args.committers,
            "repos": args.repos,
            "procs": args.procs,
            "seed": args.seed,
            "window_s": args.window,
            "mix_percent": MIX,
            "max_rss_mib": args.max_rss_mib,
            "pipelines": args.pipelines,
            "feed_every_s": args.feed_every,
            "server": command,
            "rss_every_s": args.rss_every,
            "warmup_s": warmup,
            "max_growth_percent": args.max_growth,
            "tracemalloc_frames": args.tracemalloc,
            "malloc_arena_max": env.get("MALLOC_ARENA_MAX"),
        },
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "code": git_head(),
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg()[0],
    }
    with ExitStack() as stack:
        if args.engine == "postgres":
            env["TUSK_METADATA_URL"] = stack.enter_context(postgres())
        server = Serve(home, env, work / "serve.log", command, probe, args.tracemalloc)
        stack.callback(server.stop)
        setup = tusk.Client(address=server.address)
        for r in range(args.repos):
            setup.create_repo(f"r{r}")
        setup.create_repo(SHARED)
        seed_id = setup.put_file(f"{SHARED}@master:{SEED_PATH}", b"seed").commit.id
        initial: dict[int, dict[str, str]] = {}
        for r in range(args.repos):  # a few files per client, so its mix is steady from t0
            items: list[tuple[str, bytes]] = []
            for k in range(r, args.clients, args.repos):
                rng = random.Random(f"{args.seed}:initial:{k}")
                for j in range(INITIAL_FILES):
                    items.append(
                        (f"/c{k:03d}/i{j:05d}.bin", rng.randbytes(rng.randint(*CLIENT_SIZE)))
                    )
                initial[k] = {p: digest(d) for p, d in items[-INITIAL_FILES:]}
            if items:
                setup.put_files(f"r{r}@master", items)
        fed0: dict[int, list[tuple[str, int]]] = {}
        for i in range(args.pipelines):  # feed<i> -> count<i>, its first job done before t0
            rng = random.Random(f"{args.seed}:feed:{i}")
            feed = [
                (f"/d{j}/init.bin", rng.randbytes(rng.randint(*FEED_SIZE)))
                for j in range(FEED_DIRS)
            ]
            setup.create_repo(f"{FEED}{i}")
            setup.put_files(f"{FEED}{i}@master", feed)
            fed0[i] = [(path, len(data)) for path, data in feed]
            setup.create_pipeline(
                {
                    "pipeline": {"name": f"count{i}"},
                    "transform": {"cmd": ["sh", "-c", COUNT_CMD]},
                    "input": {"pfs": {"repo": f"{FEED}{i}", "glob": "/*", "name": "in"}},
                }
            )
        for i in range(args.pipelines):
            setup.wait_commit(f"count{i}@master", timeout=300)
        setup.close()

        ctx = mp.get_context("spawn")
        go, out = ctx.Event(), ctx.Queue()
        clock = ctx.Array("d", 2, lock=False)
        procs = max(1, min(args.procs, args.clients + args.committers))
        shards = [
            Shard(
                i,
                server.address,
                args.seed,
                args.repos,
                [k for k in range(args.clients) if k % procs == i],
                [k for k in range(args.committers) if k % procs == i],
                {k: v for k, v in initial.items() if k % procs == i},
                [p for p in range(args.pipelines) if p % procs == i],
                args.feed_every,
            )
            for i in range(procs)
        ]
        workers = [ctx.Process(target=run_shard, args=(s, go, clock, out)) for s in shards]
        for w in workers:
            w.start()
        results: dict[int, ShardResult] = {}
        ready = 0

        def receive(timeout: float) -> tuple[str, int, Any]:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    msg: tuple[str, int, Any] = out.get(timeout=1)
                    return msg
                except queue.Empty:
                    if time.monotonic() > deadline or not any(w.is_alive() for w in workers):
                        raise SystemExit("worker processes stopped without a result") from None

        while ready < procs:
            kind, i, payload = receive(120)
            if kind == "failed":
                raise SystemExit(f"worker {i} failed:\n{payload}")
            ready += 1
        t0 = time.monotonic() + 0.5
        clock[0], clock[1] = t0, t0 + args.duration
        go.set()
        sampling = Sampler(server.pid, t0, args.duration, args.window)
        rss = RssSampler(server.pid, t0, args.rss_every)
        dumps: dict[str, Path | None] = {}
        warm_dump = threading.Timer(
            max(0.0, t0 + warmup - time.monotonic()),
            lambda: dumps.setdefault("warm", server.snapshot("warm")),
        )
        if probe is not None:
            warm_dump.start()
        print(
            f"load: {args.clients} clients + {args.committers} committers in {procs}"
            f" processes, {args.engine}, {args.duration:g} s on {server.address} ...",
            file=sys.stderr,
        )
        while len(results) < procs:
            kind, i, payload = receive(args.duration + HANG_GRACE + 120)
            if kind == "failed":
                raise SystemExit(f"worker {i} failed:\n{payload}")
            results[i] = payload
        end = time.monotonic()
        samples = sampling.stop()
        rss_samples = rss.stop()
        warm_dump.cancel()
        if probe is not None:  # a Timer never started cannot be joined
            warm_dump.join()
        if probe is not None:
            dumps["end"] = server.snapshot("end")
        for w in workers:
            w.join(30)
        shard_results = [results[i] for i in sorted(results)]
        records = [r for s in shard_results for r in s.records]
        error_counts: Counter[str] = Counter(r[3] for r in records if r[3])
        elapsed = max([args.duration, *(r[1] + r[2] for r in records)])

        print("verifying ...", file=sys.stderr)
        checks = verify(server.address, seed_id, shard_results, error_counts)
        growth = rss_growth(rss_samples, warmup, args.duration)
        if "growth" in growth:
            checks.append(
                Check(
                    "server RSS flat after warm-up",
                    growth["growth"] * 100 <= args.max_growth,
                    f"{growth['warm_mib']:.0f} MiB at {growth['warm_t_s']:.0f} s ->"
                    f" {growth['end_mib']:.0f} MiB at {growth['end_t_s']:.0f} s:"
                    f" {growth['growth'] * 100:+.1f}% (limit {args.max_growth:g}%)",
                )
            )
        jobs: dict[str, Any] = {}
        if args.pipelines:
            jobs, pipeline_checks = verify_pipelines(server.address, fed0, shard_results)
            checks += pipeline_checks
        hwm = proc_kib(server.pid, "VmHWM") / 1024
        checks.append(
            Check(
                "server peak RSS",
                hwm < args.max_rss_mib,
                f"VmHWM {hwm:.0f} MiB (limit {args.max_rss_mib} MiB)",
            )
        )
        rc = server.stop()
        checks.append(Check("server stops cleanly on SIGTERM", rc == 0, f"exit status {rc}"))
        checks.append(fsck(home, env))

    first, last = samples[0], samples[-1]
    span = max(1e-3, last.t - first.t)
    report.update(
        {
            "elapsed_s": elapsed,
            "verify_s": time.monotonic() - end,
            "totals": op_stats(records, elapsed),
            "all_ops_per_s": sum(1 for r in records if not r[3]) / elapsed,
            "windows": windows(records, args.duration, args.window, samples),
            "errors": dict(error_counts),
            "error_samples": {k: v for s in shard_results for k, v in s.samples.items()},
            "cpu": {  # from t0 until every operation was back
                "server_cores": (last.server_cpu_s - first.server_cpu_s) / span,
                "clients_cores": sum(s.cpu_s for s in shard_results) / span,
                "machine_busy": (last.busy_s - first.busy_s) / (last.total_s - first.total_s),
            },
            "server_vmhwm_mib": hwm,
            "rss": growth,
            "rss_samples": [[round(t, 1), kib] for t, kib in rss_samples],
            "jobs": jobs,
            "probe": probe_report(dumps.get("warm"), dumps.get("end"), args.top),
            "shared_commits": 1 + sum(len(s.commits) for s in shard_results),
            "loadavg_after": os.getloadavg()[0],
            "checks": [c.__dict__ for c in checks],
            "ok": all(c.ok for c in checks),
        }
    )
    return report


def ms(v: float) -> str:
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def render(rep: dict[str, Any]) -> str:
    cfg = rep["config"]
    out = [
        f"Tusk load: {cfg['clients']} clients + {cfg['committers']} committers on"
        f" {cfg['repos']} + 1 repos, {cfg['engine']}, {cfg['duration_s']:g} s,"
        f" client threads in {cfg['procs']} process(es), seed {cfg['seed']}",
        f"started {rep['started_utc']} UTC, code {rep['code']}, {rep['cpus']} CPUs,"
        f" load average {rep['loadavg_before']:.1f} before / {rep['loadavg_after']:.1f} after",
        "",
        "Whole run (latency of successful operations)",
    ]
    rows = []
    for op in OPS:
        s = rep["totals"][op]
        rows.append(
            [
                op,
                f"{s['ok']:,}",
                f"{s['errors']:,}",
                f"{s['ops_per_s']:.1f}",
                ms(s["p50_ms"]),
                ms(s["p95_ms"]),
                ms(s["p99_ms"]),
                ms(s["max_ms"]),
            ]
        )
    ok_all = sum(rep["totals"][op]["ok"] for op in OPS)
    err_all = sum(rep["totals"][op]["errors"] for op in OPS)
    rows.append(["all", f"{ok_all:,}", f"{err_all:,}", f"{rep['all_ops_per_s']:.1f}"] + [""] * 4)
    headers = ["op", "ok", "errors", "ops/s", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    out.append(table(headers, rows))
    cpu = rep["cpu"]
    out.append(
        f"  CPU: server {cpu['server_cores']:.2f} cores, client processes"
        f" {cpu['clients_cores']:.2f} cores, machine {cpu['machine_busy'] * 100:.0f}% busy;"
        f" {rep['shared_commits']:,} commits on shared@master"
    )
    out += ["", f"Per {cfg['window_s']:g} s window (ops/s and p95 ms of each op)"]
    headers = ["window s", "all/s"]
    for op in OPS:
        headers += [f"{op}/s", "p95"]
    headers += ["shared commits", "server cores", "RSS MiB"]
    rows = []
    for w in rep["windows"]:
        span = f"{w['from_s']:.0f}-{w['to_s']:.0f}"
        if w["tail"]:
            span = f"{w['from_s']:.0f}-{w['to_s']:.1f} tail"

        row = [span, f"{w['all_ops_per_s']:.1f}"]
        for op in OPS:
            row += [f"{w['ops'][op]['ops_per_s']:.1f}", ms(w["ops"][op]["p95_ms"])]
        row += [f"{w['shared_commits']:,}"]
        row += (
            [f"{w['server_cores']:.2f}", f"{w['server_rss_mib']:.0f}"]
            if "server_cores" in w
            else ["", ""]
        )
        rows.append(row)
    out.append(table(headers, rows))
    if rep["errors"]:
        out += ["", "Errors"]
        rows = []
        for key, msg in sorted(rep["error_samples"].items()):
            op, cls = key.split(" ", 1)
            n = rep["totals"][op]["errors_by_class"].get(cls, 0)
            rows.append([op, cls, f"{n:,}", msg[:100]])
        out.append(table(["op", "class", "count", "first message"], rows, left=2))
    g = rep.get("rss", {})
    if "growth" in g:
        out += [
            "",
            f"Server RSS (every {cfg['rss_every_s']:g} s, warm-up {g['warmup_s']:g} s):"
            f" {g['warm_mib']:.0f} MiB after warm-up, {g['end_mib']:.0f} MiB at the end,"
            f" growth {g['growth'] * 100:+.1f}% (min {g['min_after_warmup_mib']:.0f}, max"
            f" {g['max_after_warmup_mib']:.0f} MiB after warm-up)",
        ]
        step = max(1, len(rep["rss_samples"]) // 12)
        marks = rep["rss_samples"][::step]
        out.append("  " + ", ".join(f"{t:.0f} s {kib / 1024:.0f}" for t, kib in marks))
    for name, j in rep.get("jobs", {}).items():
        out.append(
            f"  {name}: {j['jobs']} jobs {j['states']}, lag p50 {j['job_lag_p50_s']:.1f} s"
            f" p95 {j['job_lag_p95_s']:.1f} s"
        )
    pr = rep.get("probe") or {}
    if pr:
        out += ["", f"Server probe, {pr['from']} -> {pr['to']}"]
        for key in ("rss_kib", "threads", "gc_objects", "traced"):
            if key in pr["before"]:
                a, b = pr["before"][key], pr["after"][key]
                scale = 1024 if key == "rss_kib" else 1 << 20 if key == "traced" else 1
                unit = " MiB" if scale > 1 else ""
                out.append(f"  {key}: {a / scale:,.1f}{unit} -> {b / scale:,.1f}{unit}")
        for when in ("before", "after"):
            g = pr[when].get("gc_before_dump", {})
            out.append(
                f"  gc at the {when} dump: enabled {g.get('enabled')}, counts {g.get('counts')},"
                f" {g.get('young', 0):,} young objects, {g.get('collected', 0):,} garbage"
            )
        out.append(
            f"  node caches [nodes, JSON bytes]: {pr['before'].get('node_caches')} ->"
            f" {pr['after'].get('node_caches')}"
        )
        ta, tb = pr["before"].get("types", {}), pr["after"].get("types", {})
        grew = sorted(tb, key=lambda t: ta.get(t, 0) - tb[t])[:8]
        out.append(
            "  gc objects that grew: "
            + ", ".join(f"{t} {ta.get(t, 0):,} -> {tb[t]:,}" for t in grew)
        )
        ma, mb = pr["before"].get("malloc", {}), pr["after"].get("malloc", {})
        for key in ("arena", "hblkhd", "uordblks", "fordblks", "keepcost"):
            if key in ma:
                out.append(f"  malloc {key}: {ma[key] / 2**20:.1f} -> {mb[key] / 2**20:.1f} MiB")
        for group, per in (("pymalloc", 1), ("smaps", 1024)):  # bytes, KiB -> MiB
            pa, pb = pr["before"].get(group, {}), pr["after"].get(group, {})
            for key in pa:
                k = 2**20 if key == "arenas_allocated_current" else per  # arenas of 1 MiB
                a, b = pa[key] * k / 2**20, pb.get(key, 0) * k / 2**20
                out.append(f"  {group} {key}: {a:,.1f} -> {b:,.1f} MiB")
        for site in pr.get("sites", []):
            out.append(
                f"  {site['size_diff'] / 1024:+10,.0f} KiB {site['count_diff']:+8,} blocks"
                f"  {site['site']}"
            )
        for st in pr.get("stacks", [])[:3]:
            out.append(f"  {st['size_diff'] / 1024:+,.0f} KiB from:")
            out += ["    " + line for line in st["stack"][:24]]
    out += ["", f"Checks (verification took {rep['verify_s']:.1f} s)"]
    for c in rep["checks"]:
        out.append(f"  {'PASS' if c['ok'] else 'FAIL'}  {c['name']}: {c['detail']}")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    ap.add_argument("--clients", type=int, default=50, help="put/get/list/inspect clients")
    ap.add_argument("--committers", type=int, default=20, help="committers to one branch")
    ap.add_argument("--repos", type=int, default=5, help="repos the clients spread over")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--window", type=float, default=10.0, help="seconds per report window")
    ap.add_argument("--procs", type=int, default=1, help="client processes (threads in each)")
    ap.add_argument("--max-rss-mib", type=float, default=300.0, help="server peak RSS limit")
    ap.add_argument("--workdir", type=Path, default=None, help="parent of the run's folder")
    ap.add_argument("--keep", action="store_true", help="keep the run's folder (home, log)")
    ap.add_argument("--json", default=None, help="write the report as JSON to PATH (- : stdout)")
    ap.add_argument(
        "--pipelines",
        type=int,
        default=1,
        help="pipelines count<i> over repos feed<i>, each fed one commit per --feed-every s;"
        " > 0 runs `tusk up` (API + scheduler in one process), 0 runs `tusk serve`",
    )
    ap.add_argument("--feed-every", type=float, default=2.0, help="seconds between feeds")
    ap.add_argument("--rss-every", type=float, default=5.0, help="seconds between RSS samples")
    ap.add_argument(
        "--warmup", type=float, default=None, help="seconds of warm-up (default 20%% of the run)"
    )
    ap.add_argument(
        "--max-growth", type=float, default=10.0, help="RSS growth limit after warm-up, %%"
    )
    ap.add_argument(
        "--probe",
        action="store_true",
        help="dump the server's RSS, threads, gc objects and mallinfo2 after warm-up and at"
        " the end",
    )
    ap.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="run the server under tracemalloc (FRAMES deep; implies --probe) and print the"
        " allocation sites that grew most from warm-up to the end",
    )
    ap.add_argument("--top", type=int, default=15, help="sites to print with --tracemalloc")
    args = ap.parse_args()
    if args.clients < 0 or args.committers < 0 or args.repos < 1 or args.duration <= 0:
        ap.error("need --repos >= 1, --duration > 0 and no negative counts")
    if args.pipelines < 0 or args.feed_every <= 0 or args.rss_every <= 0:
        ap.error("need --pipelines >= 0, --feed-every > 0 and --rss-every > 0")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tusk-bench-load-", dir=args.workdir))
    try:
        rep = run(args, work)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json == "-":
        print(json.dumps(rep, indent=1))
    else:
        print(render(rep))
        if args.json:
            Path(args.json).write_text(json.dumps(rep, indent=1))
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == PROBE_FLAG:
        probed_server(Path(sys.argv[2]), sys.argv[3:])
    else:
        sys.exit(main())
