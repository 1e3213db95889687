"""Shared by the benchmarks: a ``tusk serve`` process on a free loopback port, and a
PostgreSQL server in a temp dir (the tests' helper) for ``--engine postgres`` runs."""

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
def postgres() -> Iterator[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from pgserver import PgServer  # the tests' helper: initdb + pg_ctl in a temp dir

    server = PgServer()
    try:
        yield server.new_database()
    finally:
        server.stop()
