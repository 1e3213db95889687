"""Services: time from an input commit to the restarted service answering with it (issue 21).

A service pipeline (the standard library's HTTP server answering its input's ``data.txt``)
runs under an in-process scheduler on an embedded store, the default sandbox. Each round puts
a new ``data.txt`` and times, from the put's return, until a client on the external port gets
the new content (the client asks in a loop; connections wait in Tusk's forwarder while the
service restarts). Reported: each round and the median; the first start is reported apart.

Run: ``.venv/bin/python bench/bench_services.py [--rounds 10] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import tusk

SERVER = r"""
import http.server, os
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

port = int(os.environ["TUSK_SERVICE_PORT"])
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def until(port: int, want: bytes, timeout: float = 120) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as r:
                if r.read() == want:
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.01)
    raise SystemExit(f"the service never answered {want!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-services-") as tmp:
        c = tusk.Client(Path(tmp) / "home")
        c.create_repo("in")
        c.put_file("in@master:/data.txt", b"round 0")
        external = free_port()
        stop = threading.Event()
        loop = threading.Thread(target=c.run_scheduler, kwargs={"stop": stop}, daemon=True)
        loop.start()
        try:
            created = time.monotonic()
            c.create_pipeline(
                {
                    "pipeline": {"name": "web"},
                    "input": {"pfs": {"repo": "in", "glob": "/"}},
                    "service": {"internal_port": free_port(), "external_port": external},
                    "transform": {"cmd": [sys.executable, "-c", SERVER]},
                }
            )
            until(external, b"round 0")
            first = time.monotonic() - created
            print(f"first start: {first:.2f} s from create pipeline", flush=True)
            rounds = []
            for i in range(1, args.rounds + 1):
                body = f"round {i}".encode()
                c.put_file("in@master:/data.txt", body)
                rounds.append(until(external, body))
                print(f"round {i}: {rounds[-1]:.2f} s from the commit", flush=True)
        finally:
            stop.set()
            loop.join(60)
            c.close()
    median = statistics.median(rounds)
    print(f"input commit -> restarted service answering: median {median:.2f} s, "
          f"min {min(rounds):.2f} s, max {max(rounds):.2f} s ({len(rounds)} rounds)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"first": first, "rounds": rounds}, indent=2))


if __name__ == "__main__":
    main()
