"""A real PostgreSQL for the tests: Debian's server binaries, initdb + pg_ctl in a temp dir.

Listens on 127.0.0.1 only, on a free port; trust authentication for the local test user.
When the binaries are missing, tests that need the server are skipped on a laptop and fail
in CI (``CI=true``), where ``dev.sh`` installs the ``postgresql`` package first.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def pg_bindir() -> Path | None:
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(Path(out.stdout.strip()))
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        candidates += sorted((p / "bin" for p in base.iterdir()), reverse=True)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self) -> None:
        bindir = pg_bindir()
        if bindir is None:
            message = "PostgreSQL server binaries not found (apt-get install postgresql)"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="tusk-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self.start()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}"
        self._n = 0

    def start(self) -> None:
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.root} -F -c fsync=off"
        log = str(self.root / "log")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", log, "-w", "start")

    def require_passwords(self) -> None:
        """From now on every role but ``postgres`` logs in with its password (SCRAM) over
        TCP; ``postgres`` keeps trust, so the other tests' URLs work unchanged."""
        hba = self.data / "pg_hba.conf"
        hba.write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        self._run("pg_ctl", "-D", str(self.data), "reload")
        import time

        import psycopg

        deadline = time.monotonic() + 30  # the server rereads pg_hba.conf on its own time
        while True:
            try:
                psycopg.connect(f"postgresql://tusk_probe:x@127.0.0.1:{self.port}/postgres").close()
            except psycopg.OperationalError as exc:
                if "password authentication failed" in str(exc):
                    return
            if time.monotonic() > deadline:
                raise AssertionError("PostgreSQL did not start asking for passwords")
            time.sleep(0.05)

    def halt(self) -> None:
        """Stop the server, keeping its data (``start`` brings it back)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self.bindir / tool), *args],
            check=True,
            capture_output=True,
            cwd=self.root,
        )

    def new_database(self) -> str:
        import psycopg

        self._n += 1
        name = f"t{os.getpid()}_{self._n}"
        with psycopg.connect(f"{self.url}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            # A database per test leaves gigabytes by the end of a session: removing them took
            # 10-30 s of the session's last teardown. A detached rm does it after the tests.
            try:
                subprocess.Popen(
                    ["rm", "-rf", str(self.root)],
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            except OSError:
                shutil.rmtree(self.root, ignore_errors=True)
