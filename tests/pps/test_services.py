"""Services (issue 21): a long-lived server over the latest commits of its inputs.

The service is a small HTTP server (the standard library's) answering the content of its
input's ``data.txt``. It is reached on its external port, through Tusk's forwarder, both
in-process (an embedded store, the scheduler in a thread) and under a real ``tusk up``.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import tusk
from gateway import start_gateway
from tusk.polling import poll_until

SERVER = r"""
import http.server, os
port = int(os.environ["TUSK_SERVICE_PORT"])
root = os.environ.get("TUSK_PFS", "/pfs")

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open(os.path.join(root, "in", "data.txt"), "rb").read()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print("serving", os.environ["in_COMMIT"], flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service(name: str, internal: int, external: int) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": "in", "glob": "/"}},
        "service": {"internal_port": internal, "external_port": external},
        "transform": {"cmd": [sys.executable, "-c", SERVER]},
    }


def get(port: int, host: str = "127.0.0.1") -> bytes:
    with urllib.request.urlopen(f"http://{host}:{port}/", timeout=40) as r:
        return bytes(r.read())


def answers(port: int, want: bytes, host: str = "127.0.0.1", timeout: float = 40) -> None:
    def check() -> tuple[bool, bytes]:
        try:
            got = get(port, host)
        except (OSError, urllib.error.URLError):
            return False, b""
        return got == want, got

    poll_until(check, timeout, lambda got: f"the service answers {got!r}, not {want!r}")


def test_a_service_answers_from_its_input_and_restarts_on_new_data(
    running: tusk.Client,
) -> None:
    c = running
    c.create_repo("in")
    c.put_file("in@master:/data.txt", b"first")
    external = free_port()
    c.create_pipeline(service("web", free_port(), external))
    answers(external, b"first")
    info = c.inspect_pipeline("web")
    assert info.process_state == "running" and f":{external}" in info.process_detail
    # Clients keep asking while new data arrives: none is refused during the restart.
    errors: list[Exception] = []
    seen: list[bytes] = []
    done = threading.Event()

    def ask() -> None:
        while not done.is_set():
            try:
                seen.append(get(external))
            except Exception as exc:
                errors.append(exc)

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    c.put_file("in@master:/data.txt", b"second")
    answers(external, b"second")
    done.set()
    asker.join(60)
    assert errors == [] and b"first" in seen and seen[-1] == b"second"
    jobs = c.list_jobs("web")
    assert [j.state for j in jobs] == ["success", "success"]  # no datum: the process is it
    assert all(j.datums_total == 0 for j in jobs)
    poll_until(
        lambda: (len([x for x in c.logs("web") if x.stream == "stdout"]) == 2, None),
        10,
        lambda _: "the new process's output is not in the logs",
    )
    logs = [x.line for x in c.logs("web") if x.stream == "stdout"]
    commits = [j.input_commits[0].split("@")[1] for j in reversed(jobs)]
    assert logs == [f"serving {commit}" for commit in commits]  # each ran on its commit
    assert c.inspect_pipeline("web").restarts == 0  # new data is not a failure: not counted
    c.stop_pipeline("web")
    poll_until(
        lambda: (_refused(external), None), 30, lambda _: "the stopped service still answers"
    )


def _refused(port: int) -> bool:
    try:
        get(port)
    except (OSError, urllib.error.URLError):
        return True
    return False


def test_a_taken_external_port_is_the_services_state(running: tusk.Client) -> None:
    c = running
    c.create_repo("in")
    c.put_file("in@master:/data.txt", b"x")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        c.create_pipeline(service("web", free_port(), port))

        def crashed() -> tuple[bool, Any]:
            info = c.inspect_pipeline("web")
            return info.process_state == "crashed", info

        info = poll_until(crashed, 30, lambda i: f"state {i.process_state}")
        assert f"external_port {port} on 127.0.0.1 is taken" in info.process_detail


def test_service_specs_are_checked(tmp_path: Path) -> None:
    with tusk.Client(tmp_path / "home") as c:
        c.create_repo("in")
        with pytest.raises(tusk.errors.InvalidSpec, match="give two different ports"):
            c.create_pipeline(service("web", 8080, 8080))
        with pytest.raises(tusk.errors.InvalidSpec, match=r"service\.internal_port"):
            c.create_pipeline(service("web", 0, 8080))
        assert c.list_pipelines() == []


def test_a_service_under_tusk_up(tmp_path: Path) -> None:
    server = start_gateway(tmp_path / "home")
    try:
        with tusk.Client(address=server.api) as c:
            c.create_repo("in")
            c.put_file("in@master:/data.txt", b"hello")
            external = free_port()
            c.create_pipeline(service("web", free_port(), external))
            answers(external, b"hello", timeout=60)
            c.put_file("in@master:/data.txt", b"again")
            answers(external, b"again", timeout=60)
            deadline = time.monotonic() + 30
            while c.list_jobs("web")[0].state != "success" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [j.state for j in c.list_jobs("web")] == ["success", "success"]
    finally:
        server.stop()


def test_inputs_a_killed_scheduler_left_are_removed(tmp_path: Path) -> None:
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    with tusk.Client(tmp_path / "home") as c:
        left = c.home / "services" / "web" / f"1-{socket.gethostname()}-{dead.pid}"
        live = c.home / "services" / "web" / f"2-other-host-{dead.pid}"  # not this host's
        for folder in (left, live):
            (folder / "in").mkdir(parents=True)
        stop = threading.Event()
        loop = threading.Thread(target=c.run_scheduler, kwargs={"stop": stop}, daemon=True)
        loop.start()
        poll_until(lambda: (not left.exists(), None), 10, lambda _: "the leftover stays")
        stop.set()
        loop.join(30)
        assert live.exists()
