"""Helpers for API tests: a live server in a thread, and a client for it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from tusk import Client
from tusk.sdk.remote import RemoteClient
from tusk.server import Server, Services


class ServerSideClient(RemoteClient):
    """A RemoteClient whose scheduler runs on the server's services (tests only)."""

    def __init__(self, address: str, services: Services) -> None:
        super().__init__(address)
        self._services = services

    def run_scheduler(
        self,
        stop: threading.Event | None = None,
        *,
        once: bool = False,
        sandbox: str | None = None,
        log: Callable[[str], None] | None = None,
        executor: str | None = None,
        role: str = "all",
        api_url: str | None = None,
        pipelines: Sequence[str] | None = None,
        s3_url: str | None = None,
    ) -> None:
        from tusk.pps.executor import LocalExecutor
        from tusk.pps.scheduler import Scheduler

        if executor not in (None, "local", "host"):
            raise NotImplementedError("server-side test scheduler runs the local executor only")
        pps = self._services.pps
        runner = LocalExecutor(sandbox, run_images=executor != "host")
        Scheduler(
            pps, runner, log=log, role=role, api_url=api_url, pipelines=pipelines, s3_url=s3_url
        ).run(stop, once=once)


@dataclass
class Live:
    server: Server
    stop: threading.Event
    thread: threading.Thread
    clients: list[RemoteClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def services(self) -> Services:
        return self.server.services

    def client(self) -> ServerSideClient:
        c = ServerSideClient(self.url, self.services)
        self.clients.append(c)
        return c


def start_live(home: Path, *, max_body: int | None = None, scheduler: bool = False) -> Live:
    server = Server(Services.open(home), port=0, max_body=max_body)
    server.start()
    stop = threading.Event()
    thread = threading.Thread(
        target=server.run, args=(stop,), kwargs={"scheduler": scheduler}, daemon=True
    )
    thread.start()
    return Live(server, stop, thread)


def stop_live(live: Live) -> None:
    for c in live.clients:
        c.close()
    live.stop.set()
    live.thread.join(30)
    live.server.close()


def spawn(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[Any, str]:
    """``tusk --home HOME <args>`` (serve or up, with --port 0) in a subprocess; its API URL.

    The URL is read from the "REST API on ..." line on stderr.
    """
    import os
    import re
    import subprocess
    import sys
    import time

    full_env = {k: v for k, v in os.environ.items() if k not in ("TUSK_ADDRESS", "TUSK_DEBUG")}
    full_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tusk.cli.main", "--home", str(home), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(r"REST API on (https?://\S+)/api/v1", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise AssertionError(f"no API address from tusk {' '.join(args)}: {''.join(seen)}")


def peak_rss(pid: int) -> int:
    """The peak resident set of a process, in bytes (VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@contextmanager
def client_over(transport: str, home: Path) -> Iterator[Client]:
    """A client of ``home``: over HTTP through a live server (``transport`` "http"), else
    in-process."""
    if transport == "http":
        live = start_live(home)
        try:
            yield cast(Client, live.client())
        finally:
            stop_live(live)
    else:
        with Client(home) as c:
            yield c
