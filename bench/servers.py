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


API_LINE = r"REST API on (https?://\S+)/api/v1"
S3_LINE = r"S3 gateway on (https?://\S+)"


@contextmanager
def _tusk(
    home: Path, args: list[str], env: dict[str, str], patterns: list[str], log: list[str]
) -> Iterator[tuple[list[str], int]]:
    """``tusk --home HOME <args>`` in its own process, until each pattern matched a line of
    its stderr; yields (each pattern's first group, pid). The rest of stderr is drained into
    ``log`` by a thread, so the server never blocks; SIGTERM at the end."""
    cmd = [sys.executable, "-m", "tusk.cli.main", "--home", str(home), *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stderr is not None
    found: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(found) < len(patterns):
        line = proc.stderr.readline()
        if not line:
            break
        log.append(line)
        for pattern in patterns:
            if pattern not in found and (m := re.search(pattern, line)):
                found[pattern] = m.group(1)
    if len(found) < len(patterns):
        proc.kill()
        proc.wait()
        raise SystemExit(f"tusk {args[0]} did not start: {''.join(log)[-800:]}")
    drain = threading.Thread(target=lambda: log.extend(proc.stderr or ()), daemon=True)
    drain.start()
    try:
        yield [found[p] for p in patterns], proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def tusk_serve(home: Path, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """``tusk --home HOME serve --port 0`` in its own process; yields (address, pid).

    The address comes from the "REST API on ..." line on stderr (as tests/api/apihelpers.py
    ``spawn`` reads it)."""
    with _tusk(home, ["serve", "--port", "0"], env, [API_LINE], []) as ((address,), pid):
        yield address, pid


@contextmanager
def tusk_up_s3(
    home: Path, env: dict[str, str], log: list[str] | None = None
) -> Iterator[tuple[str, str, int]]:
    """``tusk --home HOME up --port 0 --s3-port 0 --sandbox none`` in its own process (the
    scheduler, the REST API and the S3 gateway); yields (API address, S3 endpoint, pid).

    Both addresses come from the lines it prints on stderr (as tests/gateway.py reads
    them); every line of stderr goes to ``log`` when one is given.
    """
    args = ["up", "--port", "0", "--s3-port", "0", "--sandbox", "none"]
    with _tusk(home, args, env, [API_LINE, S3_LINE], [] if log is None else log) as (
        (api, s3),
        pid,
    ):
        yield api, s3, pid


@contextmanager
def postgres() -> Iterator[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from pgserver import PgServer  # the tests' helper: initdb + pg_ctl in a temp dir

    server = PgServer()
    try:
        yield server.new_database()
    finally:
        server.stop()
