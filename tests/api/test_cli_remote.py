"""The CLI against a server: ``--address`` / ``$TUSK_ADDRESS``, ``tusk serve`` and ``tusk up``
as real processes, and how much memory a big upload costs the server."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from apihelpers import Live, peak_rss, spawn
from click.testing import CliRunner, Result

from tusk.cli.main import cli
from tusk.sdk.remote import RemoteClient


def run(*args: str, code: int = 0, input: str | bytes | None = None, **env: str) -> Result:
    r = CliRunner().invoke(cli, list(args), input=input, env=env or None, catch_exceptions=False)
    assert r.exit_code == code, f"tusk {' '.join(args)} -> {r.exit_code}\n{r.stdout}\n{r.stderr}"
    return r


def test_every_kind_of_command_works_against_a_server(live: Live, tmp_path: Path) -> None:
    a = ("--address", live.url)
    run(*a, "create", "repo", "data", "-d", "pictures")
    local = tmp_path / "in.csv"
    local.write_bytes(b"a,b\n1,2\n")
    run(*a, "put", "file", "data@master:/in.csv", "-f", str(local))
    run(*a, "put", "file", "data@master:/stdin.txt", "-f", "-", input=b"from stdin\n")
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x.txt").write_bytes(b"x")
    run(*a, "put", "file", "-r", "data@master:/folder", "-f", str(folder))
    assert run(*a, "get", "file", "data@master:/stdin.txt").stdout == "from stdin\n"
    repos = json.loads(run(*a, "list", "repo", "-o", "json").stdout)
    assert [r["name"] for r in repos] == ["data"] and repos[0]["description"] == "pictures"
    files = json.loads(run(*a, "glob", "file", "data@master:/**", "-o", "json").stdout)
    assert {f["path"] for f in files} >= {"/in.csv", "/folder/sub/x.txt"}
    out = tmp_path / "out"
    run(*a, "get", "file", "-r", "data@master:/folder", "-o", str(out))
    assert (out / "sub" / "x.txt").read_bytes() == b"x"
    tar = run(*a, "get", "file", "--tar", "data@master:/folder").stdout_bytes
    assert b"sub/x.txt" in tar
    commits = json.loads(run(*a, "list", "commit", "data@master", "-o", "json").stdout)
    assert len(commits) == 3
    diff = json.loads(run(*a, "diff", "file", "data@master", "-o", "json").stdout)
    assert [d["path"] for d in diff] == ["/folder/sub/x.txt"]
    run(*a, "delete", "file", "data@master:/in.csv")
    assert "ok" in run(*a, "fsck").stdout
    # Errors: the same one line and exit code as in-process.
    r = run(*a, "inspect", "repo", "nope", code=3)
    assert r.stderr.strip().startswith("error: repo nope not found")
    r = run(*a, "create", "repo", "data", code=4)
    assert r.stderr.count("\n") == 1
    r = run(*a, "get", "file", "data@master:/a/../b", code=2)
    assert "'..'" in r.stderr


def test_tusk_address_from_the_environment(live: Live, tmp_path: Path) -> None:
    run("create", "repo", "r", TUSK_ADDRESS=live.url)
    assert json.loads(run("list", "repo", "-o", "json", TUSK_ADDRESS=live.url).stdout)[0]["name"]
    # --home wins over $TUSK_ADDRESS: that home is empty.
    other = tmp_path / "other"
    assert run("--home", str(other), "list", "repo", "-o", "json", TUSK_ADDRESS=live.url).stdout
    r = run("--home", str(other), "--address", live.url, "list", "repo", code=2)
    assert "not both" in r.stderr
    r = run("--address", live.url, "up", "--once", code=2)
    assert "drop --address" in r.stderr


def test_unreachable_server_is_one_line_and_exit_7() -> None:
    r = run("--address", "http://127.0.0.1:9", "list", "repo", code=7)
    assert r.stderr.startswith("error: cannot reach the Tusk server at http://127.0.0.1:9")
    assert r.stderr.count("\n") == 1


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc, url = spawn(tmp_path / "home", "serve", "--port", "0", env={"TUSK_SYNC": "none"})
    try:
        yield proc, url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_big_upload_costs_the_server_no_more_memory_than_the_store(
    served: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    """256 MiB up and down through a `tusk serve` process: the HTTP layer buffers nothing.

    The server's peak memory may grow by what the storage layer itself needs for the same
    put in-process (measured here in a process of its own), and by little more.
    """
    size = 256 * 1024 * 1024
    proc, url = served
    code = f"""
