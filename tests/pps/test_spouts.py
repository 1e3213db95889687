"""Spouts (issue 21): a pipeline whose code is one long-lived process feeding its output repo.

In-process: a scheduler thread on an embedded store supervises the spout (it writes through
``TUSK_HOME``). Against a real ``tusk up`` with auth on: the spout writes through the API with
a token of its own identity, which may write its output repo and nothing else.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tusk
from gateway import Gateway, start_gateway
from tusk.polling import poll_until

# Lines of a queue file become one commit each: the line at /lines/N and the offset reached,
# in the same commit, so a restarted spout resumes after the last line it committed.
QUEUE_SPOUT = r"""
import os, sys, time, tusk
queue = sys.argv[1]
c = tusk.Client()
repo, branch = os.environ["TUSK_OUTPUT_REPO"], os.environ["TUSK_OUTPUT_BRANCH"]
try:
    done = int(c.get_file(f"{repo}@{branch}:/offset"))
except tusk.errors.NotFound:
    done = 0
print(f"resuming at {done}", flush=True)
while True:
    lines = open(queue).read().splitlines()
    for n in range(done, len(lines)):
        c.put_files(f"{repo}@{branch}",
                    [(f"/lines/{n:05d}", lines[n].encode()), ("/offset", str(n + 1).encode())])
        done = n + 1
    time.sleep(0.02)
"""


def spout(name: str, code: str, *args: str) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "spout": {},
        "transform": {"cmd": [sys.executable, "-c", code, *args]},
    }


def wait_for(check: Any, what: str, timeout: float = 30) -> Any:
    return poll_until(lambda: (bool(v := check()), v), timeout, lambda _v: what)


def offset(c: tusk.Client, repo: str) -> int:
    try:
        return int(c.get_file(f"{repo}@master:/offset"))
    except tusk.errors.NotFound:
        return 0


def process(c: tusk.Client, name: str) -> Any:
    with c._pps.meta.read() as tx:  # the supervisor's record (its pid is not in the API)
        return tx.get_process(name)


def test_a_spout_killed_and_restarted_loses_and_repeats_nothing(
    running: tusk.Client, tmp_path: Path
) -> None:
    c = running
    queue = tmp_path / "queue.txt"
    queue.write_text("".join(f"line {i}\n" for i in range(20)))
    c.create_pipeline(spout("feed", QUEUE_SPOUT, str(queue)))
    wait_for(lambda: offset(c, "feed") == 20, "the spout did not commit 20 lines")
    first = process(c, "feed")
    assert first.state == "running" and first.pid
    os.killpg(first.pid, signal.SIGKILL)  # mid-stream: it may be writing a commit right now
    with open(queue, "a") as f:
        f.write("".join(f"line {i}\n" for i in range(20, 40)))
    wait_for(lambda: offset(c, "feed") == 40, "the restarted spout did not catch up")
    after = process(c, "feed")
    assert after.pid != first.pid and after.restarts == 1 and after.state == "running"
    files = {
        f.path: c.get_file(f"feed@master:{f.path}") for f in c.list_files("feed@master:/lines")
    }
    assert files == {f"/lines/{i:05d}": f"line {i}".encode() for i in range(40)}
    assert len(c.list_commits("feed@master")) == 40  # one commit per line: none twice
    assert c.list_jobs("feed") == []  # a spout's commits start no job of its own
    info = c.inspect_pipeline("feed")
    assert info.input == "spout" and info.process_state == "running" and info.restarts == 1
    logs = [x.line for x in c.logs("feed")]
    assert "resuming at 0" in logs and "resuming at 20" in logs
    assert any("killed by signal 9" in x for x in logs)
    assert c.fsck().ok


def test_a_crashing_spout_backs_off_and_the_scheduler_stays_responsive(
    running: tusk.Client,
) -> None:
    c = running
    c.create_pipeline(spout("broken", "import sys; print('boom', file=sys.stderr); sys.exit(3)"))
    c.create_repo("in")
    c.create_pipeline(
        {
            "pipeline": {"name": "copy"},
            "input": {"pfs": {"repo": "in", "glob": "/*"}},
            "transform": {"cmd": ["sh", "-c", 'cp "$in" "$TUSK_PFS/out/"']},
        }
    )
    wait_for(lambda: c.inspect_pipeline("broken").restarts >= 3, "no restarts", 40)
    c.put_file("in@master:/a", b"a")  # meanwhile, other pipelines run as usual
    wait_for(lambda: [j.state for j in c.list_jobs("copy")] == ["success"], "no job ran")
    info = c.inspect_pipeline("broken")
    assert info.process_state == "crashed"
    assert info.process_detail == "exited with code 3: boom"
    delays = [
        float(m.group(1))
        for x in c.logs("broken")
        if (m := re.search(r"starting again in ([0-9.]+)s", x.line))
    ]
    assert len(delays) >= 3 and delays[:3] == sorted(delays[:3]) and delays[2] > delays[0]
    assert "boom" in [x.line for x in c.logs("broken") if x.stream == "stderr"]


def test_stop_and_start_a_spout(running: tusk.Client, tmp_path: Path) -> None:
    c = running
    queue = tmp_path / "queue.txt"
    queue.write_text("a\n")
    c.create_pipeline(spout("feed", QUEUE_SPOUT, str(queue)))
    wait_for(lambda: offset(c, "feed") == 1, "no first line")
    pid = process(c, "feed").pid
    c.stop_pipeline("feed")
    wait_for(lambda: process(c, "feed").state == "stopped", "the spout did not stop")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    queue.write_text("a\nb\n")
    time.sleep(0.5)
    assert offset(c, "feed") == 1  # nothing runs while it is stopped
    c.start_pipeline("feed")
    wait_for(lambda: offset(c, "feed") == 2, "the started spout did not go on")
    pid = process(c, "feed").pid
    c.delete_pipeline("feed")
    wait_for(lambda: not _alive(pid), "the deleted spout's process lives on")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# Pachyderm 2's spout with a service (console/test-dags/pipelines/spout-and-service): the
# spout commits what it receives over HTTP and answers how many it has.
SERVING_SPOUT = r"""
import http.server, os, tusk
c = tusk.Client()
repo = os.environ["TUSK_OUTPUT_REPO"]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        n = len(c.list_files(f"{repo}@master:/")) if c.inspect_branch(f"{repo}@master").head else 0
        c.put_file(f"{repo}@master:/msg{n}", body)
        self.send_response(200); self.end_headers(); self.wfile.write(b"stored %d" % n)
    def log_message(self, *args): pass
