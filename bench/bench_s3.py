#!/usr/bin/env python3
"""The S3 gateway: boto3 against ``tusk up``, next to Tusk's own CLI and to moto.

All in one run on the same generated data (a file of ``--size-mib`` MiB of random bytes,
written once; ``--small-count`` objects of 4 KiB):

1. Big object, MB/s (10^6 bytes/s) of a put and a get, verified by size and a hash of what
   comes back:
   - native: ``tusk --address API put file big@master:/big -f FILE`` and ``tusk --address API
     get file big@master:/big -o OUT`` (the CLI through the same server process, over its REST
     API: the basis of the ratios; wall time of the command, Python start-up included, which is
     printed on its own), and the same with ``--home HOME`` (in-process on the home while the
     server runs on it), for context;
   - boto3 managed transfer: ``upload_file`` / ``download_file`` with a ``TransferConfig``
     (multipart above ``--part-mib``, ``--concurrency`` threads; boto3's defaults, 8 MiB x 10);
   - boto3 single stream: ``put_object(Body=<file>)`` and ``get_object`` read to a file;
   - the same two boto3 pairs against moto's server (``moto_server``, in memory, its own
     process): a reference, not a target.
   Each Tusk row runs on a fresh home with its own ``tusk up`` (so no put deduplicates against
   an earlier one); the data is in the page cache and ``os.sync()`` runs before each timed step.
2. Server memory: the ``tusk up`` process's VmRSS sampled every 50 ms during each put and
   get (the peaks are printed as notes), and its VmHWM (peak since it started) at the end of
   each round: the number held against the target for the boto3 rounds.
3. 4 KiB PutObjects from 8 threads (``--clients``), each with its own boto3 client, objects/s:
   into one open commit (``Client(address=API).start_commit("small@master")`` first,
   ``finish_commit`` after; checked: exactly one new commit holding the N files), then
   ``--each-count`` objects with no open commit (one commit each; checked), and moto's rate.
   boto3 costs a few ms of CPU per call and the threads share one GIL, so the client side is
   printed too (CPU per put); ``--procs P`` spreads the clients over P processes.

``--repeat N`` runs step 1 (with its memory rows) N times, interleaved (native, native on
the home, managed, single, then again), on a fresh home each time: a rate row is the median
of its N runs (each printed in its note) and a memory row the highest.

Targets (issue): a 1 GiB PutObject and GetObject through boto3 >= 0.80 x native, judged for
both styles (single-stream ``put_object``/``get_object``, the operations as named, and the
managed transfer's parts and ranges); the server's peak RSS while boto3 streams the big object
< 300 MiB; 4 KiB puts into one open commit >= 1,000/s. The script prints a table (row,
result, ratio, target, PASS/FAIL) and exits 0 whether targets pass or not; non-zero when a
step fails (an error, a wrong size or hash, a wrong commit count).
Auth is off on the fresh homes: any credentials do.

    .venv/bin/python bench/bench_s3.py                                # 1 GiB, 4,000 objects
    .venv/bin/python bench/bench_s3.py --size-mib 64 --small-count 400   # smoke run
    .venv/bin/python bench/bench_s3.py --json out.json --skip-moto
    .venv/bin/python bench/bench_s3.py --repeat 3 --json out.json     # medians of 3
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from servers import tusk_up_s3

MiB = 1 << 20
MB = 1_000_000
GiB = 1 << 30
REGION = "us-east-1"
BIG_RATIO_TARGET = 0.80
RSS_TARGET_MIB = 300.0
SMALL_RATE_TARGET = 1000.0
SMALL_SIZE = 4096


class BenchError(RuntimeError):
    """A step failed (not a missed target)."""


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def tusk_command() -> str:
    here = Path(sys.executable).parent / "tusk"
    return str(here) if here.exists() else (shutil.which("tusk") or "tusk")


def clean_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_CONFIG"] = str(work / "no-config.yaml")  # no context from the user's config
    return env


def run_cli(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one command; BenchError on a non-zero exit."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise BenchError(f"{' '.join(argv)} failed ({proc.returncode}): {tail}")
    return seconds


def hasher() -> tuple[str, Callable[[], Any]]:
    try:
        import blake3
    except ImportError:
        import hashlib

        return "sha256", hashlib.sha256
    return "blake3", blake3.blake3


HASH_NAME, HASH = hasher()


def file_digest(path: Path) -> str:
    h = HASH()
    with path.open("rb") as f:
        while block := f.read(8 * MiB):
            h.update(block)
    return h.hexdigest()


def write_random(path: Path, size: int) -> None:
    """``size`` random bytes (os.urandom, 16 MiB at a time: no two chunks alike)."""
    with path.open("wb") as f:
        left = size
        while left:
            n = min(16 * MiB, left)
            f.write(os.urandom(n))
            left -= n


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_kib(pid: int, field_name: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field_name}:\s+(\d+)\s+kB", text, re.M)
    return int(m.group(1)) if m else None


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """VmRSS of a process every ``period`` seconds in a thread; ``peak_mib`` since start."""

    def __init__(self, pid: int, period: float = 0.05) -> None:
        self.pid, self.period = pid, period
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            kib = proc_kib(self.pid, "VmRSS")
            if kib is not None:
                self.samples.append(kib)
            self._stop.wait(self.period)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float | None:
        return max(self.samples) / 1024 if self.samples else None


def boto3_client(endpoint: str, pool: int = 10) -> Any:
    import boto3
    from botocore.config import Config

    # A session per client: boto3's default session is not safe to share across threads.
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret",
        config=Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=10,
            read_timeout=600,
            max_pool_connections=pool,
        ),
    )


def watch_body_encoding(client: Any, seen: dict[str, str]) -> None:
    """Record the x-amz-content-sha256 (and content-encoding) boto3 sends per operation."""

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def hook(request: Any, event_name: str = "", **_: Any) -> None:
        op = event_name.rsplit(".", 1)[-1]
        if op in ("PutObject", "UploadPart") and op not in seen:
            sha = text(request.headers.get("X-Amz-Content-SHA256", "-"))
            enc = request.headers.get("Content-Encoding")
            seen[op] = (sha if len(sha) < 64 else "<sha256 of the body>") + (
                f" ({text(enc)})" if enc else ""
            )

    client.meta.events.register("before-send.s3.*", hook)


@contextmanager
def moto_server(env: dict[str, str], log_path: Path) -> Iterator[tuple[str, int]]:
    """moto's S3 in server mode (``python -m moto.server``), its own process; yields the URL
    and the process id."""
    port = free_port()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2).close()
                break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    msg = f"moto_server did not start: {log_path.read_text()[-800:]}"
                    raise BenchError(msg) from exc
                time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def put_worker(
    endpoint: str, bucket: str, jobs: list[list[tuple[str, bytes]]], barrier: Any
) -> dict[str, Any]:
    """One thread per job list, each with its own boto3 client, started together once every
    client has made its connection; passes ``barrier`` when ready. Returns the latencies, the
    errors and this process's CPU seconds during the puts (every thread's: the client cost)."""
    clients = [boto3_client(endpoint, pool=2) for _ in jobs]
    for c in clients:
        c.head_bucket(Bucket=bucket)  # connection and endpoint resolution, not timed
    lat: list[list[float]] = [[] for _ in jobs]
    errors: list[str] = []

    def work(i: int) -> None:
        try:
            for key, body in jobs[i]:
                t0 = time.perf_counter()
                clients[i].put_object(Bucket=bucket, Key=key, Body=body)
                lat[i].append(time.perf_counter() - t0)
        except Exception as exc:  # reported, the run fails
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    barrier.wait()
    cpu0 = time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu = time.process_time() - cpu0
    return {"latencies": [x for per in lat for x in per], "errors": errors, "cpu": cpu}


def put_process(
    endpoint: str, bucket: str, jobs: list[list[tuple[str, bytes]]], barrier: Any, queue: Any
) -> None:
    """:func:`put_worker` in a thread or a child process (``--procs``); its result goes to
    ``queue`` (a multiprocessing queue, or a list: anything with ``put`` or ``append``)."""
    try:
        result = put_worker(endpoint, bucket, jobs, barrier)
    except Exception as exc:
        barrier.abort()
        result = {"latencies": [], "errors": [repr(exc)], "cpu": 0.0}
    (queue.put if hasattr(queue, "put") else queue.append)(result)


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    label: str
    unit: str  # "MB/s", "obj/s", "MiB", "s"
    value: float | None = None
    basis: str | None = None  # the key of the row the ratio is taken against
    target: str | None = None  # ">= 0.80 x", ">= 1000", "< 300"
    passed: bool | None = None
    note: str = ""
    samples: list[float] = field(default_factory=list)  # every run's value (--repeat)


@dataclass
class Report:
    config: dict[str, Any]
    rows: dict[str, Row] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(
        self,
        key: str,
        label: str,
        unit: str,
        value: float | None,
        agg: Callable[[list[float]], float] = statistics.median,
        **kw: Any,
    ) -> Row:
        """A row; added again (``--repeat``), its value is ``agg`` of every run's."""
        old = self.rows.get(key)
        samples = [
            *(old.samples if old is not None else []),
            *([value] if value is not None else []),
        ]
        row = Row(key, label, unit, agg(samples) if samples else None, samples=samples, **kw)
        self.rows[key] = row
        return row

    def judge_ratios(self) -> None:
        """PASS/FAIL of the rows held to a ratio of their basis, on the final values."""
        for row in self.rows.values():
            if row.target is not None and row.target.endswith(" x"):
                ratio = self.ratio(row)
                row.passed = None if ratio is None else ratio >= BIG_RATIO_TARGET

    def ratio(self, row: Row) -> float | None:
        basis = self.rows.get(row.basis) if row.basis else None
        if basis is None or basis.value in (None, 0) or row.value is None:
            return None
        return row.value / basis.value  # type: ignore[operator]


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, report: Report) -> None:
        self.args = args
        self.work = work
        self.report = report
        self.env = clean_env(work)
        self.tusk = tusk_command()
        self.size = args.size_mib * MiB
        self.src = work / "big.bin"
        self.digest = ""
        self.encodings: dict[str, str] = {}
        self.server_logs: dict[str, list[str]] = {}
        self.rounds = 0
        self.cpu = (0.0, 0.0)  # the last timed step's CPU seconds: (client side, server)

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    # -- a fresh tusk up per round ----------------------------------------------

    @contextmanager
    def server(self, name: str) -> Iterator[tuple[str, str, int, Path]]:
        self.rounds += 1
        home = self.work / f"home-{self.rounds}-{name}"
        log: list[str] = []
        self.server_logs[name] = log
        try:
            with tusk_up_s3(home, self.env, log) as (api, s3, pid):
                yield api, s3, pid, home
        finally:
            shutil.rmtree(home, ignore_errors=True)

    def transfer(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        part = self.args.part_mib * MiB
        return TransferConfig(
            multipart_threshold=part,
            multipart_chunksize=part,
            max_concurrency=self.args.concurrency,
            use_threads=True,
        )

    def verify(self, what: str, out: Path) -> None:
        size = out.stat().st_size
        if size != self.size:
            raise BenchError(f"{what}: got {size} bytes, expected {self.size}")
        if file_digest(out) != self.digest:
            raise BenchError(f"{what}: the downloaded bytes differ from the source")
        out.unlink()

    def timed(self, fn: Callable[[], object], pid: int | None = None) -> float:
        """Wall seconds of ``fn``; the CPU seconds both sides used go to ``self.cpu``: this
        process's threads and its finished children (a CLI), and the server ``pid``'s."""
        os.sync()  # earlier writeback is not billed to this step
        own, kids = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        server = proc_cpu_seconds(pid) if pid else 0.0
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        client = time.process_time() - own
        client += after.ru_utime - kids.ru_utime + after.ru_stime - kids.ru_stime
        self.cpu = (client, proc_cpu_seconds(pid) - server if pid else 0.0)
        return seconds

    def cpu_note(self) -> str:
        """The last :meth:`timed` step's CPU per GiB moved, both sides (they share the cores)."""
        client, server = (x / (self.size / GiB) for x in self.cpu)
        return f"CPU per GiB: client {client:.2f} s + server {server:.2f} s"

    def rss_rows(self, key: str, label: str, pid: int, phases: dict[str, RssSampler]) -> None:
        """A row of the server's VmHWM (its peak since it started) after a round, with the
        peak VmRSS sampled in each phase (put, get) as a note."""
        peaks = {name: s.peak_mib for name, s in phases.items() if s.peak_mib is not None}
        hwm = proc_kib(pid, "VmHWM")
        self.report.details[f"rss_{key}"] = {
            "sampled_peak_mib": peaks,
            "vmhwm_mib": hwm / 1024 if hwm else None,
            "samples": sum(len(s.samples) for s in phases.values()),
        }
        if hwm is not None:
            value = hwm / 1024
            target = key.startswith("boto3")
            row = self.report.add(
                f"rss_{key}",
                f"server peak RSS (VmHWM), {label}",
                "MiB",
                value,
                agg=max,
                target=f"< {RSS_TARGET_MIB:.0f}" if target else None,
                note="sampled VmRSS peak "
                + ", ".join(f"{name} {mib:.0f} MiB" for name, mib in peaks.items()),
            )
            if target and row.value is not None:
                row.passed = row.value < RSS_TARGET_MIB

    # -- 1 + 2: the big object -------------------------------------------------------

    def big_native(self, mode: str) -> None:
        """``tusk put/get file`` through the server (``--address``) or on its home."""
        out = self.work / "out.bin"
        with self.server(f"native-{mode}") as (api, _s3, pid, home):
            where = ["--address", api] if mode == "address" else ["--home", str(home)]
            cli = [self.tusk, *where]
            run_cli([*cli, "create", "repo", "big"], self.env)
            if mode == "address":
                starts = [run_cli([*cli, "inspect", "repo", "big"], self.env) for _ in range(3)]
                self.report.details["cli_startup_s"] = min(starts)
            self.log(f"native ({mode}): tusk put file, {self.args.size_mib} MiB")
            put_cmd = [*cli, "put", "file", "big@master:/big", "-f", str(self.src)]
            get_cmd = [*cli, "get", "file", "big@master:/big", "-o", str(out)]
            with RssSampler(pid) as r_put:
                put_s = self.timed(lambda: run_cli(put_cmd, self.env), pid)
            cpu_notes = {"put": self.cpu_note()}
            self.log(f"native ({mode}): tusk get file")
            with RssSampler(pid) as r_get:
                get_s = self.timed(lambda: run_cli(get_cmd, self.env), pid)
            cpu_notes["get"] = self.cpu_note()
            self.verify(f"tusk get file ({mode})", out)
            idle = " (the server idle)" if mode == "home" else ""
            phases = {"put": r_put, "get": r_get}
            self.rss_rows(f"native_{mode}", f"CLI --{mode} put+get{idle}", pid, phases)
        how = "through the server's REST API" if mode == "address" else "in-process, server up"
        startup = self.report.details.get("cli_startup_s", 0.0)
        for op, seconds, cmd in (("put", put_s, "put file"), ("get", get_s, "get file")):
            self.report.details[f"{op}_native_{mode}_s"] = seconds
            rate = self.size / (seconds - startup) / MB if seconds > startup else None
            self.report.add(
                f"{op}_native_{mode}",
                f"{op}: tusk --{mode} {cmd} ({how})",
                "MB/s",
                self.size / seconds / MB,
                basis=None if mode == "address" else f"{op}_native_address",
                note=(f"{rate:,.0f} MB/s less the CLI start-up; " if rate else "") + cpu_notes[op],
            )

    def boto3_big(
        self,
        s3: Any,
        bucket: str,
        key: str,
        style: str,
        rss: dict[str, RssSampler] | None = None,
        pid: int | None = None,
    ) -> tuple[float, float, dict[str, str]]:
        """(put seconds, get seconds, the CPU note of each) of the big object, one style,
        verified; the server's RSS sampled during each (``rss``: a sampler for "put" and one
        for "get")."""
        out = self.work / "out.bin"
        tc = self.transfer()

        def put() -> None:
            if style == "managed":
                s3.upload_file(str(self.src), bucket, key, Config=tc)
                return
            with self.src.open("rb") as f:
                s3.put_object(Bucket=bucket, Key=key, Body=f)

        def get() -> None:
            if style == "managed":
                s3.download_file(bucket, key, str(out), Config=tc)
                return
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            with out.open("wb") as f:
                for block in body.iter_chunks(MiB):
                    f.write(block)

        with rss["put"] if rss else nullcontext():
            put_s = self.timed(put, pid)
        notes = {"put": self.cpu_note()}
        with rss["get"] if rss else nullcontext():
            get_s = self.timed(get, pid)
        notes["get"] = self.cpu_note()
        head = s3.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] != self.size:
            raise BenchError(f"{style}: HeadObject says {head['ContentLength']} bytes")
        parts = math.ceil(self.size / (self.args.part_mib * MiB))
        etag = head["ETag"].strip('"')
        if style == "managed" and parts > 1 and not etag.endswith(f"-{parts}"):
            self.report.warnings.append(f"{bucket}/{key}: ETag {etag}, expected {parts} parts")
        self.verify(f"boto3 {style} get", out)
        return put_s, get_s, notes

    def big_boto3(self, style: str) -> None:
        with self.server(f"boto3-{style}") as (_api, endpoint, pid, _home):
            s3 = boto3_client(endpoint, pool=max(10, self.args.concurrency))
            watch_body_encoding(s3, self.encodings)
            s3.create_bucket(Bucket="master.big")  # creates repo big
            self.log(f"boto3 {style}: put + get against tusk")
            phases = {"put": RssSampler(pid), "get": RssSampler(pid)}
            put_s, get_s, notes = self.boto3_big(s3, "master.big", "big", style, phases, pid)
            self.rss_rows(f"boto3_{style}", f"boto3 {style} put+get", pid, phases)
        what = {
            "managed": (
                f"boto3 upload_file ({self.args.part_mib} MiB parts x {self.args.concurrency})",
                "boto3 download_file (ranged GETs)",
            ),
            "single": ("boto3 put_object (one stream)", "boto3 get_object (one stream)"),
        }[style]
        for op, seconds, label in (("put", put_s, what[0]), ("get", get_s, what[1])):
            self.report.add(
                f"{op}_boto3_{style}",
                f"{op}: {label}",
                "MB/s",
                self.size / seconds / MB,
                basis=f"{op}_native_address",
                target=f">= {BIG_RATIO_TARGET:.2f} x",
                note=notes[op],
            )

    def big_moto(self, endpoint: str) -> None:
        s3 = boto3_client(endpoint, pool=max(10, self.args.concurrency))
        s3.create_bucket(Bucket="bench-big")
        for style in ("managed", "single"):
            self.log(f"moto: boto3 {style} put + get")
            put_s, get_s, _ = self.boto3_big(s3, "bench-big", f"big-{style}", style)
            s3.delete_object(Bucket="bench-big", Key=f"big-{style}")
            name = "upload_file/download_file" if style == "managed" else "put_object/get_object"
            for op, seconds in (("put", put_s), ("get", get_s)):
                self.report.add(
                    f"{op}_moto_{style}",
                    f"{op}: moto, boto3 {name.split('/')[op == 'get']} (reference)",
                    "MB/s",
                    self.size / seconds / MB,
                    basis=f"{op}_native_address",
                )

    # -- 3: small objects ------------------------------------------------------------

    def put_many(self, endpoint: str, bucket: str, blobs: list[bytes]) -> tuple[float, list[float]]:
        """PutObject of every blob (key small/NNNNNN.bin) from ``--clients`` threads, each with
        its own client (made and warmed up before the clock starts), in this process or spread
        over ``--procs`` processes; (seconds, latencies). Client k puts blobs k, k + clients, ..."""
        n, procs = self.args.clients, min(self.args.procs, self.args.clients)
        keys = [f"small/{j:06d}.bin" for j in range(len(blobs))]
        jobs = [list(zip(keys[k::n], blobs[k::n], strict=True)) for k in range(n)]
        shares = [jobs[p::procs] for p in range(procs)]  # each process's clients' jobs
        results: list[dict[str, Any]] = []
        if procs == 1:
            barrier: Any = threading.Barrier(2)
            worker = threading.Thread(
                target=put_process, args=(endpoint, bucket, shares[0], barrier, results)
            )
            worker.start()
            with suppress(threading.BrokenBarrierError):  # a failed worker: its error is in results
                barrier.wait(timeout=120)
            t0 = time.perf_counter()
            worker.join()
            seconds = time.perf_counter() - t0
        else:
            ctx = multiprocessing.get_context("spawn")
            barrier = ctx.Barrier(procs + 1)
            queue = ctx.Queue()
            children = [
                ctx.Process(target=put_process, args=(endpoint, bucket, share, barrier, queue))
                for share in shares
            ]
            for child in children:
                child.start()
            try:
                with suppress(threading.BrokenBarrierError):  # a failed child: error in queue
                    barrier.wait(timeout=120)
                t0 = time.perf_counter()
                results = [queue.get(timeout=3600) for _ in children]
                seconds = time.perf_counter() - t0
            finally:
                for child in children:
                    child.join(30)
                    if child.is_alive():
                        child.kill()
        errors = [e for r in results for e in r["errors"]]
        if errors or len(results) != procs:
            raise BenchError(f"{len(errors)} PutObject client(s) failed: {errors[:1]}")
        cpu = sum(r["cpu"] for r in results)
        self.report.details.setdefault("client_cpu_ms_per_put", {})[bucket] = (
            cpu / len(blobs) * 1000
        )
        check = boto3_client(endpoint)
        for j in (0, len(blobs) // 2, len(blobs) - 1):
            got = check.get_object(Bucket=bucket, Key=keys[j])["Body"].read()
            if got != blobs[j]:
                raise BenchError(f"{bucket}/{keys[j]} reads back different bytes")
        return seconds, [x for r in results for x in r["latencies"]]

    def clients_text(self) -> str:
        n, procs = self.args.clients, min(self.args.procs, self.args.clients)
        return f"{n} clients" + (f" in {procs} processes" if procs > 1 else "")

    def latency(self, key: str, bucket: str, lat: list[float]) -> str:
        q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else lat * 99
        self.report.details[f"latency_{key}_ms"] = {
            "p50": q[49] * 1000,
            "p99": q[98] * 1000,
            "max": max(lat) * 1000,
        }
        cpu = self.report.details["client_cpu_ms_per_put"][bucket]
        text = (
            f"p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms per put;"
            f" client CPU {cpu:.1f} ms per put"
        )
        server = self.report.details.get("server_cpu_ms_per_put", {}).get(bucket)
        if server is not None:
            # Both sides share this machine's cores: their CPU per put bounds the rate.
            ceiling = (os.cpu_count() or 1) / (cpu + server) * 1000
            text += f", server CPU {server:.1f} ms; {os.cpu_count()} cores allow <= {ceiling:.0f}/s"
        return text

    def server_cpu(self, bucket: str, seconds: float, count: int) -> None:
        self.report.details.setdefault("server_cpu_ms_per_put", {})[bucket] = seconds / count * 1000

    def small_tusk(self) -> None:
        import tusk

        count, each = self.args.small_count, min(self.args.each_count, self.args.small_count)
        blobs = [os.urandom(SMALL_SIZE) for _ in range(count)]
        each_blobs = [os.urandom(SMALL_SIZE) for _ in range(each)]
        clients = self.clients_text()
        with self.server("small") as (api, endpoint, pid, _home):
            s3 = boto3_client(endpoint)
            s3.create_bucket(Bucket="master.small")
            s3.create_bucket(Bucket="master.each")
            with tusk.Client(address=api) as c, RssSampler(pid) as rss:
                before = [x.id for x in c.list_commits("small@master")]
                c.start_commit("small@master")
                self.log(f"small: {count} x 4 KiB PutObject, {clients}, one open commit")
                cpu0 = proc_cpu_seconds(pid)
                seconds, lat = self.put_many(endpoint, "master.small", blobs)
                self.server_cpu("master.small", proc_cpu_seconds(pid) - cpu0, count)
                t0 = time.perf_counter()
                done = c.finish_commit("small@master")
                finish_s = time.perf_counter() - t0
                after = [x.id for x in c.list_commits("small@master")]
                new = [x for x in after if x not in before]
                if len(new) != 1 or new[0] != done.id:
                    raise BenchError(f"small@master: {len(new)} new commits, expected 1: {new}")
                head = c.inspect_commit("small@master")
                if head.files != count:
                    raise BenchError(f"small@master holds {head.files} files, expected {count}")
                self.report.details["small_finish_commit_s"] = finish_s
                self.report.add(
                    "small_open_commit",
                    f"{count} x 4 KiB PutObject, {clients}, one open commit",
                    "obj/s",
                    count / seconds,
                    basis="small_moto",
                    target=f">= {SMALL_RATE_TARGET:.0f}",
                    passed=count / seconds >= SMALL_RATE_TARGET,
                    note=self.latency("small_open_commit", "master.small", lat)
                    + f"; finish_commit {finish_s * 1000:.0f} ms",
                )

                before = [x.id for x in c.list_commits("each@master")]
                self.log(f"small: {each} x 4 KiB PutObject, {clients}, a commit each")
                cpu0 = proc_cpu_seconds(pid)
                seconds, lat = self.put_many(endpoint, "master.each", each_blobs)
                self.server_cpu("master.each", proc_cpu_seconds(pid) - cpu0, each)
                after = c.list_commits("each@master")
                new_each = [x for x in after if x.id not in before]
                if len(new_each) != each:
                    raise BenchError(f"each@master: {len(new_each)} new commits, expected {each}")
                head = c.inspect_commit("each@master")
                if head.files != each:
                    raise BenchError(f"each@master holds {head.files} files, expected {each}")
                self.report.add(
                    "small_commit_each",
                    f"{each} x 4 KiB PutObject, {clients}, a commit each",
                    "obj/s",
                    each / seconds,
                    basis="small_moto",
                    note=self.latency("small_commit_each", "master.each", lat),
                )
            self.report.details["rss_small_sampled_peak_mib"] = rss.peak_mib

    def small_moto(self, endpoint: str, pid: int) -> None:
        count = self.args.small_count
        blobs = [os.urandom(SMALL_SIZE) for _ in range(count)]
        boto3_client(endpoint).create_bucket(Bucket="bench-small")
        self.log(f"moto: {count} x 4 KiB PutObject, {self.clients_text()}")
        cpu0 = proc_cpu_seconds(pid)
        seconds, lat = self.put_many(endpoint, "bench-small", blobs)
        self.server_cpu("bench-small", proc_cpu_seconds(pid) - cpu0, count)
        self.report.add(
            "small_moto",
            f"{count} x 4 KiB PutObject, {self.clients_text()}, moto (reference)",
            "obj/s",
            count / seconds,
            note=self.latency("small_moto", "bench-small", lat),
        )

    # -- all -------------------------------------------------------------------------

    def run(self) -> None:
        self.log(f"writing {self.args.size_mib} MiB of random bytes")
        write_random(self.src, self.size)
        self.digest = file_digest(self.src)  # also brings the file into the page cache
        for n in range(self.args.repeat):
            if self.args.repeat > 1:
                self.log(f"big object: run {n + 1} of {self.args.repeat}")
            self.big_native("address")
            self.big_native("home")
            self.big_boto3("managed")
            self.big_boto3("single")
        self.report.judge_ratios()
        self.small_tusk()
        if not self.args.skip_moto:
            with moto_server(self.env, self.work / "moto.log") as (endpoint, moto_pid):
                self.big_moto(endpoint)
                self.small_moto(endpoint, moto_pid)
        self.report.details["boto3_body_signing"] = self.encodings
        startup = self.report.details.get("cli_startup_s")
        if startup is not None:
            self.report.add(
                "cli_startup",
                "tusk --address inspect repo (CLI start-up, in the native rows)",
                "s",
                startup,
                note="best of 3",
            )
        for name, lines in self.server_logs.items():
            bad = [ln.rstrip() for ln in lines if re.search(r"error|traceback|exception", ln, re.I)]
            if bad:
                self.report.warnings.append(f"tusk up ({name}) logged: {bad[0][:300]}")
                self.report.details[f"server_log_{name}"] = bad[:20]


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "MB/s":
        return f"{value:,.0f} MB/s"
    if unit == "obj/s":
        return f"{value:,.0f} obj/s"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:.3g} {unit}"