import io, sys, hashlib, tusk
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_api import Pattern
from apihelpers import peak_rss
import os
with tusk.Client({str(tmp_path / "embedded")!r}) as c:
    c.create_repo("r")
    c.put_file("r@master:/warm", b"w" * 3_000_000)
    before = peak_rss(os.getpid())
    c.put_file("r@master:/big", io.BufferedReader(Pattern({size})))
    print(peak_rss(os.getpid()) - before)
"""
    env = dict(os.environ, TUSK_SYNC="none")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    store_growth = int(out.stdout)

    with RemoteClient(url) as c:
        c.create_repo("r")
        c.put_file("r@master:/warm", io.BytesIO(b"w" * 3_000_000))
        assert c.get_file("r@master:/warm")[:1] == b"w"
        before = peak_rss(proc.pid)
        sys.path.insert(0, str(Path(__file__).parent))
        from test_api import Pattern

        source = Pattern(size)
        assert c.put_file("r@master:/big", io.BufferedReader(source)).bytes == size
        down = hashlib.sha256()
        for block in c.open_file("r@master:/big"):
            down.update(block)
        assert down.hexdigest() == source.sha.hexdigest()
        growth = peak_rss(proc.pid) - before
    mib = 1024 * 1024
    assert growth <= store_growth + 48 * mib, (growth // mib, store_growth // mib)
    if store_growth < size // 2:  # a store that streams: the server must stream as well
        assert growth < size // 2, (growth // mib, store_growth // mib)


def test_tusk_up_serves_the_api_and_runs_jobs(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "pipeline": {"name": "up"},
                "input": {"pfs": {"repo": "in", "glob": "/*"}},
                "transform": {
                    "cmd": [
                        "sh",
                        "-c",
                        'for f in "$TUSK_PFS"/in/*; do tr a-z A-Z < "$f" > '
                        '"$TUSK_PFS/out/$(basename "$f")"; done',
                    ]
                },
            }
        )
    )
    proc, url = spawn(tmp_path / "home", "up", "--port", "0", env={"TUSK_SANDBOX": "none"})
    try:
        a = ("--address", url)
        run(*a, "create", "repo", "in")
        run(*a, "create", "pipeline", "-f", str(spec))
        put = json.loads(run(*a, "put", "file", "in@master:/a.txt", "-f", "-", "-o", "json",
                             input=b"hello\n").stdout)  # fmt: skip
        commit_set = put["commit"]["commit_set"]
        jobs = json.loads(
            run(*a, "wait", "commit-set", commit_set, "--timeout", "60s", "-o", "json").stdout
        )
        assert [j["state"] for j in jobs] == ["success"]
        assert run(*a, "get", "file", "up@master:/a.txt").stdout == "HELLO\n"
        logs = run(*a, "logs", "-p", "up", "-o", "json").stdout
        assert isinstance(json.loads(logs), list)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert err.rstrip().endswith("scheduler stopped") and "Traceback" not in err


def test_a_taken_port(tmp_path: Path, served: tuple[subprocess.Popen[str], str]) -> None:
    _proc, url = served
    port = url.rsplit(":", 1)[1]
    home = str(tmp_path / "home2")
    for command in ("serve", "up"):  # an explicit --port that is taken is an error
        r = run("--home", home, command, "--port", port, code=4)
        assert f"http://127.0.0.1:{port} is in use" in r.stderr


def test_tusk_up_runs_without_the_api_when_the_default_port_is_taken(tmp_path: Path) -> None:
    import socket

    from tusk.server import DEFAULT_PORT

    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", DEFAULT_PORT))
        holder.listen(1)
    except OSError:
        pass  # someone else holds it: taken all the same
    try:
        env = {k: v for k, v in os.environ.items() if k != "TUSK_ADDRESS"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "tusk.cli.main", "--home", str(tmp_path / "h"), "up"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=dict(env, TUSK_SANDBOX="none"),
        )
        assert proc.stderr is not None
        assert "scheduler running" in proc.stderr.readline()
        assert "REST API off" in proc.stderr.readline()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and err.rstrip().endswith("scheduler stopped")
    finally:
        holder.close()


def test_default_port_is_documented() -> None:
    from tusk.cli.commands.pipeline import DEFAULT_PORT
    from tusk.server import DEFAULT_PORT as SERVER_PORT

    assert DEFAULT_PORT == SERVER_PORT == 7800
    docs = Path(__file__).parents[2] / "docs" / "deploy.md"
    assert "7800" in docs.read_text()


def test_stdin_upload_streams_through_the_cli(live: Live) -> None:
    data = os.urandom(3_000_000)
    run("--address", live.url, "create", "repo", "r")
    run("--address", live.url, "put", "file", "r@master:/blob", "-f", "-", input=data)
    got = run("--address", live.url, "get", "file", "r@master:/blob").stdout_bytes
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert len(io.BytesIO(got).getvalue()) == len(data)