port = int(os.environ["TUSK_SERVICE_PORT"])
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def test_a_spout_with_a_service_receives_and_commits(running: tusk.Client) -> None:
    import urllib.request

    from s3server import free_port

    c = running
    external, internal = free_port(), free_port()
    spec = spout("inbox", SERVING_SPOUT)
    spec["spout"] = {"service": {"externalPort": external, "internalPort": internal}}
    c.create_pipeline(spec)

    def post(body: bytes) -> bytes:
        url = f"http://127.0.0.1:{external}/"
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10) as r:
            return bytes(r.read())

    wait_for(lambda: (p := process(c, "inbox")) is not None and p.state == "running", "no spout")
    # the forwarder waits for the spout to listen, as for a service restarting
    assert post(b"first") == b"stored 0"
    assert post(b"second") == b"stored 1"
    assert c.get_file("inbox@master:/msg1") == b"second"
    info = process(c, "inbox")
    assert info.state == "running" and f"serving on 127.0.0.1:{external}" in info.detail
    c.delete_pipeline("inbox")


def test_spout_specs_are_checked(tmp_path: Path) -> None:
    with tusk.Client(tmp_path / "home") as c:
        c.create_repo("in")
        with pytest.raises(tusk.errors.InvalidSpec, match="a spout has no input"):
            c.create_pipeline(
                {**spout("x", "pass"), "input": {"pfs": {"repo": "in", "glob": "/*"}}}
            )
        with pytest.raises(tusk.errors.InvalidSpec, match="input: required field missing"):
            c.create_pipeline({"pipeline": {"name": "x"}, "transform": {"cmd": ["true"]}})
        assert c.list_pipelines() == []


# Against a real tusk up, auth on: the spout's token writes its output repo only.

OWN_REPO_ONLY = r"""
import os, time, tusk
c = tusk.Client()
repo = os.environ["TUSK_OUTPUT_REPO"]
c.put_file(f"{repo}@master:/hello", b"from the spout")
try:
    c.put_file("other@master:/x", b"x")
    print("wrote other", flush=True)
except tusk.errors.PermissionDenied as exc:
    print("refused:", exc.code, flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = start_gateway(tmp_path_factory.mktemp("spout") / "home")
    yield g
    g.stop()


def test_a_spout_under_tusk_up_writes_as_its_pipeline(server: Gateway) -> None:
    with tusk.Client(address=server.api) as anon:
        token = anon.auth_activate()
    with tusk.Client(address=server.api, token=token) as c:
        c.create_repo("other")
        c.create_pipeline(spout("hello", OWN_REPO_ONLY))
        wait_for(lambda: _has(c, "hello@master:/hello"), "the spout wrote nothing", 60)
        assert c.get_file("hello@master:/hello") == b"from the spout"
        wait_for(lambda: any("refused" in x.line for x in c.logs("hello")), "no refusal logged", 30)
        assert "refused: permission_denied" in [x.line for x in c.logs("hello")]
        assert not _has(c, "other@master:/x")  # refused: nothing was written there
        assert c.inspect_pipeline("hello").process_state == "running"


def _has(c: tusk.Client, address: str) -> bool:
    try:
        c.get_file(address)
    except tusk.errors.NotFound:
        return False
    return True