def runs_text(row: Row) -> str:
    """Every run's value of a repeated row, for its note."""
    if len(row.samples) < 2:
        return ""
    what = "median" if row.unit == "MB/s" else "highest"
    return f"{what} of {', '.join(fmt(v, row.unit) for v in row.samples)}; "


def render(report: Report) -> str:
    cfg = report.config
    lines = [
        "",
        "S3 gateway benchmark (tusk up --sandbox none, fresh home per round, auth off)",
        f"  big object {cfg['size_mib']} MiB of random bytes, boto3 {cfg['boto3']},"
        f" moto {cfg['moto'] or '-'}, python {cfg['python']}, cpus {cfg['cpus']},"
        f" check {cfg['hash']}",
        "  native = the tusk CLI through the same server's REST API (--address): the ratio's"
        " basis; its wall time includes Python start-up (the cli_startup row)",
        "",
    ]
    header = ("row", "result", "ratio", "target", "verdict")
    table: list[tuple[str, ...]] = [header]
    groups = ("put", "get", "rss", "small", "cli")
    rows = sorted(report.rows.values(), key=lambda r: groups.index(r.key.split("_")[0]))
    for i, row in enumerate(rows):
        if i and row.key.split("_")[0] != rows[i - 1].key.split("_")[0]:
            table.append(("",) * len(header))
        ratio = report.ratio(row)
        basis = report.rows.get(row.basis or "")
        of = "native" if basis and "native_address" in basis.key else "moto"
        table.append(
            (
                row.label,
                fmt(row.value, row.unit),
                f"{ratio:.2f} x {of}" if ratio is not None else "",
                (row.target + (" native" if row.target.endswith("x") else f" {row.unit}"))
                if row.target
                else "",
                {True: "PASS", False: "FAIL", None: ""}[row.passed],
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, cells in enumerate(table):
        if not any(cells):
            lines.append("")
            continue
        parts = [cells[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(cells[1:4], widths[1:4], strict=True)
        ]
        parts.append(cells[4])
        lines.append("  " + "  ".join(parts).rstrip())
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    notes = [(r.label, runs_text(r) + r.note) for r in rows if r.note or len(r.samples) > 1]
    if notes:
        lines.append("")
        lines += [f"  {label}: {note}" for label, note in notes]
    signing = report.details.get("boto3_body_signing")
    if signing:
        lines.append("")
        lines.append("  boto3 x-amz-content-sha256 by operation: " + ", ".join(
            f"{op} {mode}" for op, mode in signing.items()
        ))  # fmt: skip
    for w in report.warnings:
        lines.append(f"  WARNING: {w}")
    for f in report.failures:
        lines.append(f"  FAILED: {f}")
    if cfg["size_mib"] != 1024 or cfg["small_count"] != 4000:
        lines.append("  (targets are meant for --size-mib 1024 --small-count 4000: indicative)")
    lines.append("")
    return "\n".join(lines)


def to_json(report: Report) -> dict[str, Any]:
    return {
        "config": report.config,
        "rows": {k: {**asdict(r), "ratio": report.ratio(r)} for k, r in report.rows.items()},
        "details": report.details,
        "warnings": report.warnings,
        "failures": report.failures,
    }


def version(dist: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="big object size (default 1024)")
    ap.add_argument("--small-count", type=int, default=4000, help="4 KiB objects (default 4000)")
    ap.add_argument(
        "--each-count", type=int, default=500, help="4 KiB objects with a commit each (500)"
    )
    ap.add_argument("--clients", type=int, default=8, help="threads for 4 KiB puts (default 8)")
    ap.add_argument(
        "--procs", type=int, default=1, help="processes the 4 KiB clients are spread over (1)"
    )
    ap.add_argument("--part-mib", type=int, default=8, help="multipart threshold and part size")
    ap.add_argument("--concurrency", type=int, default=10, help="TransferConfig max_concurrency")
    ap.add_argument("--skip-moto", action="store_true", help="no moto reference rows")
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs of the big-object rows: medians (default 1)"
    )
    ap.add_argument("--workdir", type=Path, help="parent of the run's folder (default: temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the run's folder")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if (
        min(args.size_mib, args.small_count, args.clients, args.procs, args.repeat) < 1
        or args.part_mib < 5
    ):
        ap.error(
            "--size-mib, --small-count, --clients, --procs, --repeat >= 1; --part-mib >= 5 (S3's)"
        )
    try:
        import boto3  # noqa: F401
    except ImportError:
        print("error: boto3 is not installed (the test extra brings it)", file=sys.stderr)
        return 2
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tusk-bench-s3-", dir=args.workdir))
    report = Report(
        config={
            "size_mib": args.size_mib,
            "small_count": args.small_count,
            "each_count": min(args.each_count, args.small_count),
            "clients": args.clients,
            "procs": min(args.procs, args.clients),
            "part_mib": args.part_mib,
            "concurrency": args.concurrency,
            "repeat": args.repeat,
            "boto3": version("boto3"),
            "moto": None if args.skip_moto else version("moto"),
            "tusk": version("tusk-data"),
            "hash": HASH_NAME,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "workdir": str(work),
        }
    )
    status = 0
    try:
        Bench(args, work, report).run()
    except Exception as exc:  # a failed step: reported, exit 1
        report.failures.append(f"{type(exc).__name__}: {exc}")
        status = 1
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(to_json(report), indent=2) + "\n")
        print(f"wrote {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
