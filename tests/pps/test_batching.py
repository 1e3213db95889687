"""Datum batching (issue 21): one process works through many datums with ``tusk next datum``.

The code prints ``start`` on stderr when it starts, so the tests count in the job's logs how
many processes a batch took. In-process runs use the default sandbox (bubblewrap where it
works, which hides this machine's /tmp from the code).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tusk

PYTHON_LOOP = r"""
import os, pathlib, sys
from tusk.sdk.batching import next_datum
print("start", file=sys.stderr, flush=True)
pfs = pathlib.Path(os.environ["TUSK_PFS"])
error = ""
while True:
    next_datum(error)
    error = ""
    for f in (pfs / "in").iterdir():
        data = f.read_text()
        if data == "bad":
            error = f"cannot read {f.name}"
        elif data == "exit":
            sys.exit(7)
        else:
            (pfs / "out" / f.name).write_text(data.upper() + " " + os.environ["PACH_DATUM_ID"][:8])
"""

SHELL_LOOP = r"""
echo start >&2
while tusk next datum; do
    for f in "$TUSK_PFS"/in/*; do tr a-z A-Z < "$f" > "$TUSK_PFS/out/$(basename "$f")"; done
done
"""


def spec(name: str, cmd: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": "in", "glob": "/*"}},
        "transform": {"cmd": cmd, "datum_batching": True},
        "datum_tries": 1,
        **extra,
    }


def starts(c: tusk.Client, job: str) -> int:
    return sum(1 for x in c.logs("up", job) if x.stream == "stderr" and x.line == "start")


@pytest.fixture
def client(tmp_path: Path) -> Any:
    c = tusk.Client(tmp_path / "home")
    c.create_repo("in")
    yield c
    c.close()


def test_one_process_works_through_a_hundred_datums_one_failing(
    client: tusk.Client, tmp_path: Path
) -> None:
    # the last one fails (a failed datum stops the job's other datums, as without batching)
    files = [(f"/f{i:03d}", b"bad" if i == 99 else f"data {i}".encode()) for i in range(100)]
    client.put_files("in@master", files)
    client.create_pipeline(spec("up", [sys.executable, "-c", PYTHON_LOOP]))
    client.run_scheduler(once=True)
    job = client.list_jobs("up")[0]
    assert job.state == "failure"
    datums = client.list_datums(f"up@{job.id}")
    failed = [d for d in datums if d.state == "failed"]
    assert len(failed) == 1 and failed[0].error == "tusk next datum --error: cannot read f099"
    assert failed[0].files[0]["path"] == "/f099"
    ok = [d for d in datums if d.state == "success"]
    assert len(ok) == 99
    # each batch of claimed datums (up to 32) is one process: far fewer starts than datums
    assert 1 <= starts(client, job.id) <= 15


# A call that connects, then takes its time to send its request (a slow start in an image,
# a loaded machine): the worker's read of it times out at first and must still get it.
SLOW_CALLER = r"""
import json, os, pathlib, socket, sys, time
print("start", file=sys.stderr, flush=True)
pfs = pathlib.Path(os.environ["TUSK_PFS"])
while True:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(os.environ["TUSK_NEXT_DATUM"])
        time.sleep(0.3)  # several of the worker's 50 ms reads time out meanwhile
        s.sendall(json.dumps({"error": ""}).encode()[:5])
        time.sleep(0.2)  # and a request may come in pieces
        s.sendall(json.dumps({"error": ""}).encode()[5:] + b"\n")
        answer = s.makefile("rb").readline()
    if not answer:
        sys.exit(1)
    for f in (pfs / "in").iterdir():
        (pfs / "out" / f.name).write_text(f.read_text().upper())
"""


def test_a_request_sent_slowly_is_still_answered(client: tusk.Client) -> None:
    client.put_files("in@master", [(f"/f{i}", f"x{i}".encode()) for i in range(3)])
    client.create_pipeline(spec("up", [sys.executable, "-c", SLOW_CALLER]))
    client.run_scheduler(once=True)
    job = client.list_jobs("up")[0]
    assert job.state == "success", job.reason
    assert [client.get_file(f"up@master:/f{i}") for i in range(3)] == [b"X0", b"X1", b"X2"]


def test_outputs_are_per_datum_and_a_rerun_skips_them(client: tusk.Client, tmp_path: Path) -> None:
    client.put_files("in@master", [(f"/f{i}", f"x{i}".encode()) for i in range(10)])
    client.create_pipeline(spec("up", [sys.executable, "-c", PYTHON_LOOP]))
    client.run_scheduler(once=True)
    job = client.list_jobs("up")[0]
    assert job.state == "success", job.reason
    outs = {
        f.path: client.get_file(f"up@master:{f.path}").decode()
        for f in client.list_files("up@master:/")
    }
    by_file = {d.files[0]["path"]: d.id for d in client.list_datums(f"up@{job.id}")}
    assert outs == {p: f"X{p[2:]} {by_file[p][:8]}" for p in by_file}  # each its own datum id
    client.put_file("in@master:/f10", b"x10")
    client.run_scheduler(once=True)
    second = client.list_jobs("up")[0]
    assert (second.processed, second.skipped) == (1, 10)


def test_code_that_exits_early_fails_its_datum_and_is_started_again(
    client: tusk.Client, tmp_path: Path
) -> None:
    files = [(f"/f{i}", b"exit" if i == 3 else f"x{i}".encode()) for i in range(8)]
    client.put_files("in@master", files)
    client.create_pipeline(spec("up", [sys.executable, "-c", PYTHON_LOOP], datum_tries=2))
    client.run_scheduler(once=True)
    job = client.list_jobs("up")[0]
    failed = [d for d in client.list_datums(f"up@{job.id}") if d.state == "failed"]
    assert len(failed) == 1 and failed[0].files[0]["path"] == "/f3"
    assert failed[0].error == "the user code exited with code 7 before it asked for the next datum"
    assert starts(client, job.id) >= 2  # and started again for what came after it


def test_a_shell_loop_with_the_cli_and_a_timeout(client: tusk.Client, tmp_path: Path) -> None:
    client.put_files("in@master", [("/a", b"alpha"), ("/b", b"beta")])
    client.create_pipeline(spec("up", ["sh", "-c", SHELL_LOOP]))
    client.run_scheduler(once=True)
    assert client.list_jobs("up")[0].state == "success"
    assert client.get_file("up@master:/a") == b"ALPHA"
    assert client.get_file("up@master:/b") == b"BETA"
    slow = spec("slow", ["sh", "-c", "tusk next datum; sleep 30"], datum_timeout="1s")
    client.create_pipeline(slow)
    client.run_scheduler(once=True)
    job = client.list_jobs("slow")[0]
    errors = {d.error for d in client.list_datums(f"slow@{job.id}") if d.state == "failed"}
    assert errors == {"timed out after 1s (datum_timeout)"}


def test_next_datum_outside_a_batching_pipeline_is_one_clear_error() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tusk.cli.main", "next", "datum"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: tusk next datum works only in the code of a pipeline with "
        "transform.datum_batching: true (TUSK_NEXT_DATUM is not set)"
    ]


def test_a_batched_datums_secret_is_scrubbed_from_its_logs(client: tusk.Client) -> None:
    client.create_secret(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
         "stringData": {"token": "s3cret-batch-4711"}}
    )  # fmt: skip
    client.put_files("in@master", [("/a", b"a"), ("/b", b"b")])
    code = 'while tusk next datum; do echo "token $TOKEN"; done'
    data = spec("up", ["sh", "-c", code])
    data["transform"]["secrets"] = [{"name": "creds", "key": "token", "env_var": "TOKEN"}]
    client.create_pipeline(data)
    client.run_scheduler(once=True)
    job = client.list_jobs("up")[0]
    assert job.state == "success", job.reason
    lines = [x.line for x in client.logs("up", job.id)]
    assert "token ***" in lines and not any("s3cret-batch-4711" in x for x in lines)


def test_in_an_image_a_pachyderm_loop_runs_unchanged(client: tusk.Client, tmp_path: Path) -> None:
    """In the spec's image (no Tusk there), ``pachctl next datum`` and ``tusk next datum`` on
    the code's PATH are Tusk's shims; /pfs moves from datum to datum as on the host."""
    from imagekit import python_image

    image = python_image(tmp_path / "img", "batch", packages=())
    loop = (
        "echo start >&2\n"
        "while pachctl next datum; do\n"
        "  for f in /pfs/in/*; do\n"
        '    if [ "$(cat "$f")" = bad ]; then tusk next datum --error "bad $(basename "$f")"; fi\n'
        '    tr a-z A-Z < "$f" > "/pfs/out/$(basename "$f")"\n'
        "  done\n"
        "done\n"
    )
    client.put_files("in@master", [(f"/f{i:02d}", b"x%d" % i) for i in range(40)])
    pipeline = spec("up", ["sh", "-c", loop], parallelism_spec={"constant": 1})
    pipeline["transform"]["image"] = image
    client.create_pipeline(pipeline)
    client.run_scheduler(once=True)
    job = client.list_jobs("up")[0]
    assert job.state == "success", job.reason
    # each batch of claimed datums is one process: far fewer starts than datums
    assert 1 <= starts(client, job.id) <= 8
    assert client.get_file("up@master:/f03") == b"X3"
    assert len(client.list_files("up@master:/")) == 40
    assert job.image_digest is not None
    # A datum that says it failed (the shim's --error) fails as without batching.
    client.put_files("in@master", [("/f9", b"bad")])
    client.run_scheduler(once=True)
    job = max(client.list_jobs("up"), key=lambda j: j.created_at)
    assert job.state == "failure" and "tusk next datum --error: bad f9" in job.reason
