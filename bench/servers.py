"""Shared by the benchmarks: a ``tusk serve`` process on a free loopback port, a ``tusk up``
with its S3 gateway, and a PostgreSQL server in a temp dir (the tests' helper) for
``--engine postgres`` runs."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def tusk_serve(home: Path, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """``tusk --home HOME serve --port 0`` in its own process; yields (address, pid).

    The address comes from the "REST API on ..." line on stderr (as tests/api/apihelpers.py
    ``spawn`` reads it); the rest of stderr is drained by a thread so the server never blocks.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "tusk.cli.main", "--home", str(home), "serve", "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    address = None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(r"REST API on (https?://\S+)/api/v1", line)
        if m:
            address = m.group(1)
            break
    if address is None:
        proc.kill()
        raise SystemExit(f"tusk serve did not start: {''.join(seen)[-800:]}")
    drain = threading.Thread(target=lambda: proc.stderr.read() if proc.stderr else "", daemon=True)
    drain.start()
    try:
        yield address, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def tusk_up_s3(
    home: Path, env: dict[str, str], log: list[str] | None = None
) -> Iterator[tuple[str, str, int]]:
    """``tusk --home HOME up --port 0 --s3-port 0 --sandbox none`` in its own process (the
    scheduler, the REST API and the S3 gateway); yields (API address, S3 endpoint, pid).

    Both addresses come from the lines it prints on stderr (as tests/s3/gateway.py reads
    them); the rest of stderr is drained by a thread so the server never blocks, into ``log``
    when one is given (every line, the first ones included).
    """
    log = [] if log is None else log
    cmd = [sys.executable, "-m", "tusk.cli.main", "--home", str(home), "up", "--port", "0",
           "--s3-port", "0", "--sandbox", "none"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stderr is not None
    api = s3 = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (api is None or s3 is None):
        line = proc.stderr.readline()
        if not line:
            break
        log.append(line)
        if m := re.search(r"REST API on (https?://\S+)/api/v1", line):
            api = m.group(1)
        if m := re.search(r"S3 gateway on (https?://\S+)", line):
            s3 = m.group(1)
    if api is None or s3 is None:
        proc.kill()
        proc.wait()
        raise SystemExit(f"tusk up did not print both addresses: {''.join(log)[-800:]}")
    drain = threading.Thread(target=lambda: log.extend(proc.stderr or ()), daemon=True)
    drain.start()
    try:
        yield api, s3, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def postgres() -> Iterator[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from pgserver import PgServer  # the tests' helper: initdb + pg_ctl in a temp dir

    server = PgServer()
    try:
        yield server.new_database()
    finally:
        server.stop()
